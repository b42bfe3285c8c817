package raftactor

import (
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// linkCall is where an RPC sent on a link waits: release tells the
// connection to stop waiting for its answer.
type linkCall struct {
	mu   sync.Mutex
	conn *linkConn
	call uint32
}

func (lc *linkCall) set(c *linkConn, call uint32) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.conn, lc.call = c, call
}

func (lc *linkCall) forget() {
	lc.mu.Lock()
	c, call := lc.conn, lc.call
	lc.conn = nil
	lc.mu.Unlock()
	if c != nil {
		c.forget(call)
	}
}

// serveLink lets the system's link, if it has one, deliver RPCs to this
// transport's node actor.
func (t *Transport) serveLink() {
	if t.link == nil {
		return
	}
	if pid, err := PIDOf(t.cfg.LocalAddr); err == nil {
		t.linkTarget = pid.Id
		t.link.serve(pid.Id, t)
	}
}

// unserveLink undoes serveLink when the transport closes.
func (t *Transport) unserveLink() {
	if t.link != nil && t.linkTarget != "" {
		t.link.unserve(t.linkTarget, t)
	}
}

// postOnLink sends msg to pid on the link when one is open to pid's
// process, and starts finding that process's link when none is yet. false
// means msg must go through remote.
func (t *Transport) postOnLink(pid *actor.PID, msg *actors.RaftRPC, pr *pendingReply) bool {
	c, query := t.link.route(pid.Address)
	if query {
		target := AddressOf(pid)
		if !t.goTracked(func() { t.findLink(pid.Address, target) }) {
			t.link.found(pid.Address, "", ErrTransportClosed)
		}
	}
	if c == nil {
		return false
	}
	call, ok := c.request(pid.Id, msg, pr.rp)
	if !ok {
		return false
	}
	pr.link.set(c, call)
	return true
}

// findLink asks the node at target, over remote, where its process serves
// a link, and hands the answer to the link, which dials it. Any error
// counts as no answer for now, to be asked again after a wait: a peer that
// is restarting answers with one, and so does an older release that does
// not know the question.
func (t *Transport) findLink(address string, target raft.ServerAddress) {
	reply, err := t.call("", target, &actors.RaftRPC{Body: &actors.RaftRPC_LinkQuery{LinkQuery: &actors.LinkQuery{}}}, t.cfg.RPCTimeout)
	if err != nil {
		t.link.found(address, "", err)
		return
	}
	t.link.found(address, reply.GetLinkAddress().GetAddress(), nil)
}

// answerLinkQuery tells a peer where this process serves its link.
func (t *Transport) answerLinkQuery(sender *actor.PID) {
	addr := ""
	if t.link != nil {
		addr = t.link.advertised()
	}
	t.sendReply(sender, "", &actors.RaftRPCReply{Body: &actors.RaftRPCReply_LinkAddress{LinkAddress: &actors.LinkAddress{Address: addr}}})
}

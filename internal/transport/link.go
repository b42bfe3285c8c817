package transport

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/internal/wire"
)

// serveLink lets the system's link, if it has one, deliver RPCs to this
// transport's node actor.
func (t *Transport) serveLink() {
	if t.link == nil {
		return
	}
	if pid, err := wire.PIDOf(t.cfg.LocalAddr); err == nil {
		t.linkTarget = pid.Id
		t.link.Serve(pid.Id, t)
	}
}

// unserveLink undoes serveLink when the transport closes.
func (t *Transport) unserveLink() {
	if t.link != nil && t.linkTarget != "" {
		t.link.Unserve(t.linkTarget, t)
	}
}

// postOnLink sends msg to pid on the link when one is open to pid's
// process, and starts finding that process's link when none is yet. false
// means msg must go through remote.
func (t *Transport) postOnLink(pid *actor.PID, msg *wire.RaftRPC, pr *pendingReply) bool {
	c, query := t.link.Route(pid.Address)
	if query {
		target := wire.AddressOf(pid)
		if !t.goTracked(func() { t.findLink(pid.Address, target) }) {
			t.link.Found(pid.Address, "", ErrTransportClosed)
		}
	}
	if c == nil {
		return false
	}
	call, ok := c.Request(pid.Id, msg, pr.rp)
	if !ok {
		return false
	}
	pr.link.Set(c, call)
	return true
}

// findLink asks the node at target, over remote, where its process serves
// a link, and hands the answer to the link, which dials it. Any error
// counts as no answer for now, to be asked again after a wait: a peer that
// is restarting answers with one, and so does an older release that does
// not know the question.
func (t *Transport) findLink(address string, target raft.ServerAddress) {
	reply, err := t.Call("", target, &wire.RaftRPC{Body: &wire.RaftRPC_LinkQuery{LinkQuery: &wire.LinkQuery{}}}, t.cfg.RPCTimeout)
	if err != nil {
		t.link.Found(address, "", err)
		return
	}
	t.link.Found(address, reply.GetLinkAddress().GetAddress(), nil)
}

// answerLinkQuery tells a peer where this process serves its link.
func (t *Transport) answerLinkQuery(sender *actor.PID) {
	addr := ""
	if t.link != nil {
		addr = t.link.Advertised()
	}
	t.sendReply(sender, "", &wire.RaftRPCReply{Body: &wire.RaftRPCReply_LinkAddress{LinkAddress: &wire.LinkAddress{Address: addr}}})
}

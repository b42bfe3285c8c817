package raftactor

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/transport"
	"github.com/protoraft/protoraft/internal/wire"
)

// peers is how a node asks the other nodes of its group what is not Raft's
// own business, over its transport: leadership probes (probes.go) and read
// indexes for a follower's linearizable reads. Like every Raft RPC these are
// authenticated, bounded by the RPC timeout and subject to fault injection,
// so a node cut off from a peer gets no answer from it.
type peers struct {
	t       *transport.Transport
	self    raft.ServerID
	timeout time.Duration
}

// probe sends a LeadershipProbe to the server id at target (a voter, or a
// non-voter about to be promoted) and returns its answer.
func (p peers) probe(id raft.ServerID, target raft.ServerAddress) (*wire.LeadershipProbeAnswer, error) {
	msg := &wire.RaftRPC{Body: &wire.RaftRPC_LeadershipProbe{LeadershipProbe: &wire.LeadershipProbe{Id: string(p.self)}}}
	reply, err := p.t.Call(id, target, msg, p.timeout)
	if err != nil {
		return nil, err
	}
	answer := reply.GetLeadershipProbe()
	if answer == nil {
		return nil, fmt.Errorf("%w: %s answered a leadership probe with %T", transport.ErrProtocol, id, reply.GetBody())
	}
	return answer, nil
}

// readIndex asks the leader (id at target) for a read index, for a
// linearizable read served by this follower.
func (p peers) readIndex(id raft.ServerID, target raft.ServerAddress, deadline time.Time) (uint64, *actors.Error) {
	timeout := min(time.Until(deadline), p.timeout)
	if timeout <= 0 {
		return 0, actors.DeadlineExceeded("asking the leader for a read index")
	}
	msg := &wire.RaftRPC{Body: &wire.RaftRPC_ReadIndex{ReadIndex: &wire.ReadIndexRequest{Id: string(p.self)}}}
	reply, err := p.t.Call(id, target, msg, timeout)
	if err != nil {
		return 0, actors.Errorf(actors.Code_UNAVAILABLE, "asking the leader %s for a read index: %v", id, err)
	}
	ri := reply.GetReadIndex()
	if ri == nil {
		return 0, actors.Errorf(actors.Code_INTERNAL, "leader %s answered a read index request with %T", id, reply.GetBody())
	}
	if ri.GetError().Err() != nil {
		return 0, ri.GetError()
	}
	return ri.GetIndex(), nil
}

// peerHandler answers the peers' probes and read index requests. A probe
// is answered at once: the answer reads only atomics of the local Raft. A
// read index waits for a quorum, so it is answered from a goroutine.
func (n *Node) peerHandler() transport.PeerHandler {
	r, path, timeout := n.run.raft, n.readPath(), n.cfg.RPCTimeout
	return func(rpc *wire.RaftRPC, reply transport.Reply) {
		switch body := rpc.GetBody().(type) {
		case *wire.RaftRPC_LeadershipProbe:
			from := raft.ServerID(body.LeadershipProbe.GetId())
			reply(from, &wire.RaftRPCReply{Body: &wire.RaftRPCReply_LeadershipProbe{LeadershipProbe: answerProbe(r, from)}})
		case *wire.RaftRPC_ReadIndex:
			from := raft.ServerID(body.ReadIndex.GetId())
			go func() {
				index, err := path.leaderReadIndex(time.Now().Add(timeout))
				reply(from, &wire.RaftRPCReply{Body: &wire.RaftRPCReply_ReadIndex{ReadIndex: &wire.ReadIndexResponse{Index: index, Error: err}}})
			}()
		default:
			reply("", transport.ErrorReply(fmt.Errorf("%w: unknown rpc body %T", transport.ErrProtocol, body)))
		}
	}
}

// answerProbe is a node's answer to a LeadershipProbe from the node from:
// the current term, the age of the last contact when the prober is the
// leader this node follows, and the applied index. A node that knows no
// leader, or another one, gives no age: it might vote for a new leader at
// once, so it can vouch for no lease.
//
// The order of the reads matters. The contact and the applied index are
// read first and the term last: a term still equal to the prober's at the
// end means this node voted in no later election up to then, and a contact
// read before that is at most as recent as the one that keeps it from
// voting, so the age errs long; the applied index only grows, so it errs
// low.
func answerProbe(r *raft.Raft, from raft.ServerID) *wire.LeadershipProbeAnswer {
	contact, applied := r.LastContact(), r.AppliedIndex()
	_, leader := r.LeaderWithID()
	following := leader == from && r.State() == raft.Follower
	answer := &wire.LeadershipProbeAnswer{Term: r.CurrentTerm(), ContactAgeNanos: -1, AppliedIndex: applied}
	if following {
		answer.ContactAgeNanos = max(int64(time.Since(contact)), 0)
	}
	return answer
}

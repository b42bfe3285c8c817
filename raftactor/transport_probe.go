package raftactor

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// ProbeFunc answers a LeadershipProbe from the node id: this node's term
// and, when id is the leader it follows, how long ago it last heard from it.
// It must not block: it runs in the node actor's Receive.
type ProbeFunc func(id raft.ServerID) *actors.LeadershipProbeAnswer

// SetProbeHandler sets what answers peers' LeadershipProbes; until it is
// set they are answered UNAVAILABLE, which a prober counts as no answer.
func (t *Transport) SetProbeHandler(fn ProbeFunc) {
	t.mu.Lock()
	t.probeFn = fn
	t.mu.Unlock()
}

// ProbeLeadership sends a LeadershipProbe to the voter id at target and
// returns its answer. Like every Raft RPC it is authenticated, bounded by
// the RPC timeout and subject to fault injection, so a leader cut off from
// a follower gets no answer from it.
func (t *Transport) ProbeLeadership(id raft.ServerID, target raft.ServerAddress) (*actors.LeadershipProbeAnswer, error) {
	msg := &actors.RaftRPC{Body: &actors.RaftRPC_LeadershipProbe{LeadershipProbe: &actors.LeadershipProbe{Id: string(t.cfg.LocalID)}}}
	reply, err := t.call(id, target, msg, t.cfg.RPCTimeout)
	if err != nil {
		return nil, err
	}
	answer := reply.GetLeadershipProbe()
	if answer == nil {
		return nil, fmt.Errorf("raftactor: %s answered a leadership probe with %T", id, reply.GetBody())
	}
	return answer, nil
}

func (t *Transport) localID() raft.ServerID { return t.cfg.LocalID }

// handleProbe answers a LeadershipProbe at once: the answer reads only
// atomics of the local Raft, so it costs the mailbox nothing.
func (t *Transport) handleProbe(sender *actor.PID, fromID raft.ServerID) {
	t.mu.Lock()
	fn := t.probeFn
	t.mu.Unlock()
	if fn == nil {
		t.sendReply(sender, fromID, &actors.RaftRPCReply{Error: "raftactor: " + string(t.cfg.LocalID) + " is not ready to answer leadership probes"})
		return
	}
	t.sendReply(sender, fromID, &actors.RaftRPCReply{Body: &actors.RaftRPCReply_LeadershipProbe{LeadershipProbe: fn(fromID)}})
}

// answerProbe is a node's ProbeFunc over its Raft: the current term, and
// the age of the last contact when the prober is the leader this node
// follows. A node that knows no leader, or another one, gives no age: it
// might vote for a new leader at once, so it can vouch for no lease.
//
// The order of the reads matters. The contact is read first and the term
// last: a term still equal to the prober's at the end means this node voted
// in no later election up to then, and a contact read before that is at
// most as recent as the one that keeps it from voting, so the age errs long.
func answerProbe(r *raft.Raft, from raft.ServerID) *actors.LeadershipProbeAnswer {
	contact := r.LastContact()
	_, leader := r.LeaderWithID()
	following := leader == from && r.State() == raft.Follower
	answer := &actors.LeadershipProbeAnswer{Term: r.CurrentTerm(), ContactAgeNanos: -1}
	if following {
		answer.ContactAgeNanos = max(int64(time.Since(contact)), 0)
	}
	return answer
}

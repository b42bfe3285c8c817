package raftactor

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// changeMembership applies one configuration change through Raft and
// replies once it committed. Changes are checked against the configuration
// they apply to and submitted with its index, so a concurrent change makes
// this one fail instead of silently building on a configuration it did not
// see. Two guards keep a change from taking the group's quorum away: a
// voter is removed or demoted only when the voters left reach a quorum
// (quorumAfterLosing), and a server becomes a voter (ADD_VOTER, PROMOTE)
// only once it has caught up, answering for itself (promote); until then
// ADD_VOTER leaves it a non-voter.
func (n *Node) changeMembership(ctx actor.Context, m *actors.MembershipRequest) {
	r := n.run.raft
	op := m.GetOp()
	if err := actors.ValidateNodeID("id", m.GetId()); err != nil {
		n.respond(ctx, &actors.MembershipResponse{Error: err})
		return
	}
	if op == actors.MembershipOp_ADD_VOTER || op == actors.MembershipOp_ADD_NONVOTER {
		if err := actors.ValidateRaftAddress("address", m.GetAddress()); err != nil {
			n.respond(ctx, &actors.MembershipResponse{Error: err})
			return
		}
	}
	if r.State() != raft.Leader {
		n.respond(ctx, &actors.MembershipResponse{Error: actors.NotLeader(leaderOf(r))})
		return
	}
	id, addr := raft.ServerID(m.GetId()), raft.ServerAddress(m.GetAddress())
	probes, heartbeat := n.peers(), n.currentTimeouts().Heartbeat
	n.async(ctx, m, func(deadline time.Time) actors.Response {
		cf := r.GetConfiguration()
		if err := cf.Error(); err != nil {
			return &actors.MembershipResponse{Error: raftError(r, err)}
		}
		conf, prev := cf.Configuration(), cf.Index()
		current, found := findServer(conf, id)
		voters := countVoters(conf)
		timeout := time.Until(deadline)

		var f raft.IndexFuture
		switch op {
		case actors.MembershipOp_ADD_VOTER, actors.MembershipOp_ADD_NONVOTER:
			for _, s := range conf.Servers {
				if s.Address == addr && s.ID != id {
					return &actors.MembershipResponse{Error: actors.InvalidArgument("address", "address %s is already used by node %s", addr, s.ID)}
				}
			}
			if found && current.Address != addr {
				return &actors.MembershipResponse{Error: actors.InvalidArgument("id", "node %s is already a member at %s", id, current.Address)}
			}
			switch {
			case op == actors.MembershipOp_ADD_NONVOTER:
				if found && current.Suffrage == raft.Voter {
					return &actors.MembershipResponse{Error: actors.InvalidArgument("id", "node %s is a voter; demote it instead", id)}
				}
				f = r.AddNonvoter(id, addr, prev, timeout)
			case found && current.Suffrage == raft.Voter:
				// Already a voter at this address: Raft takes it as a no-op.
				f = r.AddVoter(id, addr, prev, timeout)
			default:
				// A new voter joins as a non-voter and is promoted once it
				// has caught up (catchup.go).
				if !found {
					if err := r.AddNonvoter(id, addr, prev, timeout).Error(); err != nil {
						return &actors.MembershipResponse{Error: raftError(r, err)}
					}
				}
				var err *actors.Error
				if f, err = promote(r, probes, raft.Server{ID: id, Address: addr}, 2*heartbeat, deadline); err != nil {
					return &actors.MembershipResponse{Error: err}
				}
			}
		case actors.MembershipOp_PROMOTE:
			if !found {
				return &actors.MembershipResponse{Error: actors.InvalidArgument("id", "node %s is not a member", id)}
			}
			if current.Suffrage == raft.Voter {
				f = r.AddVoter(id, current.Address, prev, timeout)
				break
			}
			var err *actors.Error
			if f, err = promote(r, probes, current, 2*heartbeat, deadline); err != nil {
				return &actors.MembershipResponse{Error: err}
			}
		case actors.MembershipOp_DEMOTE, actors.MembershipOp_REMOVE:
			if !found {
				return &actors.MembershipResponse{Error: actors.InvalidArgument("id", "node %s is not a member", id)}
			}
			if current.Suffrage == raft.Voter && voters == 1 {
				return &actors.MembershipResponse{Error: actors.InvalidArgument("id", "node %s is the last voter; the group would have no quorum", id)}
			}
			if current.Suffrage == raft.Voter {
				if err := quorumAfterLosing(r, probes, conf, id, heartbeat, deadline); err != nil {
					return &actors.MembershipResponse{Error: err}
				}
			}
			if op == actors.MembershipOp_DEMOTE {
				f = r.DemoteVoter(id, prev, timeout)
			} else {
				f = r.RemoveServer(id, prev, timeout)
			}
		default:
			return &actors.MembershipResponse{Error: actors.InvalidArgument("op", "unknown membership operation %d", op)}
		}
		if err := f.Error(); err != nil {
			return &actors.MembershipResponse{Error: raftError(r, err)}
		}
		resp := &actors.MembershipResponse{Index: f.Index()}
		if after := r.GetConfiguration(); after.Error() == nil {
			resp.Members = serversToProto(after.Configuration())
		}
		return resp
	})
}

// peers is how this node probes its peers and asks them for read indexes.
func (n *Node) peers() peers {
	return peers{t: n.run.transport, self: raft.ServerID(n.cfg.ID), timeout: n.cfg.RPCTimeout}
}

// members answers with the latest configuration this node knows.
func (n *Node) members(ctx actor.Context, m *actors.MembersRequest) {
	r, f, snaps := n.run.raft, n.run.fsm, n.run.stores.snaps
	n.async(ctx, m, func(time.Time) actors.Response {
		cf := r.GetConfiguration()
		if err := cf.Error(); err != nil {
			return &actors.MembersResponse{Error: raftError(r, err)}
		}
		return &actors.MembersResponse{Index: configurationIndex(f, snaps), Members: serversToProto(cf.Configuration())}
	})
}

// transferLeadership hands leadership to the named follower, or to the most
// up-to-date one, and replies with the leader that follows.
func (n *Node) transferLeadership(ctx actor.Context, m *actors.TransferLeadershipRequest) {
	r := n.run.raft
	if m.GetId() != "" {
		if err := actors.ValidateNodeID("id", m.GetId()); err != nil {
			n.respond(ctx, &actors.TransferLeadershipResponse{Error: err})
			return
		}
	}
	if r.State() != raft.Leader {
		n.respond(ctx, &actors.TransferLeadershipResponse{Error: actors.NotLeader(leaderOf(r))})
		return
	}
	self := raft.ServerID(n.cfg.ID)
	batcher, grace := &n.readIndex, n.cfg.RPCTimeout
	n.async(ctx, m, func(deadline time.Time) actors.Response {
		// Followers vote for a transfer's target however recently they
		// heard from this leader, so no lease holds from here on.
		defer batcher.suspendLease(grace)()
		// Watched from before the transfer starts, so the new leader's
		// observation cannot slip by between the transfer and the wait.
		leaders := watchLeader(r)
		defer leaders.stop()
		var f raft.Future
		if m.GetId() == "" {
			if cf := r.GetConfiguration(); cf.Error() == nil && countVoters(cf.Configuration()) < 2 {
				return &actors.TransferLeadershipResponse{Error: actors.InvalidArgument("id", "no other voter to hand leadership to")}
			}
			f = r.LeadershipTransfer()
		} else {
			cf := r.GetConfiguration()
			if err := cf.Error(); err != nil {
				return &actors.TransferLeadershipResponse{Error: raftError(r, err)}
			}
			s, ok := findServer(cf.Configuration(), raft.ServerID(m.GetId()))
			switch {
			case !ok:
				return &actors.TransferLeadershipResponse{Error: actors.InvalidArgument("id", "node %s is not a member", m.GetId())}
			case s.Suffrage != raft.Voter:
				return &actors.TransferLeadershipResponse{Error: actors.InvalidArgument("id", "node %s is not a voter", m.GetId())}
			case s.ID == self:
				return &actors.TransferLeadershipResponse{Leader: leaderOf(r)}
			}
			f = r.LeadershipTransferToServer(s.ID, s.Address)
		}
		if err := f.Error(); err != nil {
			return &actors.TransferLeadershipResponse{Error: raftError(r, err)}
		}
		// The target has been told to campaign; report the leader once this
		// node learns of it.
		return &actors.TransferLeadershipResponse{Leader: leaders.other(self, deadline)}
	})
}

func findServer(c raft.Configuration, id raft.ServerID) (raft.Server, bool) {
	for _, s := range c.Servers {
		if s.ID == id {
			return s, true
		}
	}
	return raft.Server{}, false
}

func countVoters(c raft.Configuration) int {
	v := 0
	for _, s := range c.Servers {
		if s.Suffrage == raft.Voter {
			v++
		}
	}
	return v
}

func serversToProto(c raft.Configuration) []*actors.Server {
	out := make([]*actors.Server, 0, len(c.Servers))
	for _, s := range c.Servers {
		suffrage := actors.Suffrage_VOTER
		if s.Suffrage != raft.Voter {
			suffrage = actors.Suffrage_NONVOTER
		}
		out = append(out, &actors.Server{Id: string(s.ID), Address: string(s.Address), Suffrage: suffrage})
	}
	return out
}

// leaderWatch sees the leader changes a node's Raft observes.
type leaderWatch struct {
	r        *raft.Raft
	changes  chan raft.Observation
	observer *raft.Observer
}

// watchLeader starts watching r's leader observations; stop must follow.
func watchLeader(r *raft.Raft) *leaderWatch {
	w := &leaderWatch{r: r, changes: make(chan raft.Observation, 4)}
	w.observer = raft.NewObserver(w.changes, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(w.observer)
	return w
}

func (w *leaderWatch) stop() { w.r.DeregisterObserver(w.observer) }

// other returns the leader once it is another node than self, or, when the
// deadline passes first, the leader as Raft knows it then. An observation
// dropped because the channel was full is made up for by reading Raft's
// state again at every observation.
func (w *leaderWatch) other(self raft.ServerID, deadline time.Time) *actors.Server {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		if l := leaderOf(w.r); l != nil && l.Id != string(self) {
			return l
		}
		select {
		case <-w.changes:
		case <-timer.C:
			return leaderOf(w.r)
		}
	}
}

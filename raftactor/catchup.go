package raftactor

import (
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/wire"
)

// A server becomes a voter only once it has caught up with the leader
// (changeMembership: ADD_VOTER and PROMOTE). From the moment it votes,
// every commit waits for a quorum that counts it, so a new voter that
// cannot be reached, or is still copying the log, can take the group's
// quorum with it: a one-voter group that adds a voter nothing serves
// commits nothing more, the removal of that voter included. Until it has
// caught up it stays a non-voter, which receives the log and counts toward
// no quorum.

// promoteReserve is the share of the time left when the wait for a
// non-voter to catch up begins (1/promoteReserve of it) that is kept for
// the promotion itself to commit.
const promoteReserve = 4

// promote makes the non-voter s a voter once it has caught up
// (awaitCaughtUp), checked against the configuration as it is then and
// submitted with its index.
func promote(r *raft.Raft, p prober, s raft.Server, fresh time.Duration, deadline time.Time) (raft.IndexFuture, *actors.Error) {
	if err := awaitCaughtUp(r, p, s, fresh, deadline); err != nil {
		return nil, err
	}
	cf := r.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, raftError(r, err)
	}
	now, ok := findServer(cf.Configuration(), s.ID)
	if !ok || now.Address != s.Address {
		return nil, actors.Errorf(actors.Code_UNAVAILABLE, "the configuration changed concurrently while node %s caught up; retry", s.ID)
	}
	return r.AddVoter(s.ID, s.Address, cf.Index(), time.Until(deadline)), nil
}

// awaitCaughtUp waits until the non-voter s has caught up with this
// leader: it answers a leadership probe in this leader's term, following
// this leader with a contact at most fresh old, and has applied at least
// the commit index this leader had when the wait began. The server's own
// answer is what counts, sent through p as the quorum guard's probes are
// (quorum.go), so a server the leader cannot reach, or whose answers do
// not reach the leader, never has caught up.
//
// The applied index rather than the last log index: an applied entry is
// committed and the same on every node, while entries past a node's commit
// index may be left over from an older term. A non-voter that has applied
// the commit index of the moment acknowledges new entries as fast as any
// follower, so counting it toward the quorum stalls nothing.
//
// The wait gives up when a quarter of the time left at its start remains,
// keeping that for the promotion to commit, and answers UNAVAILABLE
// (retryable: a retry may find the server caught up); the server stays a
// non-voter. NOT_LEADER when this node stops leading meanwhile.
func awaitCaughtUp(r *raft.Raft, p prober, s raft.Server, fresh time.Duration, deadline time.Time) *actors.Error {
	term, need := r.CurrentTerm(), r.CommitIndex()
	stop := deadline.Add(-time.Until(deadline) / promoteReserve)
	reached, why := "unknown", ""
	for {
		if r.State() != raft.Leader || r.CurrentTerm() != term {
			return actors.NotLeader(leaderOf(r))
		}
		a, err := probeOne(p, s, min(time.Until(stop), quorumRoundTimeout))
		if a != nil {
			reached = strconv.FormatUint(a.GetAppliedIndex(), 10)
		}
		age := time.Duration(a.GetContactAgeNanos())
		switch {
		case err != nil:
			why = fmt.Sprintf("no answer to a leadership probe: %v", err)
		case a.GetTerm() != term:
			why = fmt.Sprintf("it is in term %d, this leader in term %d", a.GetTerm(), term)
		case age < 0:
			why = "it does not follow this leader"
		case age > fresh:
			why = fmt.Sprintf("it last heard from this leader %v ago", age.Round(time.Millisecond))
		case a.GetAppliedIndex() < need:
			why = "it is still catching up"
		default:
			return nil
		}
		if time.Now().Add(quorumRoundPause).After(stop) {
			return actors.Errorf(actors.Code_UNAVAILABLE,
				"node %s is a non-voter that has not caught up (applied index %s, %d needed; %s); it was not promoted", s.ID, reached, need, why)
		}
		time.Sleep(quorumRoundPause)
	}
}

// probeOne probes s once and waits wait at most for its answer.
func probeOne(p prober, s raft.Server, wait time.Duration) (*wire.LeadershipProbeAnswer, error) {
	answers := make(chan probeAnswer, 1)
	probeVoters(p, []raft.Server{s}, answers)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case a := <-answers:
		return a.answer, a.err
	case <-timer.C:
		return nil, fmt.Errorf("none within %v", wait.Round(time.Millisecond))
	}
}

package raftactor

import (
	"time"

	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// quorumProbeWindow is how long a round of probes that finds too few
// reachable voters is repeated before the change is refused: right after an
// election the followers may not have heard from the new leader yet.
const quorumProbeWindow = time.Second

// quorumRoundPause is the pause between two such rounds, and
// quorumRoundTimeout bounds one: a voter that has not answered by then
// counts as unreachable in that round.
const (
	quorumRoundPause   = 50 * time.Millisecond
	quorumRoundTimeout = 500 * time.Millisecond
)

// quorumAfterLosing refuses to remove or demote voter id when the voters
// left would not hold a quorum of the new configuration among themselves:
// with a voter already unreachable, taking away a healthy one would leave
// the group unable to commit anything, the membership change included
// afterwards. A voter counts as reachable when it answers a leadership
// probe in this leader's term, following this leader, with a contact at
// most two heartbeat timeouts old: the same probes a read confirmation
// sends (probes.go), so a voter whose answers do not reach the leader (a
// one-way partition) counts as unreachable, as it is for Raft.
func quorumAfterLosing(r *raft.Raft, p prober, conf raft.Configuration, id raft.ServerID, heartbeat time.Duration, deadline time.Time) *actors.Error {
	until := time.Now().Add(quorumProbeWindow)
	for {
		err := reachableQuorum(r, p, conf, id, 2*heartbeat, deadline)
		if err == nil || time.Now().Add(quorumRoundPause).After(until) || time.Now().Add(quorumRoundPause).After(deadline) {
			return err
		}
		time.Sleep(quorumRoundPause)
	}
}

// reachableQuorum probes every remaining voter once, waiting until
// deadline or quorumRoundTimeout at most, and counts those that follow this
// leader with a contact fresher than fresh.
func reachableQuorum(r *raft.Raft, p prober, conf raft.Configuration, id raft.ServerID, fresh time.Duration, deadline time.Time) *actors.Error {
	term, self := r.CurrentTerm(), p.localID()
	var remaining, others []raft.Server
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter && s.ID != id {
			remaining = append(remaining, s)
			if s.ID != self {
				others = append(others, s)
			}
		}
	}
	need := len(remaining)/2 + 1
	reachable := len(remaining) - len(others) // this leader itself
	answers := make(chan probeAnswer, len(others))
	probeVoters(p, others, answers)
	timer := time.NewTimer(min(time.Until(deadline), quorumRoundTimeout))
	defer timer.Stop()
wait:
	for range others {
		if reachable >= need {
			break
		}
		select {
		case a := <-answers:
			if age := a.answer.GetContactAgeNanos(); a.err == nil && a.answer.GetTerm() == term && age >= 0 && time.Duration(age) <= fresh {
				reachable++
			}
		case <-timer.C:
			break wait
		}
	}
	if reachable >= need {
		return nil
	}
	return actors.InvalidArgument("id", "without voter %s only %d of the remaining %d voters are reachable, below the quorum of %d", id, reachable, len(remaining), need)
}

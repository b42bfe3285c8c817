package raftactor

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// quorumProbeTimeout bounds the status question to each voter before a
// removal or demotion.
const quorumProbeTimeout = 500 * time.Millisecond

// quorumProbeWindow is how long a probe that finds too few reachable voters
// is repeated before the change is refused: right after an election the
// followers may not have heard from the new leader yet.
const quorumProbeWindow = time.Second

// quorumAfterLosing refuses to remove or demote voter id when the voters
// left would not hold a quorum of the new configuration among themselves:
// with a voter already unreachable, taking away a healthy one would leave
// the group unable to commit anything, the membership change included
// afterwards. A voter counts as reachable when it names this node as leader
// and heard from it within two heartbeat timeouts (hashicorp/raft keeps its
// per-follower contact times private, so the followers are asked).
func quorumAfterLosing(system *actor.ActorSystem, r *raft.Raft, conf raft.Configuration, id raft.ServerID, heartbeat time.Duration, deadline time.Time) *actors.Error {
	until := time.Now().Add(quorumProbeWindow)
	for {
		err := probeQuorum(system, r, conf, id, heartbeat, deadline)
		if err == nil || time.Now().After(until) || time.Until(deadline) < 2*quorumProbeTimeout {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// probeQuorum asks every remaining voter once.
func probeQuorum(system *actor.ActorSystem, r *raft.Raft, conf raft.Configuration, id raft.ServerID, heartbeat time.Duration, deadline time.Time) *actors.Error {
	_, self := r.LeaderWithID()
	var remaining []raft.Server
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter && s.ID != id {
			remaining = append(remaining, s)
		}
	}
	need := len(remaining)/2 + 1
	timeout := min(quorumProbeTimeout, time.Until(deadline))
	var mu sync.Mutex
	var wg sync.WaitGroup
	reachable := 0
	for _, s := range remaining {
		if s.ID == self {
			mu.Lock()
			reachable++
			mu.Unlock()
			continue
		}
		pid, err := PIDOf(s.Address)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := system.Root.RequestFuture(pid, &actors.StatusRequest{Meta: actors.NewMeta(timeout)}, timeout).Result()
			st, ok := res.(*actors.StatusResponse)
			if err != nil || !ok || st.GetLeader().GetId() != string(self) {
				return
			}
			if lc := st.GetLastContactUnixNano(); lc == 0 || time.Since(time.Unix(0, lc)) > 2*heartbeat {
				return
			}
			mu.Lock()
			reachable++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if reachable < need {
		return actors.InvalidArgument("id", "without voter %s only %d of the remaining %d voters are reachable, below the quorum of %d", id, reachable, len(remaining), need)
	}
	return nil
}

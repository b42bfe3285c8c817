package raftactor

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// read serves a query at the requested consistency.
//
// LINEARIZABLE is ReadIndex: note the commit index when the read arrives,
// confirm with a quorum that this node still leads, wait until the state
// machine applied up to the noted index, then query. LEASE skips the quorum
// round trip and trusts that a leader steps down within its lease when it
// loses contact with the quorum. Both need the leader to have committed an
// entry of its own term first (termReadiness): before that its commit index
// can lag behind entries an earlier leader acknowledged. STALE reads the
// local state as it is and says which index it reflects.
func (n *Node) read(ctx actor.Context, m *actors.ReadRequest) {
	r, f, ready := n.raft, n.fsm, n.ready
	consistency := m.GetConsistency()
	if consistency != actors.Consistency_STALE && r.State() != raft.Leader {
		n.respond(ctx, &actors.ReadResponse{Error: actors.NotLeader(leaderOf(r))})
		return
	}
	switch consistency {
	case actors.Consistency_LINEARIZABLE, actors.Consistency_LEASE, actors.Consistency_STALE:
	default:
		n.respond(ctx, &actors.ReadResponse{Error: actors.InvalidArgument("consistency", "unknown consistency %d", consistency)})
		return
	}
	q := m.GetQuery()
	logs := n.stores.logs
	n.async(ctx, m, func(deadline time.Time) actors.Response {
		if consistency != actors.Consistency_STALE {
			if err := ready.wait(r, deadline); err != nil {
				return &actors.ReadResponse{Error: err}
			}
			readIndex := r.CommitIndex()
			if consistency == actors.Consistency_LINEARIZABLE {
				if err := r.VerifyLeader().Error(); err != nil {
					return &actors.ReadResponse{Error: raftError(r, err)}
				}
			} else if r.State() != raft.Leader {
				return &actors.ReadResponse{Error: actors.NotLeader(leaderOf(r))}
			}
			if err := waitApplied(r, f, logs, readIndex, deadline); err != nil {
				return &actors.ReadResponse{Error: err}
			}
		}
		res, applied, err := f.query(q)
		if err != nil {
			return &actors.ReadResponse{Error: actors.InvalidArgument("query", "%v", err), AppliedIndex: applied}
		}
		return &actors.ReadResponse{Result: res, AppliedIndex: applied}
	})
}

// termReadiness tracks whether the leader has committed an entry in its
// current term, by a barrier issued once per term and shared by every read
// that waits for it.
type termReadiness struct {
	readyTerm atomic.Uint64

	mu       sync.Mutex
	term     uint64
	inflight chan struct{}
	err      *actors.Error
}

// wait returns once a barrier of the node's current term has committed.
func (t *termReadiness) wait(r *raft.Raft, deadline time.Time) *actors.Error {
	term := r.CurrentTerm()
	if t.readyTerm.Load() == term {
		return nil
	}
	t.mu.Lock()
	if t.inflight == nil || t.term != term {
		done := make(chan struct{})
		t.term, t.inflight, t.err = term, done, nil
		go func() {
			err := r.Barrier(0).Error()
			t.mu.Lock()
			if err != nil {
				t.err = raftError(r, err)
			} else if r.CurrentTerm() == term {
				t.readyTerm.Store(term)
			}
			if t.inflight == done {
				t.inflight = nil
			}
			t.mu.Unlock()
			close(done)
		}()
	}
	done := t.inflight
	t.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		return actors.DeadlineExceeded("waiting for the leader's first commit of its term")
	}
	if t.readyTerm.Load() == term {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	return actors.NotLeader(leaderOf(r))
}

// waitApplied returns once the state machine reflects every entry up to
// index. Raft hands no-ops and barriers to no state machine, so when the
// state machine is behind index but Raft has dispatched everything up to it,
// the entries in between are looked up: if none of them is a command or a
// configuration, the state already reflects index.
func waitApplied(r *raft.Raft, f *fsm, logs raft.LogStore, index uint64, deadline time.Time) *actors.Error {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	poll := 200 * time.Microsecond
	for {
		changed := f.changed()
		applied := f.applied.Load()
		if applied >= index {
			return nil
		}
		if r.AppliedIndex() >= index && onlyInvisible(logs, applied+1, index) {
			return nil
		}
		select {
		case <-changed:
		case <-time.After(poll):
			poll = min(2*poll, 10*time.Millisecond)
		case <-timer.C:
			return actors.DeadlineExceeded("waiting for the state machine to apply the read index")
		}
	}
}

// onlyInvisible reports whether no entry in [from, to] reaches the state
// machine. Entries already compacted away are covered by a snapshot the
// state machine restored, so they count as invisible.
func onlyInvisible(logs raft.LogStore, from, to uint64) bool {
	if to-from > 64 {
		return false
	}
	var l raft.Log
	for i := from; i <= to; i++ {
		if err := logs.GetLog(i, &l); err != nil {
			continue
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}

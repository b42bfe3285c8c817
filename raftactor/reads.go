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
	r, f, ready, batcher := n.raft, n.fsm, n.ready, &n.readIndex
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
			var readIndex uint64
			if consistency == actors.Consistency_LINEARIZABLE {
				index, err := batcher.readIndex(r, deadline)
				if err != nil {
					return &actors.ReadResponse{Error: err}
				}
				readIndex = index
			} else {
				readIndex = r.CommitIndex()
				if r.State() != raft.Leader {
					return &actors.ReadResponse{Error: actors.NotLeader(leaderOf(r))}
				}
			}
			if err := waitApplied(r, f, logs, &batcher.reflected, readIndex, deadline); err != nil {
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

// readIndexBatcher lets one leadership confirmation serve every
// linearizable read waiting for it (batched ReadIndex). Without it each read
// sends its own VerifyLeader through Raft's leader loop, which under many
// concurrent readers spends the leader's CPU on futures that all wait for
// the same heartbeat round.
//
// A read joins the round that has not started yet; a round starts by
// noting the commit index and only then confirms leadership. So every read
// of a round arrived before its index was taken, which is what ReadIndex
// needs: a read arriving while a round is confirming waits for the next
// one, never for an index noted before it arrived. The zero value is ready.
type readIndexBatcher struct {
	mu      sync.Mutex
	next    *readRound // the round new reads join; nil until one arrives
	running bool       // a goroutine is running rounds

	// reflected is the highest index the state machine is known to
	// reflect though it applied less: the entries above its applied index
	// are no-ops and barriers (see waitApplied). A leader's read index sits
	// on its term's barrier until the next command, and without this every
	// read would look that barrier up in the log store again.
	reflected atomic.Uint64
}

// readRound is one leadership confirmation and the index it vouches for.
type readRound struct {
	done  chan struct{}
	index uint64
	err   *actors.Error
}

// readIndex returns a read index confirmed by a quorum after this call
// began: the state machine answers linearizably once it applied it.
func (b *readIndexBatcher) readIndex(r *raft.Raft, deadline time.Time) (uint64, *actors.Error) {
	b.mu.Lock()
	round := b.next
	if round == nil {
		round = &readRound{done: make(chan struct{})}
		b.next = round
		if !b.running {
			b.running = true
			go b.run(r)
		}
	}
	b.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-round.done:
		return round.index, round.err
	case <-timer.C:
		return 0, actors.DeadlineExceeded("waiting for the leader to confirm its leadership")
	}
}

// run confirms rounds one after another while reads keep arriving, and
// exits when none waits, so an idle node keeps no goroutine.
func (b *readIndexBatcher) run(r *raft.Raft) {
	for {
		b.mu.Lock()
		round := b.next
		b.next = nil
		if round == nil {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		round.index = r.CommitIndex()
		if err := r.VerifyLeader().Error(); err != nil {
			round.err = raftError(r, err)
		}
		close(round.done)
	}
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
//
// reflected remembers the highest index found that way: entries at or below
// a committed index never change, so the answer stays true.
func waitApplied(r *raft.Raft, f *fsm, logs raft.LogStore, reflected *atomic.Uint64, index uint64, deadline time.Time) *actors.Error {
	// Under steady load the index is almost always reflected already:
	// answer before paying for a timer.
	if f.applied.Load() >= index || reflected.Load() >= index {
		return nil
	}
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
			for {
				known := reflected.Load()
				if known >= index || reflected.CompareAndSwap(known, index) {
					return nil
				}
			}
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

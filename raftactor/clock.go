package raftactor

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// leaderClock stamps the entries this node writes as leader with the
// group's replicated time (EntryMeta.leader_unix_nano), the clock that
// expires sessions.
//
// The rule: in each term, once an entry of the term has applied (the
// termReadiness barrier, so every entry of earlier terms has applied too),
// the leader takes the replicated clock its state machine reached as its
// base, and stamps every later entry with base plus the time its monotonic
// clock measured since it took the base. Until then it stamps 0, which
// moves no clock. So the replicated clock only ever moves by time a leader
// measured while it led; a wall clock hours ahead or behind, or one that
// jumps, moves nothing; and time without a leader does not count, so a
// session lives longer than its TTL, never shorter.
type leaderClock struct {
	// mono is the node's monotonic clock (Config.Clock.Monotonic).
	mono func() time.Duration

	mu      sync.Mutex
	term    uint64        // the term base belongs to; 0 before the first
	base    int64         // the replicated clock when the term's stamping began
	at      time.Duration // mono when base was taken
	last    int64         // the last stamp given, so stamps never go back
	pending uint64        // the term a base is being taken for
}

// stamp returns the replicated time for an entry this node is about to
// write as leader, or 0 while its base for the current term is not known
// yet (and starts taking it). It never blocks.
func (c *leaderClock) stamp(r *raft.Raft, f *fsm, ready *termReadiness, wait time.Duration) int64 {
	term := r.CurrentTerm()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.term == term && term != 0 {
		c.last = max(c.last, c.base+int64(c.mono()-c.at))
		return c.last
	}
	if c.pending != term {
		c.pending = term
		go c.begin(r, f, ready, term, wait)
	}
	return 0
}

// begin takes the base of term once an entry of the term has applied. On
// failure (leadership lost, no commit in time) the next stamp tries again.
func (c *leaderClock) begin(r *raft.Raft, f *fsm, ready *termReadiness, term uint64, wait time.Duration) {
	err := ready.wait(r, time.Now().Add(wait))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending != term {
		return
	}
	c.pending = 0
	if err != nil || r.CurrentTerm() != term {
		return
	}
	// Entries applied after the barrier are this leader's own, stamped 0:
	// the clock read here is the largest stamp of every earlier term.
	f.mu.RLock()
	base := f.sessions.clock
	f.mu.RUnlock()
	c.term, c.base, c.at = term, base, c.mono()
	c.last = max(c.last, base)
}

package raftactor

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/internal/wire"
)

func voters(ids ...string) raft.Configuration {
	var c raft.Configuration
	for _, id := range ids {
		c.Servers = append(c.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(id)})
	}
	return c
}

func answered(term uint64, age time.Duration) probeAnswer {
	return probeAnswer{answer: &wire.LeadershipProbeAnswer{Term: term, ContactAgeNanos: int64(age)}}
}

var noAnswer = probeAnswer{err: errors.New("dropped")}

// A leader confirms its term only with answers from that term, enough for a
// quorum with itself; one answer from a later term ends the round.
func TestProbeTallyCountsOnlyAnswersInTheTerm(t *testing.T) {
	cases := []struct {
		name      string
		cfg       raft.Configuration
		answers   []probeAnswer
		confirmed bool
		newer     bool
	}{
		{"one answer in term makes a quorum of three", voters("a", "b", "c"), []probeAnswer{answered(5, 0)}, true, false},
		{"an answer from an earlier term does not count", voters("a", "b", "c"), []probeAnswer{answered(4, 0), noAnswer}, false, false},
		{"a later term ends the round", voters("a", "b", "c"), []probeAnswer{answered(6, 0)}, false, true},
		{"lost probes leave it unconfirmed", voters("a", "b", "c"), []probeAnswer{noAnswer, noAnswer}, false, false},
		{"five voters need two answers", voters("a", "b", "c", "d", "e"), []probeAnswer{answered(5, 0), noAnswer, answered(5, 0)}, true, false},
		{"a node outside the voters does not count itself", voters("b", "c", "d"), []probeAnswer{answered(5, 0), noAnswer, answered(5, 0)}, true, false},
		{"... and one answer is then no quorum", voters("b", "c", "d"), []probeAnswer{answered(5, 0), noAnswer, noAnswer}, false, false},
		{"a single voter confirms alone", voters("a"), nil, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tally, peers := newProbeTally(5, tc.cfg, "a")
			for _, p := range peers {
				if p.ID == "a" {
					t.Fatalf("the leader probes itself")
				}
			}
			for _, a := range tc.answers {
				if tally.decided() {
					break
				}
				tally.add(a)
			}
			if !tally.decided() {
				t.Fatalf("undecided after every answer: %+v", tally)
			}
			if tally.confirmed() != tc.confirmed || tally.newer != tc.newer {
				t.Fatalf("confirmed=%v newer=%v, want %v %v", tally.confirmed(), tally.newer, tc.confirmed, tc.newer)
			}
		})
	}
}

// A lease starts at the oldest contact among the quorum that vouched for
// it, and only answers that report a contact with this leader vouch for one.
func TestProbeTallyLeaseStartsAtTheOldestContactOfTheQuorum(t *testing.T) {
	tally, _ := newProbeTally(5, voters("a", "b", "c", "d", "e"), "a")
	tally.add(answered(5, 30*time.Millisecond))
	tally.add(answered(5, 10*time.Millisecond))
	if age, ok := tally.leaseAge(); !ok || age != 30*time.Millisecond {
		t.Fatalf("lease age %v %v, want 30ms", age, ok)
	}

	tally, _ = newProbeTally(5, voters("a", "b", "c"), "a")
	tally.add(answered(5, -1)) // in the term, but following no one
	if !tally.confirmed() {
		t.Fatal("an answer in the term without a contact still confirms the read index")
	}
	if _, ok := tally.leaseAge(); ok {
		t.Fatal("an answer without a contact vouched for a lease")
	}

	tally, _ = newProbeTally(5, voters("b", "c", "d"), "a")
	tally.add(answered(5, 0))
	tally.add(answered(5, 0))
	if _, ok := tally.leaseAge(); ok {
		t.Fatal("a node outside the voters holds a lease")
	}
}

// A lease is not trusted during a leadership transfer, nor afterwards
// until a confirmation that began after the grace period.
func TestLeaseSuspendedAcrossATransfer(t *testing.T) {
	var b readIndexBatcher
	now := monoNow()
	b.confirmed.Store(&confirmation{term: 3, at: now})
	if !b.leaseHeld(3, time.Second, now+time.Millisecond) {
		t.Fatal("a fresh lease is not held")
	}
	resume := b.suspendLease(100 * time.Millisecond)
	if b.leaseHeld(3, time.Second, now+time.Millisecond) {
		t.Fatal("a lease held during a transfer")
	}
	resume()
	if b.leaseHeld(3, time.Second, now+time.Millisecond) {
		t.Fatal("a lease from before the transfer held after it")
	}
	later := monoNow() + 100*time.Millisecond
	b.confirmed.Store(&confirmation{term: 3, at: later})
	if !b.leaseHeld(3, time.Second, later+time.Millisecond) {
		t.Fatal("a lease begun after the grace period is not held")
	}
}

// fakeProber answers probes from a table; a voter missing from it never
// answers (until release is closed, then with an error).
type fakeProber struct {
	mu      sync.Mutex
	asked   []raft.ServerID
	answers map[raft.ServerID]probeAnswer
	release chan struct{}
}

func (f *fakeProber) localID() raft.ServerID { return "a" }

func (f *fakeProber) probe(id raft.ServerID, _ raft.ServerAddress) (*wire.LeadershipProbeAnswer, error) {
	f.mu.Lock()
	f.asked = append(f.asked, id)
	a, ok := f.answers[id]
	f.mu.Unlock()
	if !ok {
		<-f.release
		return nil, errors.New("no answer")
	}
	return a.answer, a.err
}

func (f *fakeProber) askedOf() []raft.ServerID {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]raft.ServerID(nil), f.asked...)
}

// A round asks only as many voters as a quorum needs while they answer, and
// the others as soon as one of them fails or stays silent past the hedge.
func TestProbeQuorumAsksTheOthersOnlyWhenNeeded(t *testing.T) {
	var b readIndexBatcher
	round := func(f *fakeProber) *probeTally {
		tally, peers := newProbeTally(5, voters("a", "b", "c"), "a")
		b.probeQuorum(f, tally, peers)
		return tally
	}
	ok := answered(5, 0)
	both := &fakeProber{answers: map[raft.ServerID]probeAnswer{"b": ok, "c": ok}, release: make(chan struct{})}
	for range 3 {
		round(both)
	}
	if got := len(both.askedOf()); got != 3 {
		t.Fatalf("three rounds with both followers answering sent %d probes, want 3: %v", got, both.askedOf())
	}

	fast := both.askedOf()[2]
	other := raft.ServerID("b")
	if fast == "b" {
		other = "c"
	}
	failing := &fakeProber{answers: map[raft.ServerID]probeAnswer{fast: noAnswer, other: ok}, release: make(chan struct{})}
	if !round(failing).confirmed() {
		t.Fatalf("not confirmed when the first voter failed and the other answers: asked %v", failing.askedOf())
	}

	silent := &fakeProber{answers: map[raft.ServerID]probeAnswer{"b": ok, "c": ok}, release: make(chan struct{})}
	peers := []raft.Server{{ID: "b"}, {ID: "c"}}
	b.latencies.plan(peers, 1)
	delete(silent.answers, peers[0].ID)
	defer close(silent.release)
	done := make(chan bool, 1)
	go func() { done <- round(silent).confirmed() }()
	select {
	case confirmed := <-done:
		if !confirmed {
			t.Fatalf("not confirmed when the first voter stayed silent: asked %v", silent.askedOf())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the round waited for a silent voter and asked no other: asked %v", silent.askedOf())
	}
}

// A voter that stayed silent past the hedge is asked after the others in
// the next round, so rounds do not keep waiting for it.
func TestProbeQuorumAsksASilentVoterLast(t *testing.T) {
	var b readIndexBatcher
	ok := answered(5, 0)
	both := &fakeProber{answers: map[raft.ServerID]probeAnswer{"b": ok, "c": ok}, release: make(chan struct{})}
	defer close(both.release)
	for range 2 { // measure both
		tally, peers := newProbeTally(5, voters("a", "b", "c"), "a")
		b.probeQuorum(both, tally, peers)
	}
	peers := []raft.Server{{ID: "b"}, {ID: "c"}}
	b.latencies.plan(peers, 1)
	quiet, other := peers[0].ID, peers[1].ID
	f := &fakeProber{answers: map[raft.ServerID]probeAnswer{other: ok}, release: both.release}
	tally, all := newProbeTally(5, voters("a", "b", "c"), "a")
	b.probeQuorum(f, tally, all)
	if !tally.confirmed() {
		t.Fatalf("not confirmed: asked %v", f.askedOf())
	}
	next := []raft.Server{{ID: "b"}, {ID: "c"}}
	b.latencies.plan(next, 1)
	if next[0].ID != other {
		t.Fatalf("after %s stayed silent the next round asks %s first", quiet, next[0].ID)
	}
}

// A lease never lasts the whole heartbeat timeout: a leader lease equal to
// it (which Timeouts.validate allows) loses the drift margin, or a leader
// clock running slow next to a follower clock running fast would serve a
// LEASE read after the follower voted for a newer leader (the stale read
// formal/lease.pml finds with -DNOMARGIN).
func TestLeaseWindowKeepsADriftMargin(t *testing.T) {
	const hb = time.Second
	if got, want := leaseWindow(hb, hb), hb-hb/leaseDriftDivisor; got != want {
		t.Fatalf("leaseWindow(heartbeat, heartbeat) = %v, want %v", got, want)
	}
	if got := leaseWindow(hb/2, hb); got != hb/2 {
		t.Fatalf("leaseWindow(heartbeat/2, heartbeat) = %v, want the leader lease %v", got, hb/2)
	}
}

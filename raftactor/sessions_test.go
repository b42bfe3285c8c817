package raftactor_test

import (
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// sessionWrite writes with a client session through the leader.
func sessionWrite(c *grouptest.Nodes, leader, client string, seq, ackedBelow uint64, cmd []byte) *actors.WriteResponse {
	c.T().Helper()
	m := grouptest.Meta(3 * time.Second)
	m.ClientId, m.Sequence, m.AckedBelow = client, seq, ackedBelow
	return c.MustAsk(leader, &actors.WriteRequest{Meta: m, Command: cmd}).(*actors.WriteResponse)
}

func revision(t *testing.T, c *grouptest.Nodes, id, key string) uint64 {
	t.Helper()
	rr, qr := c.Get(id, key, actors.Consistency_LINEARIZABLE)
	if rr.Error.Err() != nil {
		t.Fatalf("read %s: %v", key, rr.Error)
	}
	return qr.Revision
}

func TestSessionAnswersRetryWithFirstResult(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	first := sessionWrite(c, leader, "client-a", 1, 0, kvstore.Put("k", []byte("v")))
	if first.Error.Err() != nil {
		t.Fatal(first.Error)
	}
	// The retry (same client and sequence) is not applied again: the key's
	// revision stays at the first write's index and the reply is the first.
	again := sessionWrite(c, leader, "client-a", 1, 0, kvstore.Put("k", []byte("v")))
	if again.Error.Err() != nil || again.Index != first.Index || string(again.Result) != string(first.Result) {
		t.Fatalf("retry: %v index %d, first index %d", again.Error, again.Index, first.Index)
	}
	if rev := revision(t, c, leader, "k"); rev != first.Index {
		t.Fatalf("retry applied again: revision %d, first write at %d", rev, first.Index)
	}

	// The table survives snapshots and a restart of every node.
	sessionWrite(c, leader, "client-a", 2, 2, kvstore.Put("k2", []byte("v")))
	if sr := c.MustAsk(leader, &actors.SnapshotRequest{Meta: grouptest.Meta(5 * time.Second)}).(*actors.SnapshotResponse); sr.Error.Err() != nil {
		t.Fatal(sr.Error)
	}
	for _, id := range c.IDs() {
		c.Stop(id)
	}
	for _, id := range c.IDs() {
		c.Start(id)
	}
	leader = c.WaitLeader()
	second := sessionWrite(c, leader, "client-a", 2, 2, kvstore.Put("k2", []byte("other")))
	if second.Error.Err() != nil {
		t.Fatal(second.Error)
	}
	if _, qr := c.Get(leader, "k2", actors.Consistency_LINEARIZABLE); string(qr.Value) != "v" {
		t.Fatalf("retry after restart applied again: k2=%q", qr.Value)
	}
	// A sequence the client acknowledged is forgotten and refused, never
	// applied twice.
	stale := sessionWrite(c, leader, "client-a", 1, 2, kvstore.Put("k", []byte("late")))
	if actors.CodeOf(stale.Error) != actors.Code_INVALID_ARGUMENT || stale.Error.Field != "meta.sequence" {
		t.Fatalf("stale sequence: %v", stale.Error)
	}
}

// openSession opens client's session with floor through the leader.
func openSession(c *grouptest.Nodes, leader, client string, floor uint64) {
	c.T().Helper()
	m := grouptest.Meta(3 * time.Second)
	m.ClientId, m.Sequence, m.OpenSession = client, floor, true
	if wr := c.MustAsk(leader, &actors.WriteRequest{Meta: m}).(*actors.WriteResponse); wr.Error.Err() != nil {
		c.T().Fatalf("open %s: %v", client, wr.Error)
	}
}

// registeredWrite is sessionWrite for a session opened with openSession.
func registeredWrite(c *grouptest.Nodes, leader, client string, seq, ackedBelow uint64, cmd []byte) *actors.WriteResponse {
	c.T().Helper()
	m := grouptest.Meta(3 * time.Second)
	m.ClientId, m.Sequence, m.AckedBelow, m.RegisteredSession = client, seq, ackedBelow, true
	return c.MustAsk(leader, &actors.WriteRequest{Meta: m, Command: cmd}).(*actors.WriteResponse)
}

// A session expires by the replicated clock, which moves by the time a
// leader measured while it led (here Advance, the node's monotonic clock
// moved forward): once another client's writes carry it past the TTL, the
// retry of a write the session applied is refused with SESSION_EXPIRED,
// never applied a second time, and stays refused after the client opened
// its session again above it.
func TestRetryAfterSessionExpiryIsRefusedAndAppliedOnce(t *testing.T) {
	clock := faults.NewClock()
	c := grouptest.New(t, 1, func(cfg *raftactor.Config) {
		cfg.SessionTTL = time.Minute
		cfg.Clock = clock
	})
	leader := c.WaitLeader()
	openSession(c, leader, "old", 1)
	first := registeredWrite(c, leader, "old", 1, 0, kvstore.Put("k", []byte("v")))
	if first.Error.Err() != nil {
		t.Fatal(first.Error)
	}
	if again := registeredWrite(c, leader, "old", 1, 0, kvstore.Put("k", []byte("v"))); again.Error.Err() != nil || again.Index != first.Index {
		t.Fatalf("a retry within the TTL: %v at %d (first at %d)", again.Error, again.Index, first.Index)
	}

	// Time passes for the leader; the busy client's writes carry the
	// replicated clock past the TTL. The leader counts time only once it
	// took its term's base, so the loop lets time pass until the retry is
	// refused; a refused retry changes nothing, so probing is harmless.
	openSession(c, leader, "busy", 1)
	var refused *actors.WriteResponse
	for seq := uint64(1); refused == nil; seq++ {
		if seq > 50 {
			t.Fatal("the session never expired")
		}
		clock.Advance(2 * time.Minute)
		if wr := registeredWrite(c, leader, "busy", seq, seq, kvstore.Put("b", []byte("x"))); wr.Error.Err() != nil {
			t.Fatalf("busy write %d: %v", seq, wr.Error)
		}
		switch again := registeredWrite(c, leader, "old", 1, 0, kvstore.Put("k", []byte("v"))); actors.CodeOf(again.Error) {
		case actors.Code_SESSION_EXPIRED:
			refused = again
		case actors.Code_OK:
			if again.Index != first.Index {
				t.Fatalf("retry applied again at %d (first at %d)", again.Index, first.Index)
			}
		default:
			t.Fatalf("retry: %v", again.Error)
		}
	}
	if rev := revision(t, c, leader, "k"); rev != first.Index {
		t.Fatalf("k applied again: revision %d, first write at %d", rev, first.Index)
	}
	// The client opens its session again above every sequence it used: the
	// old one stays refused, the next is applied.
	openSession(c, leader, "old", 2)
	if again := registeredWrite(c, leader, "old", 1, 0, kvstore.Put("k", []byte("v"))); actors.CodeOf(again.Error) != actors.Code_SESSION_EXPIRED {
		t.Fatalf("sequence below the new floor: %v", again.Error)
	}
	if next := registeredWrite(c, leader, "old", 2, 2, kvstore.Put("k", []byte("v2"))); next.Error.Err() != nil {
		t.Fatalf("first write of the reopened session: %v", next.Error)
	}
	if rr, qr := c.Get(leader, "k", actors.Consistency_LINEARIZABLE); rr.Error.Err() != nil || string(qr.Value) != "v2" {
		t.Fatalf("k after the reopened session's write: %v %q", rr.Error, qr.GetValue())
	}
}

// askOpen sends a session open of client with floor to the leader and
// returns its answer, which names the session's opening
// (WriteResponse.session_open_index).
func askOpen(c *grouptest.Nodes, leader, client string, floor uint64) *actors.WriteResponse {
	c.T().Helper()
	m := grouptest.Meta(3 * time.Second)
	m.ClientId, m.Sequence, m.OpenSession = client, floor, true
	wr := c.MustAsk(leader, &actors.WriteRequest{Meta: m}).(*actors.WriteResponse)
	if wr.Error.Err() != nil {
		c.T().Fatalf("open %s: %v", client, wr.Error)
	}
	return wr
}

// openedWrite is registeredWrite naming the opening of the session the
// write belongs to, as a Client sends it.
func openedWrite(c *grouptest.Nodes, leader, client string, openIndex, seq, ackedBelow uint64, cmd []byte) *actors.WriteResponse {
	c.T().Helper()
	m := grouptest.Meta(3 * time.Second)
	m.ClientId, m.Sequence, m.AckedBelow, m.RegisteredSession = client, seq, ackedBelow, true
	m.SessionOpenIndex = openIndex
	return c.MustAsk(leader, &actors.WriteRequest{Meta: m, Command: cmd}).(*actors.WriteResponse)
}

// The double application the sessions model found (docs/formal.md,
// -DNO_OPEN_INDEX), fixed by open indexes: a client's open (floor 1)
// travels twice, and the second copy is held back; write 1 is applied and
// its reply lost; the session expires on the replicated clock; the late
// copy of the open arrives and creates the session again, with floor 1 and
// no results. The retry of write 1 names the opening it belongs to, which
// is not the live session's, and is refused with SESSION_EXPIRED instead
// of being applied a second time.
func TestLateCopyOfAnOpenDoesNotLetARetryApplyAgain(t *testing.T) {
	clock := faults.NewClock()
	c := grouptest.New(t, 1, func(cfg *raftactor.Config) {
		cfg.SessionTTL = time.Minute
		cfg.Clock = clock
	})
	leader := c.WaitLeader()
	opened := askOpen(c, leader, "c", 1)
	if dup := askOpen(c, leader, "c", 1); dup.SessionOpenIndex != opened.SessionOpenIndex {
		t.Fatalf("a copy of the open within the session's life named opening %d, the first %d", dup.SessionOpenIndex, opened.SessionOpenIndex)
	}
	id := opened.SessionOpenIndex
	write1 := func() *actors.WriteResponse {
		return openedWrite(c, leader, "c", id, 1, 0, kvstore.Put("k", []byte("v")))
	}
	first := write1()
	if first.Error.Err() != nil {
		t.Fatal(first.Error)
	}

	// The reply of write 1 is lost and the session expires: as in
	// TestRetryAfterSessionExpiryIsRefusedAndAppliedOnce, another client's
	// writes carry the replicated clock on, and retries of write 1 (answered
	// from the table while the session lives) tell when it is gone.
	openSession(c, leader, "busy", 1)
	for seq := uint64(1); ; seq++ {
		if seq > 50 {
			t.Fatal("the session never expired")
		}
		clock.Advance(2 * time.Minute)
		if wr := registeredWrite(c, leader, "busy", seq, seq, kvstore.Put("b", []byte("x"))); wr.Error.Err() != nil {
			t.Fatalf("busy write %d: %v", seq, wr.Error)
		}
		again := write1()
		if actors.CodeOf(again.Error) == actors.Code_SESSION_EXPIRED {
			break
		}
		if again.Error.Err() != nil || again.Index != first.Index {
			t.Fatalf("retry before the expiry: %v at %d (first at %d)", again.Error, again.Index, first.Index)
		}
	}

	// The held copy of the open arrives: the session is created again, with
	// floor 1 and no memory of write 1.
	late := askOpen(c, leader, "c", 1)
	again := write1()
	if actors.CodeOf(again.Error) != actors.Code_SESSION_EXPIRED {
		t.Fatalf("the retry of write 1 after the late open: %v at %d (first at %d), want SESSION_EXPIRED", again.Error, again.Index, first.Index)
	}
	if rev := revision(t, c, leader, "k"); rev != first.Index {
		t.Fatalf("write 1 applied twice: k at revision %d, first write at %d", rev, first.Index)
	}
	if late.SessionOpenIndex == 0 || late.SessionOpenIndex == id {
		t.Fatalf("the session created by the late open names opening %d, the expired one %d", late.SessionOpenIndex, id)
	}
	// The client, told SESSION_EXPIRED, opens again above every sequence it
	// used: it is told the live session's opening, and its writes apply.
	reopened := askOpen(c, leader, "c", 2)
	if reopened.SessionOpenIndex != late.SessionOpenIndex {
		t.Fatalf("the reopen named opening %d, the live session's is %d", reopened.SessionOpenIndex, late.SessionOpenIndex)
	}
	if next := openedWrite(c, leader, "c", reopened.SessionOpenIndex, 2, 2, kvstore.Put("k", []byte("v2"))); next.Error.Err() != nil {
		t.Fatalf("first write of the reopened session: %v", next.Error)
	}
	if _, qr := c.Get(leader, "k", actors.Consistency_LINEARIZABLE); string(qr.Value) != "v2" {
		t.Fatalf("k after the reopened session's write: %q", qr.GetValue())
	}
}

// A write of an opened session to a group that never knew the session is
// refused before it is applied.
func TestRegisteredWriteOfUnknownSessionIsRefused(t *testing.T) {
	c := grouptest.New(t, 1, nil)
	leader := c.WaitLeader()
	wr := registeredWrite(c, leader, "never-opened", 7, 0, kvstore.Put("k", []byte("v")))
	if actors.CodeOf(wr.Error) != actors.Code_SESSION_EXPIRED || actors.Retryable(wr.Error.Code) {
		t.Fatalf("write of an unknown session: %v", wr.Error)
	}
	if _, qr := c.Get(leader, "k", actors.Consistency_LINEARIZABLE); qr.GetFound() {
		t.Fatalf("the refused write was applied: %v", qr)
	}
	m := grouptest.Meta(time.Second)
	m.OpenSession, m.ClientId = true, "c"
	if wr := c.MustAsk(leader, &actors.WriteRequest{Meta: m, Command: []byte("x")}).(*actors.WriteResponse); actors.CodeOf(wr.Error) != actors.Code_INVALID_ARGUMENT || wr.Error.Field != "command" {
		t.Fatalf("an open with a command: %v", wr.Error)
	}
	m = grouptest.Meta(time.Second)
	m.OpenSession = true
	if wr := c.MustAsk(leader, &actors.WriteRequest{Meta: m}).(*actors.WriteResponse); actors.CodeOf(wr.Error) != actors.Code_INVALID_ARGUMENT || wr.Error.Field != "meta.client_id" {
		t.Fatalf("an open without a client ID: %v", wr.Error)
	}
	m = grouptest.Meta(time.Second)
	m.ClientId, m.Sequence, m.SessionOpenIndex = "c", 1, 3
	if wr := c.MustAsk(leader, &actors.WriteRequest{Meta: m, Command: []byte("x")}).(*actors.WriteResponse); actors.CodeOf(wr.Error) != actors.Code_INVALID_ARGUMENT || wr.Error.Field != "meta.session_open_index" {
		t.Fatalf("an unregistered write naming an opening: %v", wr.Error)
	}
}

// No node's wall clock moves the replicated clock: a leader whose clock
// jumps two hours ahead, then a new leader two hours behind, expire no
// session, so a retry of an applied write is still answered with its first
// result; and a write without the registered mark (a client from before
// explicit opens) still starts its session as it always did.
func TestWallClockJumpsDoNotExpireSessions(t *testing.T) {
	clocks := map[string]*faults.Clock{}
	c := grouptest.New(t, 3, func(cfg *raftactor.Config) {
		cfg.SessionTTL = time.Minute
		clocks[cfg.ID] = faults.NewClock()
		cfg.Clock = clocks[cfg.ID]
	})
	leader := c.WaitLeader()
	first := sessionWrite(c, leader, "old", 1, 0, kvstore.Put("k", []byte("v")))
	if first.Error.Err() != nil {
		t.Fatal(first.Error)
	}
	busy := uint64(0)
	jumpAndProbe := func(leader string, d time.Duration) {
		t.Helper()
		clocks[leader].Jump(d)
		for range 5 {
			busy++
			if wr := sessionWrite(c, leader, "busy", busy, busy, kvstore.Put("b", []byte("x"))); wr.Error.Err() != nil {
				t.Fatalf("busy write %d: %v", busy, wr.Error)
			}
		}
		again := sessionWrite(c, leader, "old", 1, 0, kvstore.Put("k", []byte("v")))
		if again.Error.Err() != nil || again.Index != first.Index {
			t.Fatalf("after a wall clock jump of %v on leader %s the retry gave %v at %d (first at %d)", d, leader, again.Error, again.Index, first.Index)
		}
	}
	jumpAndProbe(leader, 2*time.Hour)
	var target string
	for _, id := range c.IDs() {
		if id != leader {
			target = id
			break
		}
	}
	tr := c.MustAsk(leader, &actors.TransferLeadershipRequest{Meta: grouptest.Meta(5 * time.Second), Id: target}).(*actors.TransferLeadershipResponse)
	if tr.Error.Err() != nil {
		t.Fatal(tr.Error)
	}
	leader = c.WaitLeader()
	jumpAndProbe(leader, -2*time.Hour)
	if rev := revision(t, c, leader, "k"); rev != first.Index {
		t.Fatalf("k applied again: revision %d, first write at %d", rev, first.Index)
	}
}

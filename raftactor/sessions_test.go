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

// A session expires by the replicated clock, the leader's stamps on the
// entries: once another client's writes carry it past the TTL, the session
// is gone and its sequence is new again.
func TestSessionsExpireByReplicatedClock(t *testing.T) {
	c := grouptest.New(t, 0, nil)
	clock := faults.NewClock()
	n1 := c.Add("n1", []raftactor.Voter{{ID: "n1", Address: c.Address("n1")}})
	n1.Config.SessionTTL = time.Minute
	n1.Config.Clock = clock
	c.Start("n1")
	leader := c.WaitLeader()
	first := sessionWrite(c, leader, "old", 1, 0, kvstore.Put("k", []byte("v")))
	if again := sessionWrite(c, leader, "old", 1, 0, kvstore.Put("k", []byte("v"))); again.Index != first.Index {
		t.Fatalf("a retry within the TTL was applied again at %d (first at %d)", again.Index, first.Index)
	}
	// Another client's writes move the replicated clock past the TTL.
	clock.Jump(2 * time.Minute)
	for seq := uint64(1); seq <= 3; seq++ {
		sessionWrite(c, leader, "busy", seq, seq, kvstore.Put("b", []byte("x")))
	}
	again := sessionWrite(c, leader, "old", 1, 0, kvstore.Put("k", []byte("v")))
	if again.Error.Err() != nil || again.Index == first.Index {
		t.Fatalf("expired session still answered from the table: %v index %d", again.Error, again.Index)
	}
}

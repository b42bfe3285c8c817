package raftactor

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/testutil"
)

// A node that reopens its data directory serves its reads from a new state
// machine, which starts from the last snapshot (here none) and applies the
// log only once Raft tells it what is committed. A read index the old state
// machine was known to reflect beyond what it applied (entries it never
// sees: the leader's no-op and barrier) says nothing of the new one: a
// LINEARIZABLE or LEASE read at that index waits until the new state
// machine has applied it, and is then served.
func TestReadIndexAnEarlierStateMachineReflectedDoesNotServeANewOne(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	store := raft.NewInmemStore()
	rc := raft.DefaultConfig()
	rc.LocalID = "n1"
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	rc.LogOutput = io.Discard
	addr, trans := raft.NewInmemTransport("n1")
	snaps := raft.NewInmemSnapshotStore()
	if err := raft.BootstrapCluster(rc, store, store, snaps, trans, raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: addr}}}); err != nil {
		t.Fatal(err)
	}
	old := newFSM(emptyStateMachine{}, time.Minute)
	r, err := raft.NewRaft(rc, old, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Shutdown().Error() }()
	testutil.Eventually(t, "n1 leads", func() bool { return r.State() == raft.Leader })

	for _, kind := range []readKind{readLinearizable, readLease} {
		p := readPath{r: r, f: old, ready: newTermReadiness(), batcher: &readIndexBatcher{}, logs: store,
			peers: peers{self: "n1", timeout: time.Second}, lease: 40 * time.Millisecond}
		// The read index is the term's barrier, above the configuration
		// entry, the last the state machine saw.
		if err := p.waitFor(kind, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("read %d on the state machine that applied everything: %v", kind, err)
		}
		index := r.CommitIndex()
		if seen := old.applied.Load(); seen >= index {
			t.Fatalf("the state machine saw index %d itself; the test needs it behind the read index %d", seen, index)
		}

		// The reopened node's state machine, before it applied anything.
		fresh := newFSM(emptyStateMachine{}, time.Minute)
		p.f = fresh
		err := p.waitFor(kind, time.Now().Add(100*time.Millisecond))
		if actors.CodeOf(err) != actors.Code_DEADLINE_EXCEEDED {
			t.Fatalf("read %d on a state machine that applied nothing of index %d: %v, want it to wait (DEADLINE_EXCEEDED)", kind, index, err)
		}
		var cfg raft.Log
		if err := store.GetLog(1, &cfg); err != nil {
			t.Fatal(err)
		}
		fresh.ApplyBatch([]*raft.Log{&cfg})
		if err := p.waitFor(kind, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("read %d once the new state machine applied what it sees: %v", kind, err)
		}
	}
}

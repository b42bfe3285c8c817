package raftactor

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/testutil"
)

// failingLogs is a log store whose reads of one index fail.
type failingLogs struct {
	raft.LogStore
	failAt atomic.Uint64
}

func (f *failingLogs) GetLog(index uint64, l *raft.Log) error {
	if index == f.failAt.Load() {
		return errors.New("injected: read error")
	}
	return f.LogStore.GetLog(index, l)
}

// emptyStateMachine is the smallest StateMachine, for tests inside the
// package (kvstore imports raftactor).
type emptyStateMachine struct{}

func (emptyStateMachine) Apply(uint64, []byte) []byte  { return nil }
func (emptyStateMachine) Query([]byte) ([]byte, error) { return nil, nil }
func (emptyStateMachine) Snapshot() (Snapshot, error)  { return emptySnapshot{}, nil }
func (emptyStateMachine) Restore(io.Reader) error      { return nil }

type emptySnapshot struct{}

func (emptySnapshot) Persist(io.Writer) error { return nil }
func (emptySnapshot) Release()                {}

// A linearizable read whose index sits on an entry the state machine never
// sees (the leader's no-op) is served once the log shows that entry is
// invisible. When the log cannot be read there, the read fails with
// INTERNAL: it is not served from a state that might miss a write. An
// entry compacted away (ErrLogNotFound) is covered by a snapshot and may be
// skipped.
func TestReadIndexOnAnUnreadableLogFailsTheRead(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	store := raft.NewInmemStore()
	logs := &failingLogs{LogStore: store}
	rc := raft.DefaultConfig()
	rc.LocalID = "n1"
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	rc.LogOutput = io.Discard
	addr, trans := raft.NewInmemTransport("n1")
	snaps := raft.NewInmemSnapshotStore()
	if err := raft.BootstrapCluster(rc, logs, store, snaps, trans, raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: addr}}}); err != nil {
		t.Fatal(err)
	}
	f := newFSM(emptyStateMachine{}, time.Minute)
	r, err := raft.NewRaft(rc, f, logs, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Shutdown().Error() }()
	testutil.Eventually(t, "n1 leads", func() bool { return r.State() == raft.Leader })
	if err := r.Barrier(time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	index := r.AppliedIndex()
	if f.applied.Load() >= index {
		t.Fatalf("the state machine saw index %d itself; the test needs it behind Raft's %d", f.applied.Load(), index)
	}
	deadline := time.Now().Add(5 * time.Second)

	logs.failAt.Store(index)
	if err := waitApplied(r, f, logs, index, deadline); actors.CodeOf(err) != actors.Code_INTERNAL {
		t.Fatalf("read index %d on an unreadable log: %v, want INTERNAL", index, err)
	}

	logs.failAt.Store(0)
	if err := waitApplied(r, f, logs, index, deadline); err != nil {
		t.Fatalf("read index %d on a readable log: %v", index, err)
	}
	if ok, err := onlyInvisible(store, index+100, index+100); !ok || err != nil {
		t.Fatalf("an entry compacted away: invisible %v, %v; want it skipped", ok, err)
	}
}

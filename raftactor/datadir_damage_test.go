package raftactor

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// unreadableLog is a log store that lost one entry below its last: the
// shape raft-wal v0.4.0 left behind after a tail truncation (raft-wal#31).
type unreadableLog struct {
	*raft.InmemStore
	lost uint64
}

func (l unreadableLog) GetLog(index uint64, out *raft.Log) error {
	if index == l.lost {
		return fmt.Errorf("sealed segment has no index block (entry %d)", index)
	}
	return l.InmemStore.GetLog(index, out)
}

// raft.NewRaft panics when it cannot read an entry between its last
// snapshot and its last index; a node must refuse to start with
// ErrDamagedDataDir instead of panicking into a restart loop.
func TestUnreadableLogIsADamagedDataDirNotAPanic(t *testing.T) {
	mem := raft.NewInmemStore()
	for i := uint64(1); i <= 3; i++ {
		if err := mem.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := mem.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	st := &stores{logs: unreadableLog{InmemStore: mem, lost: 2}, stable: mem, snaps: raft.NewInmemSnapshotStore()}
	rc := raft.DefaultConfig()
	rc.LocalID = "n1"
	rc.Logger = hclog.NewNullLogger() // raft's record of the unreadable entry is what the test provokes
	_, trans := raft.NewInmemTransport("n1")
	r, err := newRaft(rc, &raft.MockFSM{}, st, trans)
	if r != nil {
		_ = r.Shutdown().Error()
	}
	if !errors.Is(err, ErrDamagedDataDir) {
		t.Fatalf("newRaft over a log with an unreadable entry: %v, want ErrDamagedDataDir", err)
	}
}

// A log whose last entry cannot be read (raft-wal reported a last index
// below its first one in seed 55745122 of the in-process fault profile) is
// ErrDamagedDataDir, so that the documented recovery applies, and not
// raft's own "failed to get last log" error.
func TestAnUnreadableLastEntryIsADamagedDataDir(t *testing.T) {
	mem := raft.NewInmemStore()
	for i := uint64(1); i <= 3; i++ {
		if err := mem.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := mem.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	st := &stores{logs: unreadableLog{InmemStore: mem, lost: 3}, stable: mem, snaps: raft.NewInmemSnapshotStore(), logDir: "wal"}
	rc := raft.DefaultConfig()
	rc.LocalID = "n1"
	_, trans := raft.NewInmemTransport("n1")
	r, err := newRaft(rc, &raft.MockFSM{}, st, trans)
	if r != nil {
		_ = r.Shutdown().Error()
	}
	if !errors.Is(err, ErrDamagedDataDir) || !strings.Contains(err.Error(), "index 3") {
		t.Fatalf("newRaft over a log whose last entry is unreadable: %v, want ErrDamagedDataDir naming index 3", err)
	}
}

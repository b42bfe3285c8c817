package raftactor

import (
	"errors"
	"fmt"
	"testing"

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
	_, trans := raft.NewInmemTransport("n1")
	r, err := newRaft(rc, &raft.MockFSM{}, st, trans)
	if r != nil {
		_ = r.Shutdown().Error()
	}
	if !errors.Is(err, ErrDamagedDataDir) {
		t.Fatalf("newRaft over a log with an unreadable entry: %v, want ErrDamagedDataDir", err)
	}
}

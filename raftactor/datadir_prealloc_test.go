package raftactor

import (
	"errors"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/hashicorp/raft-wal/types"
)

// failTruncationAtCreate stores entries 1..5, then truncates the last one
// while the preallocation of new segment files fails: raft-wal commits the
// truncation (and the new tail segment) to its meta database, then fails
// to create the tail's file, whose empty file stays behind. It returns
// whether the log asked the node to reopen it.
func failTruncationAtCreate(t *testing.T, l *rotationLog) (reopenAsked *atomic.Bool) {
	t.Helper()
	for i := uint64(1); i <= 5; i++ {
		if err := l.store(i); err != nil {
			t.Fatal(err)
		}
	}
	reopenAsked = new(atomic.Bool)
	l.st.watch.watchWith(nil, func() { reopenAsked.Store(true) })
	l.disk.FailPreallocations(syscall.ENOSPC)
	if err := l.st.logs.DeleteRange(5, 5); !noSpace(err) {
		t.Fatalf("truncation while new segment files cannot be preallocated: %v, want no space left on device", err)
	}
	return reopenAsked
}

// A tail truncation whose new segment file could not be preallocated (the
// disk-full nemesis, seed 385781004) left raft-wal's meta database
// committed to the new segment while its in-memory state kept the old
// one; every later truncation in the process tried to create the same
// file again and failed with "file exists", even with space back. The
// log must take the truncation again once space is back.
func TestFailedSegmentCreationAtATruncationCanBeRetried(t *testing.T) {
	l := newRotationLog(t)
	failTruncationAtCreate(t, l)
	l.disk.Heal()
	if err := l.st.logs.DeleteRange(5, 5); err != nil {
		t.Fatalf("the truncation again, space back: %v", err)
	}
	l.check(4)
	for i := uint64(5); i <= 6; i++ {
		if err := l.store(i); err != nil {
			t.Fatalf("append %d after the truncation: %v", i, err)
		}
	}
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	l.check(6)
}

// After that failed truncation the log in memory still ends at the entry
// the meta database no longer holds: the node reported a last index its
// files did not hold (a power cut found 878 on disk for a reported 879).
// The failure must make the node reopen its log, which then holds what
// its files hold (the truncation was committed): raft-wal takes the empty
// file the failed creation left as its open segment, so the open needs no
// space, and the log takes appends.
func TestFailedSegmentCreationAtATruncationReopensTheLog(t *testing.T) {
	l := newRotationLog(t)
	reopenAsked := failTruncationAtCreate(t, l)
	if !reopenAsked.Load() {
		t.Fatal("the failed truncation did not ask the node to reopen its log")
	}
	if err := l.reopen(); err != nil {
		t.Fatalf("reopen while new segment files still cannot be preallocated: %v", err)
	}
	l.check(4)
	l.disk.Heal()
	for i := uint64(5); i <= 6; i++ {
		if err := l.store(i); err != nil {
			t.Fatalf("append %d after the reopen: %v", i, err)
		}
	}
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	l.check(6)
}

// A rotation after an append meets the same failure: raft-wal committed
// the new segment, its file stayed empty, and every later append fails
// with "segment is sealed" until the node reopens its log. The reopened
// log takes the empty file as its open segment and holds every entry.
func TestFailedSegmentCreationAtARotationReopensTheLog(t *testing.T) {
	l := newRotationLog(t)
	l.disk.FailPreallocations(syscall.ENOSPC)
	var last uint64
	for i := uint64(1); last == 0; i++ {
		if i > 1000 {
			t.Fatal("no segment rotation in 1000 appends")
		}
		if err := l.store(i); err != nil {
			if !errors.Is(err, types.ErrSealed) {
				t.Fatalf("append %d while new segment files cannot be preallocated: %v, want %v", i, err, types.ErrSealed)
			}
			last = i - 1
		}
	}
	if err := l.reopen(); err != nil {
		t.Fatalf("reopen: %v", err)
	}
	l.check(last)
	l.disk.Heal()
	for i := last + 1; i <= 2*last+1; i++ {
		if err := l.store(i); err != nil {
			t.Fatalf("append %d after the reopen: %v", i, err)
		}
	}
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	l.check(2*last + 1)
}

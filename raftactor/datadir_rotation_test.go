package raftactor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/types"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/faults"
)

// rotationLog is a node's log store opened on a test directory over a
// faults.Disk, with segments small enough to fill in a few appends.
type rotationLog struct {
	t    *testing.T
	cfg  Config
	disk *faults.Disk
	st   *stores
}

func newRotationLog(t *testing.T) *rotationLog {
	l := &rotationLog{t: t, disk: faults.NewDisk()}
	l.cfg = Config{DataDir: t.TempDir(), SnapshotRetain: 2, Logger: zap.NewNop(), Disk: l.disk, WALSegmentSize: 8 << 10}
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.close() })
	return l
}

func (l *rotationLog) close() {
	if l.st != nil {
		if err := l.st.close(); err != nil {
			l.t.Errorf("close the log: %v", err)
		}
		l.st = nil
	}
}

// reopen closes the log and opens it again, as a node does after a failed
// rotation (reopenLog).
func (l *rotationLog) reopen() error {
	l.close()
	st, err := openStores(l.cfg)
	if err != nil {
		return err
	}
	l.st = st
	return nil
}

// entry is the log entry at index i, as the test writes it.
func entry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("%d:%s", i, bytes.Repeat([]byte("x"), 500)))}
}

func (l *rotationLog) store(i uint64) error { return l.st.logs.StoreLogs([]*raft.Log{entry(i)}) }

// check fails the test unless the log holds exactly the entries 1..last
// the test wrote.
func (l *rotationLog) check(last uint64) {
	l.t.Helper()
	first, err := l.st.logs.FirstIndex()
	if err != nil {
		l.t.Fatal(err)
	}
	got, err := l.st.logs.LastIndex()
	if err != nil {
		l.t.Fatal(err)
	}
	if first != 1 || got != last {
		l.t.Fatalf("the log holds %d..%d, want 1..%d", first, got, last)
	}
	for i := uint64(1); i <= last; i++ {
		var e raft.Log
		if err := l.st.logs.GetLog(i, &e); err != nil {
			l.t.Fatalf("entry %d: %v", i, err)
		}
		if want := entry(i); !bytes.Equal(e.Data, want.Data) {
			l.t.Fatalf("entry %d holds %.20q, want %.20q", i, e.Data, want.Data)
		}
	}
}

// sealWithoutCommit appends entries until the append that fills a segment
// sealed its file while raft-wal's commit of the next segment failed: the
// next append fails with "segment is sealed". It returns the last index
// stored.
func (l *rotationLog) sealWithoutCommit(next uint64) uint64 {
	l.t.Helper()
	l.disk.FailMetaCommits(syscall.ENOSPC)
	for i := next; i < next+1000; i++ {
		err := l.store(i)
		if err == nil {
			continue
		}
		if !errors.Is(err, types.ErrSealed) {
			l.t.Fatalf("append %d while the meta commits fail: %v, want %v", i, err, types.ErrSealed)
		}
		return i - 1
	}
	l.t.Fatal("no segment rotation in 1000 appends")
	return 0
}

// A segment rotation that fails at raft-wal's meta commit (the disk filled
// after the append that sealed the segment file) leaves a segment file
// that is sealed on disk while the meta database still lists it as the
// open tail. Every open of the directory used to find that sealed tail and
// fail every append with "segment is sealed", forever, even with space
// back. The open must record the seal and start a new segment: appends go
// on, and every entry written before is still there, also after a later
// rotation and another reopen. While the disk is still full, the open
// itself fails for lack of space, so the node tries it again.
func TestFailedRotationCommitLeavesTheLogWritableAfterReopen(t *testing.T) {
	l := newRotationLog(t)
	last := l.sealWithoutCommit(1)
	t.Logf("the segment sealed at index %d; its rotation failed", last)

	err := l.reopen()
	if err == nil {
		err = l.store(last + 1)
	}
	if !noSpace(err) {
		t.Fatalf("reopen and append while the disk is still full: %v, want no space left on device", err)
	}

	l.disk.Heal()
	if err := l.reopen(); err != nil {
		t.Fatalf("reopen once space is back: %v", err)
	}
	l.check(last)
	if err := l.store(last + 1); err != nil {
		t.Fatalf("append %d after the reopen: %v", last+1, err)
	}
	// Enough for at least one more rotation, then the directory again.
	end := 3*last + 1
	for i := last + 2; i <= end; i++ {
		if err := l.store(i); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	l.check(end)
}

// raft-wal seals the open segment file before it commits a tail truncation
// too; when that commit fails, the truncation did not happen (Raft hears
// of the failure and tries again), and the reopened log must hold every
// entry it held before and take appends.
func TestFailedTruncationCommitLeavesTheLogWritableAfterReopen(t *testing.T) {
	l := newRotationLog(t)
	for i := uint64(1); i <= 5; i++ {
		if err := l.store(i); err != nil {
			t.Fatal(err)
		}
	}
	l.disk.FailMetaCommits(syscall.ENOSPC)
	if err := l.st.logs.DeleteRange(4, 5); !noSpace(err) {
		t.Fatalf("truncation while the meta commits fail: %v, want no space left on device", err)
	}
	l.disk.Heal()
	if err := l.reopen(); err != nil {
		t.Fatalf("reopen once space is back: %v", err)
	}
	l.check(5)
	if err := l.store(6); err != nil {
		t.Fatalf("append after the reopen: %v", err)
	}
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	l.check(6)
}

// An open segment whose file holds an intact write batch after its seal
// is nothing raft-wal writes: recording the seal would hide the entries
// after it, so the open refuses the directory as damaged instead.
func TestBatchAfterTheSealOfTheOpenSegmentIsDamage(t *testing.T) {
	l := newRotationLog(t)
	l.sealWithoutCommit(1)
	l.close()
	l.disk.Heal()

	// The open segment is the last in the meta database, the sealed file.
	segs, err := filepath.Glob(filepath.Join(l.cfg.DataDir, "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments: %v %v", segs, err)
	}
	slices.Sort(segs)
	path := segs[len(segs)-1]
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	s, err := scanSegment(f, fi.Size(), false)
	if err != nil || !s.sealed {
		t.Fatalf("the open segment's file: sealed %v, %v", s.sealed, err)
	}
	// One entry frame and the commit frame whose CRC covers it.
	payload := []byte("12345678")
	batch := binary.LittleEndian.AppendUint32([]byte{walFrameEntry, 0, 0, 0}, uint32(len(payload)))
	batch = append(batch, payload...)
	sum := crc32.Checksum(batch, castagnoli)
	batch = binary.LittleEndian.AppendUint32(append(batch, walFrameCommit, 0, 0, 0), sum)
	if _, err := f.WriteAt(batch, s.good); err != nil {
		t.Fatal(err)
	}

	if err := l.reopen(); !errors.Is(err, ErrDamagedDataDir) {
		t.Fatalf("open with a batch after the open segment's seal: %v, want %v", err, ErrDamagedDataDir)
	}
}

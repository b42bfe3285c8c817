package raftactor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/internal/diskdamage"
)

// A bit flipped anywhere in the open log segment must end in one of two
// ways when the node opens its directory: it refuses with
// ErrDamagedDataDir naming the segment, or it opens a log that raft can
// start on (its last entry readable) holding exactly the entries written,
// of which only the last write batch may be missing (a bit in it looks
// like a torn write and is rolled back, the accepted risk). Seed 55745122
// of the in-process fault profile found a bit in an entry's length that
// made the start check roll back every batch after it as torn: synced
// entries were lost, and raft-wal then reported a last index below its
// first one, which it could not read ("failed to get last log at index
// 540: log not found"), an error the documented recovery did not apply to.

// flipLog is a log written into a data directory: its entries, the write
// batches they were stored in, and the open segment's frames.
type flipLog struct {
	dir     string
	work    string // where openFlipped copies dir
	entries map[uint64]raft.Log
	first   uint64
	// lastButOne is the last index of every batch but the last one: no
	// opened log may end below it.
	lastButOne, last uint64
	segment          string
	frames           []int64 // offsets of the open segment's frame headers
	written          int64
}

// flipConfig opens dir as a node does, with segments small enough to
// copy quickly.
func flipConfig(dir string) Config {
	return Config{DataDir: dir, Logger: zap.NewNop(), SnapshotRetain: 1, WALSegmentSize: 1 << 20}
}

// writeFlipLog stores batches of entries of varied sizes (lengths above
// 256 bytes, so that a flipped bit in a length's second byte means a
// different frame), then compacts the head as raft does after a snapshot,
// so that the open segment's first index is above its base index.
func writeFlipLog(t *testing.T) flipLog {
	t.Helper()
	l := flipLog{dir: t.TempDir(), work: t.TempDir(), entries: map[uint64]raft.Log{}}
	st, err := openStores(flipConfig(l.dir))
	if err != nil {
		t.Fatal(err)
	}
	idx := uint64(0)
	for b, n := range []int{2, 3, 1, 4, 2, 5, 1, 3, 2, 1} {
		var batch []*raft.Log
		for i := 0; i < n; i++ {
			idx++
			data := bytes.Repeat([]byte{byte('a' + idx%26)}, 20+int(idx*97%700))
			e := raft.Log{Index: idx, Term: 1 + uint64(b/4), Type: raft.LogCommand, Data: data}
			l.entries[idx] = e
			batch = append(batch, &e)
		}
		if b == 9 {
			l.lastButOne = idx - uint64(n)
		}
		if err := st.logs.StoreLogs(batch); err != nil {
			t.Fatal(err)
		}
	}
	l.last = idx
	l.first = 6
	if err := st.logs.DeleteRange(1, l.first-1); err != nil {
		t.Fatal(err)
	}
	if err := st.stable.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if err := st.close(); err != nil {
		t.Fatal(err)
	}
	segs, err := diskdamage.Segments(l.dir)
	if err != nil || len(segs) != 1 {
		t.Fatalf("want one open segment: %v %v", segs, err)
	}
	l.segment = segs[0]
	b, err := os.ReadFile(l.segment)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(walFileHeaderLen); off+walFrameHeaderLen <= int64(len(b)) && b[off] != 0; {
		l.frames = append(l.frames, off)
		switch b[off] {
		case walFrameCommit:
			off += walFrameHeaderLen
		default:
			off += walFrameHeaderLen + int64(binary.LittleEndian.Uint32(b[off+4:])+7)/8*8
		}
	}
	l.written = l.frames[len(l.frames)-1] + walFrameHeaderLen
	return l
}

// copyDir copies data directory src (its files and wal/) to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

type flip struct {
	off int64
	bit int
	// zero clears the 8 bytes at off instead: a sector that lost its
	// data reads as zeros.
	zero bool
}

// flips are the bits to flip: the type, a reserved byte and three length
// (or checksum) bytes of every frame header, bytes of the file header,
// and seeded random offsets of what was written.
func (l flipLog) flips(rng *rand.Rand) []flip {
	var fs []flip
	for _, h := range l.frames {
		fs = append(fs, flip{off: h, bit: 1}, flip{off: h + 1}, flip{off: h + 4, bit: 3}, flip{off: h + 5, bit: 6}, flip{off: h + 6})
	}
	for _, h := range l.frames[:len(l.frames)-3] {
		fs = append(fs, flip{off: h, zero: true})
	}
	for off := int64(0); off < walFileHeaderLen; off += 5 {
		fs = append(fs, flip{off: off, bit: int(off) % 8})
	}
	for i := 0; i < 60; i++ {
		fs = append(fs, flip{off: rng.Int63n(l.written), bit: rng.Intn(8)})
	}
	return fs
}

// openFlipped opens a copy of l's directory with one bit flipped as a
// node does, and says what was wrong, if anything.
func (l flipLog) openFlipped(t *testing.T, f flip) string {
	// One copy at a time: each holds a preallocated segment.
	dir := filepath.Join(l.work, "d")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	copyDir(t, l.dir, dir)
	seg := filepath.Join(dir, "wal", filepath.Base(l.segment))
	if f.zero {
		if err := writeZeros(seg, f.off, walFrameHeaderLen); err != nil {
			t.Fatal(err)
		}
	} else if err := diskdamage.FlipBitAt(seg, f.off, f.bit); err != nil {
		t.Fatal(err)
	}
	st, err := openStores(flipConfig(dir))
	if err != nil {
		if !errors.Is(err, ErrDamagedDataDir) || !strings.Contains(err.Error(), seg) {
			return fmt.Sprintf("refused without ErrDamagedDataDir naming %s: %v", seg, err)
		}
		return ""
	}
	defer st.close()
	first, err := st.logs.FirstIndex()
	if err != nil {
		return fmt.Sprintf("first index: %v", err)
	}
	last, err := st.logs.LastIndex()
	if err != nil {
		return fmt.Sprintf("last index: %v", err)
	}
	// What raft.NewRaft reads first.
	var e raft.Log
	if err := st.logs.GetLog(last, &e); last > 0 && err != nil {
		return fmt.Sprintf("raft cannot start: failed to get last log at index %d: %v", last, err)
	}
	if first != l.first || last < l.lastButOne || last > l.last {
		return fmt.Sprintf("opened with entries %d to %d, want %d to %d (or %d, the last batch rolled back)",
			first, last, l.first, l.last, l.lastButOne)
	}
	for i := first; i <= last; i++ {
		var e raft.Log
		if err := st.logs.GetLog(i, &e); err != nil {
			return fmt.Sprintf("entry %d of %d to %d: %v", i, first, last, err)
		}
		w := l.entries[i]
		if e.Index != w.Index || e.Term != w.Term || !bytes.Equal(e.Data, w.Data) {
			return fmt.Sprintf("entry %d reads back as another (term %d, %d bytes)", i, e.Term, len(e.Data))
		}
	}
	next := raft.Log{Index: last + 1, Term: 3, Type: raft.LogCommand, Data: []byte("next")}
	if err := st.logs.StoreLog(&next); err != nil {
		return fmt.Sprintf("append after the open: %v", err)
	}
	return ""
}

func TestAFlippedBitInTheOpenSegmentIsRefusedOrRolledBackWithoutLosingSyncedEntries(t *testing.T) {
	seed := rand.Int63()
	t.Logf("seed %d", seed)
	l := writeFlipLog(t)
	bad := 0
	for _, f := range l.flips(rand.New(rand.NewSource(seed))) {
		if msg := l.openFlipped(t, f); msg != "" {
			bad++
			what := fmt.Sprintf("bit %d", f.bit)
			if f.zero {
				what = "zeros"
			}
			t.Errorf("%s at %d of the open segment: %s", what, f.off, msg)
		}
	}
	if bad > 0 {
		t.Logf("%d flips of %d frames (%d bytes written) went wrong", bad, len(l.frames), l.written)
	}
}

func writeZeros(path string, off int64, n int) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(make([]byte, n), off)
	return err
}

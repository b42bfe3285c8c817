// Package diskdamage damages a stopped node's data directory the way a
// crash or a failing disk does: it tears the tail of the newest log
// segment (a half-written batch, or garbage written after the last byte)
// or flips a bit in a log segment or a snapshot file. Tests and
// the integration suite use it on a node that is not running; nothing else
// may.
package diskdamage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Damage is what was done to which file.
type Damage struct {
	// File is the damaged file, relative to the data directory.
	File   string
	Offset int64
	// What says how: "truncated", "garbage" (with its length) or "bit N".
	What string
}

func (d Damage) String() string { return fmt.Sprintf("%s at %d of %s", d.What, d.Offset, d.File) }

// ErrNothingToDamage is returned when the directory has no file of the kind.
var ErrNothingToDamage = errors.New("no file to damage")

// Segments returns the log segment files of data directory dir, oldest
// first (raft-wal names them by base index and ID).
func Segments(dir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	sort.Strings(m)
	return m, err
}

// SnapshotFiles returns every snapshot's state.bin and meta.json.
func SnapshotFiles(dir string) ([]string, error) {
	var files []string
	for _, name := range []string{"state.bin", "meta.json"} {
		m, err := filepath.Glob(filepath.Join(dir, "snapshots", "*", name))
		if err != nil {
			return nil, err
		}
		for _, f := range m {
			if !strings.HasSuffix(filepath.Dir(f), ".tmp") {
				files = append(files, f)
			}
		}
	}
	sort.Strings(files)
	return files, nil
}

// Written is the written length of a file: a log segment is preallocated
// with zeros, and what was written ends at its last non-zero byte (rounded
// up to raft-wal's 8-byte frame alignment). Other files end at their size.
func Written(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	if filepath.Ext(path) != ".wal" {
		return int64(len(b)), nil
	}
	n := int64(len(bytes.TrimRight(b, "\x00")))
	return min((n+7)/8*8, int64(len(b))), nil
}

// TornTail damages the tail of dir's newest log segment as a crash in the
// middle of a write can: a strict prefix of the segment's last write batch
// is written again after its end (a half-written next batch: its entries
// without their commit frame, or with a commit frame torn before its
// checksum), or random bytes are written after its end.
//
// It never touches a byte that was written before the crash. raft-wal
// syncs every batch before the append returns, so those bytes may have
// been acknowledged to a leader, and a node that loses acknowledged
// entries is outside what Raft tolerates: with one more fault the group
// can elect a leader without a committed entry. Losing them is the
// corruption that Corrupt injects, which a node must refuse, not a torn
// write that it must roll back.
func TornTail(dir string, rng *rand.Rand) (Damage, error) {
	segs, err := Segments(dir)
	if err != nil {
		return Damage{}, err
	}
	if len(segs) == 0 {
		return Damage{}, fmt.Errorf("%w: %s has no log segment", ErrNothingToDamage, dir)
	}
	path := segs[len(segs)-1]
	rel, _ := filepath.Rel(dir, path)
	b, err := os.ReadFile(path)
	if err != nil {
		return Damage{}, err
	}
	if batch, end, ok := lastBatch(b); ok && rng.Intn(2) == 0 {
		// The copy's entries precede its commit frame; keeping at most the
		// commit frame's type byte and the reserved bytes after it leaves
		// the checksum unwritten (zero), so no prefix reads as a whole batch.
		n := 1 + rng.Intn(len(batch)-frameHeaderLen+4)
		return Damage{File: rel, Offset: end, What: fmt.Sprintf("torn write of %d of a %d-byte batch", n, len(batch))},
			writeAt(path, batch[:n], end)
	}
	n, err := Written(path)
	if err != nil {
		return Damage{}, err
	}
	garbage := make([]byte, 1+rng.Intn(4096))
	rng.Read(garbage)
	return Damage{File: rel, Offset: n, What: fmt.Sprintf("garbage of %d bytes", len(garbage))}, writeAt(path, garbage, n)
}

// raft-wal's segment layout (segment/format.go): a 32-byte file header,
// then 8-byte aligned frames, each with an 8-byte header of a type byte,
// three reserved bytes and a little-endian length (a checksum for a
// commit frame, which has no payload).
const (
	segmentHeaderLen = 32
	frameHeaderLen   = 8
	frameEntry       = 1
	frameIndex       = 2
	frameCommit      = 3
)

// lastBatch returns the bytes of segment b's last committed write batch
// (its entry frames and its commit frame) and the offset just after it.
// ok is false when b holds no commit, or ends in an index frame (a sealed
// segment takes no further batch).
func lastBatch(b []byte) (batch []byte, end int64, ok bool) {
	off, start, prev := segmentHeaderLen, -1, segmentHeaderLen
	for off+frameHeaderLen <= len(b) {
		switch typ := b[off]; typ {
		case frameEntry, frameIndex:
			l := int(binary.LittleEndian.Uint32(b[off+4 : off+8]))
			if typ == frameIndex {
				return nil, 0, false
			}
			off += frameHeaderLen + (l+frameHeaderLen-1)/frameHeaderLen*frameHeaderLen
		case frameCommit:
			start, prev = prev, off+frameHeaderLen
			off = prev
		default:
			off = len(b)
		}
	}
	if start < 0 || prev > len(b) {
		return nil, 0, false
	}
	return b[start:prev], int64(prev), true
}

// FlipBit flips one random bit of what was written to path.
func FlipBit(path string, rng *rand.Rand) (Damage, error) {
	n, err := Written(path)
	if err != nil {
		return Damage{}, err
	}
	if n == 0 {
		return Damage{}, fmt.Errorf("%w: %s is empty", ErrNothingToDamage, path)
	}
	off, bit := rng.Int63n(n), rng.Intn(8)
	return Damage{File: path, Offset: off, What: fmt.Sprintf("bit %d flipped", bit)}, FlipBitAt(path, off, bit)
}

// FlipBitAt flips bit (0..7) of the byte at off.
func FlipBitAt(path string, off int64, bit int) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	b[0] ^= 1 << bit
	if _, err := f.WriteAt(b[:], off); err != nil {
		return err
	}
	return f.Sync()
}

// Corrupt flips a random bit of a random file of dir: a log segment
// (sealed or open) or a snapshot's state or meta file.
func Corrupt(dir string, rng *rand.Rand) (Damage, error) {
	segs, err := Segments(dir)
	if err != nil {
		return Damage{}, err
	}
	snaps, err := SnapshotFiles(dir)
	if err != nil {
		return Damage{}, err
	}
	files := append(segs, snaps...)
	if len(files) == 0 {
		return Damage{}, fmt.Errorf("%w: %s has no log segment or snapshot", ErrNothingToDamage, dir)
	}
	d, err := FlipBit(files[rng.Intn(len(files))], rng)
	if rel, rerr := filepath.Rel(dir, d.File); rerr == nil {
		d.File = rel
	}
	return d, err
}

func writeAt(path string, b []byte, off int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		return err
	}
	return f.Sync()
}

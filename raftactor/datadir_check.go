package raftactor

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/types"
	"go.uber.org/zap"
)

// A node checks its files before Raft reads them: raft-wal verifies the
// checksums of its segments only for the last write batch of the open
// segment, when it recovers from a crash, and never on reads, so a flipped
// bit anywhere else in the log would be applied and served as a wrong
// value; and raft's snapshot store silently skips a snapshot whose meta
// file does not parse, or takes a changed index in it at its word.
//
//   - Log segments (checkLogFiles): every write batch of every segment
//     must match the CRC-32C raft-wal wrote in its commit frame. The one
//     exception is the end of the open segment: a batch there that does
//     not match, and whatever follows the last one that does, is a write a
//     crash tore. It is rolled back as raft-wal rolls it back (the node
//     fetches those entries from the leader again), and the bytes are
//     zeroed so that no stale frame can be read after later appends. A
//     mismatch anywhere else is damage, and so is an intact batch
//     anywhere after the unreadable one (a crash tears only the last
//     write), or a roll back to below the first index raft-wal's meta
//     data gives the segment (intactBatchIn, checkSegment).
//   - Snapshots (checkSnapshotFiles): every snapshot's meta file must
//     match the SHA-256 beside it (snapshotSumFile, when there is one),
//     parse and agree with the snapshot's name (term and index), and its
//     state file must match the size and CRC-64 of the meta file.
//
// Damage makes the node refuse to start with ErrDamagedDataDir, naming
// the file and the recovery (damageError).

// damageError is ErrDamagedDataDir for the file at path, with what is
// wrong and what the operator does about it.
func damageError(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s; the node does not trust its files and will not start: "+
		"remove it from the group, delete its data directory and add it again "+
		"(cluster.Group.Join, the kv sample's --join); the other members hold every acknowledged write",
		ErrDamagedDataDir, path, fmt.Sprintf(format, args...))
}

// raft-wal's segment format (segment/format.go of raft-wal v0.4.1): a
// 32-byte file header, then frames of an 8-byte header (type, 3 reserved
// zero bytes, a little-endian length or, for a commit frame, a CRC-32C) and a
// payload padded to 8 bytes. A commit frame's CRC covers every byte since
// the previous commit frame's header (the file header included for the
// first one).
const (
	walFileHeaderLen  = 32
	walFrameHeaderLen = 8
	walFrameEntry     = 1
	walFrameIndex     = 2
	walFrameCommit    = 3
	walMaxEntrySize   = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentScan is what a read through one segment file found.
type segmentScan struct {
	// good is the end of the last commit frame whose batch matched its
	// CRC, with every batch before it; 0 when there is none.
	good int64
	// entries counts the entry frames up to good; sealed says an index
	// frame is among them, and indexStart is where its array starts (the
	// frame's offset past its header, raft-wal's SegmentInfo.IndexStart).
	// pastSeal says an intact batch follows the sealed one, which raft-wal
	// never writes.
	entries    int
	sealed     bool
	indexStart int64
	pastSeal   bool
	// bad is the offset of the first commit frame whose batch did not
	// match, -1 when none; commitsAfterBad counts the commit frames that
	// follow it.
	bad             int64
	commitsAfterBad int
}

// scanSegment reads a segment file frame by frame up to its first zero,
// unreadable or truncated frame header, or, when stopAtSeal, up to the
// commit of its index frame.
func scanSegment(f io.ReaderAt, size int64, stopAtSeal bool) (segmentScan, error) {
	s := segmentScan{bad: -1}
	crc := crc32.New(castagnoli)
	if size < walFileHeaderLen {
		return s, nil
	}
	if _, err := io.Copy(crc, io.NewSectionReader(f, 0, walFileHeaderLen)); err != nil {
		return s, err
	}
	off := int64(walFileHeaderLen)
	entries, index, indexAt := 0, false, int64(0)
	var hdr [walFrameHeaderLen]byte
	for off+walFrameHeaderLen <= size {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return s, err
		}
		n := int64(binary.LittleEndian.Uint32(hdr[4:]))
		if hdr[1]|hdr[2]|hdr[3] != 0 {
			// raft-wal writes the reserved bytes as zeros: this is no
			// frame of its, and random bytes seldom pass for one.
			return s, nil
		}
		switch hdr[0] {
		case walFrameEntry, walFrameIndex:
			end := off + walFrameHeaderLen + (n+7)/8*8
			if n > walMaxEntrySize || end > size {
				return s, nil
			}
			if _, err := io.Copy(crc, io.NewSectionReader(f, off, end-off)); err != nil {
				return s, err
			}
			if hdr[0] == walFrameEntry {
				entries++
			} else {
				index, indexAt = true, off+walFrameHeaderLen
			}
			off = end
		case walFrameCommit:
			switch {
			case s.bad >= 0:
				s.commitsAfterBad++
			case crc.Sum32() == uint32(n):
				s.pastSeal = s.pastSeal || s.sealed
				s.good, s.entries = off+walFrameHeaderLen, s.entries+entries
				if index && !s.sealed {
					s.sealed, s.indexStart = true, indexAt
				}
			default:
				s.bad = off
			}
			entries, index = 0, false
			crc.Reset()
			off += walFrameHeaderLen
			if stopAtSeal && s.sealed {
				return s, nil
			}
		default:
			// Zeros (the end of what was written), or a header no writer
			// wrote (a torn write, or damage: the caller tells them apart).
			return s, nil
		}
	}
	return s, nil
}

// checkDataFiles checks a data directory's log segments and snapshots
// before they are opened; meta is raft-wal's meta database, which the log
// opens next.
func checkDataFiles(dir, walDir string, meta types.MetaStore, log *zap.Logger) error {
	if err := checkSnapshotFiles(dir); err != nil {
		return err
	}
	return checkLogFiles(walDir, meta, log)
}

// checkLogFiles checks every log segment raft-wal's meta database in
// walDir lists, before raft-wal opens them, and rolls back a torn tail of
// the open segment (see the top of this file). A new directory has none.
func checkLogFiles(walDir string, meta types.MetaStore, log *zap.Logger) error {
	state, err := meta.Load(walDir)
	if err != nil {
		return fmt.Errorf("%w: log meta database in %s: %v", ErrDamagedDataDir, walDir, err)
	}
	for i, seg := range state.Segments {
		path := filepath.Join(walDir, fmt.Sprintf("%020d-%016x.wal", seg.BaseIndex, seg.ID))
		tail := i == len(state.Segments)-1 && seg.SealTime.IsZero()
		s, err := checkSegment(path, seg, tail, log)
		if err != nil {
			return err
		}
		if tail && s.sealed {
			if s.pastSeal {
				return damageError(path, "the open segment holds write batches after its seal")
			}
			return recordSeal(meta, state, s, path, log)
		}
	}
	return nil
}

// recordSeal finishes a segment rotation that sealed the open segment's
// file but failed to commit it in raft-wal's meta database (a disk that
// filled after the append that sealed it: "rotate error: write
// wal/wal-meta.db: no space left on device"; a process killed, or a log
// closed, between the append and the commit, which raft-wal runs on its
// own goroutine; a tail truncation seals it too before its commit).
// raft-wal's meta data then still lists the
// sealed segment as the open tail; raft-wal recovers it as is at every
// open, with its writer sealed, and fails every append with "segment is
// sealed", forever, and it starts a new segment only when it rotates
// after an append. So the open commits what the failed rotation would
// have: the segment sealed with every entry its file holds (MaxIndex and
// IndexStart from the file, as raft-wal writes them), and a new, empty
// tail after it. No segment file is changed and no entry is dropped: the
// entries of a truncation that failed stay, as Raft was told it failed.
// A sealed tail without entries holds nothing to keep, and is replaced
// by a new one at the same index. While the disk is still full the
// commit fails for lack of space, and the node tries its start again.
func recordSeal(meta types.MetaStore, state types.PersistentState, s segmentScan, path string, log *zap.Logger) error {
	n := len(state.Segments)
	seg := state.Segments[n-1]
	now := time.Now()
	segs := slices.Clone(state.Segments[:n-1])
	next := types.SegmentInfo{
		ID:         state.NextSegmentID,
		BaseIndex:  seg.BaseIndex,
		MinIndex:   seg.MinIndex,
		Codec:      seg.Codec,
		SizeLimit:  seg.SizeLimit,
		CreateTime: now,
	}
	if s.entries > 0 {
		seg.MaxIndex = seg.BaseIndex + uint64(s.entries) - 1
		seg.IndexStart = uint64(s.indexStart)
		seg.SealTime = now
		segs = append(segs, seg)
		next.BaseIndex, next.MinIndex = seg.MaxIndex+1, seg.MaxIndex+1
	}
	segs = append(segs, next)
	if err := meta.CommitState(types.PersistentState{NextSegmentID: state.NextSegmentID + 1, Segments: segs}); err != nil {
		return fmt.Errorf("record the seal of log segment %s: %w", path, err)
	}
	log.Warn("the open log segment was sealed but its rotation was never committed; recorded the seal and started a new segment",
		zap.String("segment", path), zap.Uint64("last_index", seg.MaxIndex), zap.Uint64("next_segment_index", next.BaseIndex))
	return nil
}

// checkSegment checks one segment (see the top of this file) and returns
// what the read through it found.
func checkSegment(path string, seg types.SegmentInfo, tail bool, log *zap.Logger) (segmentScan, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		if tail {
			return segmentScan{bad: -1}, nil // raft-wal creates a tail it never wrote to
		}
		return segmentScan{}, damageError(path, "the sealed log segment is missing")
	}
	if err != nil {
		return segmentScan{}, fmt.Errorf("open log segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return segmentScan{}, fmt.Errorf("log segment: %w", err)
	}
	s, err := scanSegment(f, fi.Size(), !tail)
	if err != nil {
		return s, fmt.Errorf("read log segment %s: %w", path, err)
	}
	if !tail {
		switch {
		case s.bad >= 0:
			return s, damageError(path, "the write batch before offset %d does not match its checksum", s.bad)
		case !s.sealed:
			return s, damageError(path, "the sealed segment is unreadable after offset %d", s.good)
		case seg.MaxIndex > 0 && uint64(s.entries) < seg.MaxIndex-seg.BaseIndex+1:
			return s, damageError(path, "the sealed segment holds %d entries, its meta data %d", s.entries, seg.MaxIndex-seg.BaseIndex+1)
		}
		return s, nil
	}
	if s.bad >= 0 && s.commitsAfterBad > 0 {
		return s, damageError(path, "the write batch before offset %d does not match its checksum, and later batches follow it", s.bad)
	}
	after, err := writtenAfter(f, s.good, fi.Size())
	if err != nil {
		return s, fmt.Errorf("read log segment %s: %w", path, err)
	}
	// A crash tears the last write only: raft-wal syncs every batch before
	// it writes the next one. A whole batch after the unreadable one is
	// therefore no torn write but damage, wherever the scan stopped (a
	// flipped length or frame type sends it into the middle of a frame,
	// where it finds no frame, or zeros); rolling back to the damage would
	// drop synced entries the node may have acknowledged.
	if at := intactBatchIn(after); at >= 0 {
		return s, damageError(path, "the log is unreadable after offset %d, but an intact write batch follows at offset %d", s.good, s.good+at)
	}
	// raft-wal raises the open segment's first index when raft compacts
	// the log, and only to an index the segment holds: a log that ends
	// below it after the roll back lost synced entries, and raft-wal would
	// report a last entry it cannot read.
	if seg.MinIndex > seg.BaseIndex && seg.BaseIndex+uint64(s.entries) <= seg.MinIndex {
		return s, damageError(path, "the intact write batches end at index %d, below the segment's first index %d in the log meta data",
			seg.BaseIndex+uint64(s.entries)-1, seg.MinIndex)
	}
	return s, rollBackTornTail(f, path, s.good, after, log)
}

// writtenAfter returns what was written to the segment from offset from
// on: its bytes up to the last non-zero one (raft-wal preallocates a
// segment with zeros). Usually nothing; after a torn write or damage, up
// to the rest of the segment. It reads on past zeros: a sector that lost
// its data reads as zeros too, and the batches after it are synced
// entries all the same.
func writtenAfter(f io.ReaderAt, from, size int64) ([]byte, error) {
	end := from
	buf := make([]byte, 1<<20)
	for off := from; off < size; off += int64(len(buf)) {
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if i := len(bytes.TrimRight(buf[:n], "\x00")); i > 0 {
			end = off + int64(i)
		}
		if n < len(buf) {
			break
		}
	}
	if end == from {
		return nil, nil // nothing follows: the usual case
	}
	b := make([]byte, end-from)
	if _, err := f.ReadAt(b, from); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}

// intactBatchIn returns the offset in b of the first entry frame that
// starts a whole write batch (entry frames, an optional index frame and a
// commit frame whose CRC-32C covers them), or -1 when there is none. b
// starts at a frame boundary, so frames are at offsets that are multiples
// of 8. A batch is searched from every frame that looks like an entry's,
// not only after commit frames: the damage may be in the commit frame
// before it.
func intactBatchIn(b []byte) int64 {
	for q := 0; q+walFrameHeaderLen <= len(b); q += walFrameHeaderLen {
		if b[q] == walFrameEntry && b[q+1]|b[q+2]|b[q+3] == 0 && batchEnds(b, q) {
			return int64(q)
		}
	}
	return -1
}

// batchEnds reports whether the frames from offset q of b are entries
// ending in a commit frame that matches them.
func batchEnds(b []byte, q int) bool {
	entries := 0
	for p := q; p+walFrameHeaderLen <= len(b); {
		h := b[p : p+walFrameHeaderLen]
		if h[1]|h[2]|h[3] != 0 {
			return false
		}
		n := int64(binary.LittleEndian.Uint32(h[4:]))
		switch h[0] {
		case walFrameEntry, walFrameIndex:
			end := int64(p) + walFrameHeaderLen + (n+7)/8*8
			if n > walMaxEntrySize || end > int64(len(b)) {
				return false
			}
			if h[0] == walFrameEntry {
				entries++
			}
			p = int(end)
		case walFrameCommit:
			return entries > 0 && crc32.Checksum(b[q:p], castagnoli) == uint32(n)
		default:
			return false
		}
	}
	return false
}

// rollBackTornTail zeroes what was written after from, the end of the
// open segment's last intact write batch: raft-wal ignores it at this
// start, but after later appends a recovery could read its stale frames.
func rollBackTornTail(f *os.File, path string, from int64, after []byte, log *zap.Logger) error {
	if len(after) == 0 {
		return nil // nothing follows: the usual case
	}
	if _, err := f.WriteAt(make([]byte, len(after)), from); err != nil {
		return fmt.Errorf("roll back the torn tail of %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("roll back the torn tail of %s: %w", path, err)
	}
	log.Warn("rolled back a torn write at the end of the log: the entries it held come again from the leader",
		zap.String("segment", path), zap.Int64("offset", from), zap.Int("bytes", len(after)))
	return nil
}

// checkSnapshotFiles checks every snapshot in dir/snapshots (see the top
// of this file). Snapshots still being written (".tmp") are raft's to
// clean up.
func checkSnapshotFiles(dir string) error {
	snapDir := filepath.Join(dir, "snapshots")
	entries, err := os.ReadDir(snapDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read snapshots: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if err := checkSnapshot(filepath.Join(snapDir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// snapshotMetaFile is raft's meta.json (file_snapshot.go's fileSnapshotMeta).
type snapshotMetaFile struct {
	raft.SnapshotMeta
	CRC []byte
}

func checkSnapshot(path string) error {
	metaPath := filepath.Join(path, "meta.json")
	b, err := os.ReadFile(metaPath)
	if err != nil {
		return damageError(metaPath, "%v", err)
	}
	if err := checkSnapshotSum(path, b); err != nil {
		return err
	}
	var meta snapshotMetaFile
	if err := json.Unmarshal(b, &meta); err != nil {
		return damageError(metaPath, "does not parse: %v", err)
	}
	name := filepath.Base(path)
	parts := strings.Split(name, "-")
	if meta.ID != name || len(parts) != 3 || parts[0] != strconv.FormatUint(meta.Term, 10) || parts[1] != strconv.FormatUint(meta.Index, 10) {
		return damageError(metaPath, "names snapshot %q at term %d, index %d, but is the meta file of %s", meta.ID, meta.Term, meta.Index, name)
	}
	statePath := filepath.Join(path, "state.bin")
	f, err := os.Open(statePath)
	if err != nil {
		return damageError(statePath, "%v", err)
	}
	defer f.Close()
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("read snapshot %s: %w", statePath, err)
	}
	if n != meta.Size || !bytes.Equal(h.Sum(nil), meta.CRC) {
		return damageError(statePath, "%d bytes with CRC-64 %x, the meta file says %d bytes with %x", n, h.Sum(nil), meta.Size, meta.CRC)
	}
	return nil
}

// snapshotSumFile, beside a snapshot's meta file, holds the SHA-256 of
// the meta file: raft's CRC-64 covers the state only, and a bit flipped in
// the meta file's configuration (a member's address) would parse. A
// snapshot without one (written before it existed, or by a node that
// crashed between raft's rename and this write) is checked as before.
const snapshotSumFile = "meta.sha256"

// summedSnapshots is raft's file snapshot store, writing snapshotSumFile
// for every snapshot it completes (its own or one installed from the
// leader).
type summedSnapshots struct {
	*raft.FileSnapshotStore
	dir string // the store's snapshots directory
}

func withSnapshotSums(s *raft.FileSnapshotStore, dataDir string) raft.SnapshotStore {
	return summedSnapshots{FileSnapshotStore: s, dir: filepath.Join(dataDir, "snapshots")}
}

// Create implements raft.SnapshotStore.
func (s summedSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	return &summedSink{SnapshotSink: sink, dir: s.dir}, nil
}

type summedSink struct {
	raft.SnapshotSink
	dir string
}

// Close completes the snapshot, then writes its meta file's checksum.
func (s *summedSink) Close() error {
	if err := s.SnapshotSink.Close(); err != nil {
		return err
	}
	path := filepath.Join(s.dir, s.ID())
	b, err := os.ReadFile(filepath.Join(path, "meta.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // already reaped
		}
		return fmt.Errorf("snapshot meta checksum: %w", err)
	}
	sum := sha256.Sum256(b)
	tmp := filepath.Join(path, snapshotSumFile+".tmp")
	if err := os.WriteFile(tmp, []byte(hex.EncodeToString(sum[:])+"\n"), 0o644); err != nil {
		return fmt.Errorf("snapshot meta checksum: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(path, snapshotSumFile)); err != nil {
		return fmt.Errorf("snapshot meta checksum: %w", err)
	}
	return syncFile(path)
}

// checkSnapshotSum compares a snapshot's meta file with its checksum, if
// it has one.
func checkSnapshotSum(path string, meta []byte) error {
	b, err := os.ReadFile(filepath.Join(path, snapshotSumFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return damageError(filepath.Join(path, snapshotSumFile), "%v", err)
	}
	sum := sha256.Sum256(meta)
	if strings.TrimSpace(string(b)) != hex.EncodeToString(sum[:]) {
		return damageError(filepath.Join(path, "meta.json"), "does not match its SHA-256 in %s", snapshotSumFile)
	}
	return nil
}

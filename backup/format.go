package backup

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"
)

// The backup file, version 1. Integers are big-endian.
//
//	offset   size  field
//	0        8     magic "PRBACKUP"
//	8        4     format version (FormatVersion)
//	12       4     header length H, at most MaxHeaderSize
//	16       H     header: JSON (Header), fields this build does not know are ignored
//	16+H     S     the snapshot, S = Header.Size bytes, as the node wrote it
//	16+H+S   32    SHA-256 of every byte before it
//
// The checksum comes last so that a backup can be written as it streams
// from the group, in one pass; a reader checks it before it trusts any of
// the file.
const (
	// FormatVersion is the version this build writes; it reads 1 to it.
	FormatVersion = 1
	// MaxHeaderSize bounds the header, so a damaged length cannot make a
	// reader allocate without limit.
	MaxHeaderSize = 1 << 20
)

var magic = [8]byte{'P', 'R', 'B', 'A', 'C', 'K', 'U', 'P'}

// ErrFormat is returned for a file that is not a backup this build reads:
// another kind of file, a newer format, or one that is damaged or cut
// short.
var ErrFormat = errors.New("not a valid protoraft backup")

// Header says what a backup holds.
type Header struct {
	// Group is the name of the group backed up.
	Group string `json:"group"`
	// Created is when the backup was taken.
	Created time.Time `json:"created"`
	// Node is the member whose snapshot this is.
	Node Member `json:"node"`
	// SnapshotID, Index and Term name the snapshot: the last log index
	// and term it reflects.
	SnapshotID string `json:"snapshot_id"`
	Index      uint64 `json:"index"`
	Term       uint64 `json:"term"`
	// Size is the length of the snapshot's bytes.
	Size uint64 `json:"size"`
	// Version is hashicorp/raft's snapshot version of the snapshot.
	Version int `json:"raft_snapshot_version"`
	// Members is the configuration the snapshot holds: the group as it
	// was, which a restore replaces by the new group's members.
	Members []Member `json:"members"`
	// ConfigurationIndex is the index of that configuration.
	ConfigurationIndex uint64 `json:"configuration_index"`
}

// Member is a member of a group's configuration.
type Member struct {
	ID string `json:"id"`
	// Address is its Raft address.
	Address string `json:"address"`
	// Suffrage is VOTER or NONVOTER.
	Suffrage string `json:"suffrage,omitempty"`
}

// Write writes a backup of h and snapshot to w, which must yield exactly
// h.Size bytes.
func Write(w io.Writer, h Header, snapshot io.Reader) error {
	head, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("backup: header: %w", err)
	}
	if len(head) > MaxHeaderSize {
		return fmt.Errorf("backup: the header is %d bytes, more than %d", len(head), MaxHeaderSize)
	}
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, sum), 256<<10)
	var pre [16]byte
	copy(pre[:8], magic[:])
	binary.BigEndian.PutUint32(pre[8:], FormatVersion)
	binary.BigEndian.PutUint32(pre[12:], uint32(len(head)))
	if _, err := bw.Write(pre[:]); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := bw.Write(head); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	n, err := io.Copy(bw, snapshot)
	if err != nil {
		return fmt.Errorf("backup: copy the snapshot: %w", err)
	}
	if uint64(n) != h.Size {
		return fmt.Errorf("backup: the snapshot was %d bytes, its header says %d", n, h.Size)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := w.Write(sum.Sum(nil)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// File is a backup file opened for reading, its checksum checked.
type File struct {
	// Header is what the backup holds.
	Header Header
	// FormatVersion is the version the file was written in.
	FormatVersion int
	// SHA256 is the file's checksum, as stored at its end.
	SHA256 [sha256.Size]byte

	f      *os.File
	offset int64 // where the snapshot starts
}

// Open opens the backup at path and checks it whole: magic, format
// version, header, sizes and the checksum over every byte. Nothing of a
// file that fails is trusted; the error wraps ErrFormat.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	bf, err := check(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("backup: %s: %w", path, err)
	}
	return bf, nil
}

// check reads f once, start to end.
func check(f *os.File) (*File, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	sum := sha256.New()
	r := io.TeeReader(bufio.NewReaderSize(f, 256<<10), sum)
	var pre [16]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, fmt.Errorf("%w: %d bytes, too short for a backup", ErrFormat, size)
	}
	if [8]byte(pre[:8]) != magic {
		return nil, fmt.Errorf("%w: it does not start with %q", ErrFormat, magic[:])
	}
	version := binary.BigEndian.Uint32(pre[8:])
	if version < 1 || version > FormatVersion {
		return nil, fmt.Errorf("%w: format version %d, this build reads 1 to %d (written by a newer protoraft?)", ErrFormat, version, FormatVersion)
	}
	headLen := int64(binary.BigEndian.Uint32(pre[12:]))
	if headLen > MaxHeaderSize || 16+headLen+sha256.Size > size {
		return nil, fmt.Errorf("%w: a header of %d bytes in a file of %d", ErrFormat, headLen, size)
	}
	head := make([]byte, headLen)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, fmt.Errorf("%w: short header: %v", ErrFormat, err)
	}
	var h Header
	if err := json.Unmarshal(head, &h); err != nil {
		return nil, fmt.Errorf("%w: the header does not parse: %v", ErrFormat, err)
	}
	offset := 16 + headLen
	if h.Size != uint64(size-offset-sha256.Size) {
		return nil, fmt.Errorf("%w: the header says the snapshot is %d bytes, the file holds %d (cut short?)", ErrFormat, h.Size, size-offset-sha256.Size)
	}
	if h.Index == 0 || h.Term == 0 {
		return nil, fmt.Errorf("%w: the header names no snapshot index or term", ErrFormat)
	}
	if _, err := io.CopyN(io.Discard, r, int64(h.Size)); err != nil {
		return nil, fmt.Errorf("%w: reading the snapshot: %v", ErrFormat, err)
	}
	want := sumOf(sum)
	var got [sha256.Size]byte
	if _, err := io.ReadFull(r, got[:]); err != nil {
		return nil, fmt.Errorf("%w: reading the checksum: %v", ErrFormat, err)
	}
	if got != want {
		return nil, fmt.Errorf("%w: the SHA-256 of its content is %x, the file says %x: it is damaged", ErrFormat, want, got)
	}
	return &File{Header: h, FormatVersion: int(version), SHA256: got, f: f, offset: offset}, nil
}

// sumOf is h's sum so far; the trailing checksum is then read through the
// same tee, which no longer matters.
func sumOf(h hash.Hash) (s [sha256.Size]byte) {
	copy(s[:], h.Sum(nil))
	return s
}

// Snapshot returns a reader of the snapshot's bytes.
func (f *File) Snapshot() io.Reader {
	return io.NewSectionReader(f.f, f.offset, int64(f.Header.Size))
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

package protocluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/raftactor"
)

// SnapshotVersion is the snapshot format this build writes. Restore keeps
// reading every version it lists, because snapshots outlive the binary
// that wrote them.
const SnapshotVersion uint32 = 1

// snapshotMagic opens every snapshot, so a file of another kind is refused
// by name rather than misread.
const snapshotMagic = "PRPCSNAP"

// chunkActivations is how many activations one snapshot record carries, so
// no record (and no allocation on Restore) grows with the table.
const chunkActivations = 1024

// chunkKV is how many key-value entries one record carries: 64 values at
// MaxValueSize stay far below maxRecordSize.
const chunkKV = 64

// maxRecordSize bounds one record: the members and a chunk of activations
// at their largest names.
const maxRecordSize = 64 << 20

// Restore errors, for errors.Is; every error Restore returns wraps one.
var (
	// ErrNotSnapshot means the stream does not start with the magic.
	ErrNotSnapshot = errors.New("protocluster: not a protocluster snapshot")
	// ErrUnsupportedVersion means a format this build does not know.
	ErrUnsupportedVersion = errors.New("protocluster: unsupported snapshot version")
	// ErrCorrupt means a bad record, a checksum mismatch or a short stream.
	ErrCorrupt = errors.New("protocluster: snapshot corrupt")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot copies the members (Renew changes them in place) and shares the
// activations, which are never changed once stored.
func (t *Table) Snapshot() (raftactor.Snapshot, error) {
	s := &tableSnapshot{version: t.version, departed: slices.Clone(t.departed)}
	// Values are never changed in place (KVSet stores a copy), so the
	// entries share them.
	for k, v := range t.kv {
		s.kv = append(s.kv, &KVEntry{Key: k, Value: v})
	}
	for _, m := range t.members {
		s.members = append(s.members, proto.Clone(m).(*Member))
	}
	for k, a := range t.activations {
		s.keys = append(s.keys, k)
		s.acts = append(s.acts, a)
	}
	return s, nil
}

type tableSnapshot struct {
	version  uint64
	departed []string
	kv       []*KVEntry
	members  []*Member
	keys     []string
	acts     []*Activation
}

// Persist writes snapshot format version 1:
//
//	header   "PRPCSNAP" | version uint32 big-endian (= 1)
//	records  uvarint length (> 0) | 0x01 | protobuf Snapshot; the first carries the
//	         members, topology_version and departed_nodes, every record up
//	         to 1024 activations and up to 64 key-value entries, each in
//	         ascending key order
//	trailer  uvarint 0 | CRC-32C of every preceding byte, uint32 big-endian
func (s *tableSnapshot) Persist(w io.Writer) error {
	sort.Sort(byKey{s})
	sort.Slice(s.kv, func(i, j int) bool { return s.kv[i].Key < s.kv[j].Key })
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriter(io.MultiWriter(w, crc))
	var hdr [len(snapshotMagic) + 4]byte
	copy(hdr[:], snapshotMagic)
	binary.BigEndian.PutUint32(hdr[len(snapshotMagic):], SnapshotVersion)
	if _, err := bw.Write(hdr[:]); err != nil {
		return fmt.Errorf("protocluster: writing snapshot header: %w", err)
	}
	opts := proto.MarshalOptions{Deterministic: true}
	first := true
	for n := 0; first || n*chunkActivations < len(s.acts) || n*chunkKV < len(s.kv); n++ {
		rec := &Snapshot{
			Activations: s.acts[min(n*chunkActivations, len(s.acts)):min((n+1)*chunkActivations, len(s.acts))],
			Kv:          s.kv[min(n*chunkKV, len(s.kv)):min((n+1)*chunkKV, len(s.kv))],
		}
		if first {
			rec.Members, rec.TopologyVersion, rec.DepartedNodes = s.members, s.version, s.departed
			first = false
		}
		b, err := opts.Marshal(rec)
		if err != nil {
			return fmt.Errorf("protocluster: encoding snapshot record: %w", err)
		}
		// The mark byte keeps a record of an empty table at a non-zero
		// length: a zero length is the trailer.
		if _, err := bw.Write(binary.AppendUvarint(nil, uint64(len(b)+1))); err != nil {
			return fmt.Errorf("protocluster: writing snapshot: %w", err)
		}
		if _, err := bw.Write(append([]byte{1}, b...)); err != nil {
			return fmt.Errorf("protocluster: writing snapshot: %w", err)
		}
	}
	if _, err := bw.Write(binary.AppendUvarint(nil, 0)); err != nil {
		return fmt.Errorf("protocluster: writing snapshot trailer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("protocluster: writing snapshot: %w", err)
	}
	if _, err := w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return fmt.Errorf("protocluster: writing snapshot checksum: %w", err)
	}
	return nil
}

// Release drops the captured state.
func (s *tableSnapshot) Release() { s.members, s.keys, s.acts, s.kv = nil, nil, nil, nil }

type byKey struct{ s *tableSnapshot }

func (b byKey) Len() int           { return len(b.s.keys) }
func (b byKey) Less(i, j int) bool { return b.s.keys[i] < b.s.keys[j] }
func (b byKey) Swap(i, j int) {
	b.s.keys[i], b.s.keys[j] = b.s.keys[j], b.s.keys[i]
	b.s.acts[i], b.s.acts[j] = b.s.acts[j], b.s.acts[i]
}

// Restore replaces the table with a snapshot written by Persist. The new
// state is built aside and swapped in only once the checksum matched.
func (t *Table) Restore(r io.Reader) error {
	cr := &crcReader{r: bufio.NewReader(r), crc: crc32.New(castagnoli)}
	var hdr [len(snapshotMagic) + 4]byte
	if _, err := io.ReadFull(cr, hdr[:]); err != nil {
		return fmt.Errorf("%w: header: %w", ErrCorrupt, err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return ErrNotSnapshot
	}
	if v := binary.BigEndian.Uint32(hdr[len(snapshotMagic):]); v != 1 {
		return fmt.Errorf("%w %d (this build reads 1)", ErrUnsupportedVersion, v)
	}
	next := NewTable()
	for n := 0; ; n++ {
		size, err := binary.ReadUvarint(cr)
		if err != nil {
			return fmt.Errorf("%w: record length: %w", ErrCorrupt, err)
		}
		if size == 0 {
			break
		}
		if size > maxRecordSize {
			return fmt.Errorf("%w: record %d is %d bytes", ErrCorrupt, n, size)
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(cr, buf); err != nil {
			return fmt.Errorf("%w: record %d: %w", ErrCorrupt, n, err)
		}
		var rec Snapshot
		if buf[0] != 1 {
			return fmt.Errorf("%w: record %d: bad record mark", ErrCorrupt, n)
		}
		if err := proto.Unmarshal(buf[1:], &rec); err != nil {
			return fmt.Errorf("%w: record %d: %w", ErrCorrupt, n, err)
		}
		if n == 0 {
			next.members, next.version, next.departed = rec.Members, rec.TopologyVersion, rec.DepartedNodes
		}
		for _, e := range rec.Kv {
			next.kv[e.Key] = e.Value
		}
		for _, a := range rec.Activations {
			next.activations[activationKey(a.Kind, a.Identity)] = a
		}
	}
	sum := cr.crc.Sum32()
	var got [4]byte
	if _, err := io.ReadFull(cr.r, got[:]); err != nil {
		return fmt.Errorf("%w: checksum: %w", ErrCorrupt, err)
	}
	if binary.BigEndian.Uint32(got[:]) != sum {
		return fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	*t = *next
	return nil
}

// crcReader checksums exactly the bytes consumed.
type crcReader struct {
	r   *bufio.Reader
	crc hash.Hash32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	return n, err
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.crc.Write([]byte{b})
	}
	return b, err
}

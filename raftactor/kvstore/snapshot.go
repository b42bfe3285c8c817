package kvstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/raftactor"
)

// SnapshotVersion is the snapshot format this build writes. Restore reads
// exactly the versions listed in its switch; a new format gets a new number
// and the old reader stays, because snapshots outlive the binary that wrote
// them.
const SnapshotVersion uint32 = 1

// snapshotMagic opens every snapshot so that a file of some other kind is
// refused by name rather than misread as records.
const snapshotMagic = "PRKVSNAP"

// maxRecordSize bounds one encoded Entry: key, value, revision and protobuf
// framing. Restore refuses larger lengths before allocating, so a corrupt
// length cannot exhaust memory.
const maxRecordSize = MaxKeySize + MaxValueSize + 64

// Restore errors, for errors.Is. Every error Restore returns wraps one of
// them and adds the detail.
var (
	// ErrNotSnapshot means the stream does not start with the kvstore magic.
	ErrNotSnapshot = errors.New("kvstore: not a kvstore snapshot")
	// ErrUnsupportedVersion means the snapshot was written in a format this
	// build does not know, typically by a newer release.
	ErrUnsupportedVersion = errors.New("kvstore: unsupported snapshot version")
	// ErrTruncated means the stream ended before the trailer.
	ErrTruncated = errors.New("kvstore: snapshot truncated")
	// ErrCorrupt means the stream is complete but inconsistent: a bad
	// record, a count or checksum mismatch, or bytes after the trailer.
	ErrCorrupt = errors.New("kvstore: snapshot corrupt")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot captures the current state by copying the map's entries into a
// slice. Values are shared, not copied: the store never modifies a stored
// value in place, so sharing them is safe while Apply keeps running, and
// the copy costs one slice element per key.
func (s *Store) Snapshot() (raftactor.Snapshot, error) {
	recs := make([]record, 0, len(s.data))
	for k, e := range s.data {
		recs = append(recs, record{key: k, entry: e})
	}
	return &snapshot{records: recs}, nil
}

type record struct {
	key string
	entry
}

// snapshot owns its records slice, so sorting it in Persist races with
// nothing.
type snapshot struct {
	records []record
}

// Persist writes snapshot format version 1:
//
//	header   "PRKVSNAP" | version uint32 big-endian (= 1)
//	records  uvarint length (> 0) | protobuf Entry, in ascending key order
//	trailer  uvarint 0 | record count uint64 big-endian |
//	         CRC-32C (Castagnoli) of every preceding byte, uint32 big-endian
//
// Keys are sorted so that equal states give identical bytes on every node,
// and an Entry always has a non-empty key, so a zero length can only be the
// trailer's marker.
func (sn *snapshot) Persist(w io.Writer) error {
	sort.Slice(sn.records, func(i, j int) bool { return sn.records[i].key < sn.records[j].key })

	crc := crc32.New(castagnoli)
	bw := bufio.NewWriter(io.MultiWriter(w, crc))
	var hdr [len(snapshotMagic) + 4]byte
	copy(hdr[:], snapshotMagic)
	binary.BigEndian.PutUint32(hdr[len(snapshotMagic):], SnapshotVersion)
	if _, err := bw.Write(hdr[:]); err != nil {
		return fmt.Errorf("kvstore: writing snapshot header: %w", err)
	}

	opts := proto.MarshalOptions{Deterministic: true}
	var buf []byte
	for _, r := range sn.records {
		var err error
		buf, err = opts.MarshalAppend(buf[:0], &Entry{Key: []byte(r.key), Value: r.value, Revision: r.revision})
		if err != nil {
			return fmt.Errorf("kvstore: encoding snapshot record: %w", err)
		}
		if _, err := bw.Write(binary.AppendUvarint(nil, uint64(len(buf)))); err != nil {
			return fmt.Errorf("kvstore: writing snapshot record: %w", err)
		}
		if _, err := bw.Write(buf); err != nil {
			return fmt.Errorf("kvstore: writing snapshot record: %w", err)
		}
	}

	trailer := binary.AppendUvarint(nil, 0)
	trailer = binary.BigEndian.AppendUint64(trailer, uint64(len(sn.records)))
	if _, err := bw.Write(trailer); err != nil {
		return fmt.Errorf("kvstore: writing snapshot trailer: %w", err)
	}
	// Flush before reading the checksum: it covers only what reached crc.
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("kvstore: writing snapshot: %w", err)
	}
	if _, err := w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return fmt.Errorf("kvstore: writing snapshot checksum: %w", err)
	}
	return nil
}

// Release drops the captured records so a snapshot that is kept around by
// mistake does not pin the old state.
func (sn *snapshot) Release() { sn.records = nil }

// Restore replaces the whole state with a snapshot written by Persist. The
// new state is built aside and swapped in only when the whole stream,
// checksum included, has been read, so a failed Restore leaves the store as
// it was.
func (s *Store) Restore(r io.Reader) error {
	cr := &crcReader{r: bufio.NewReader(r), crc: crc32.New(castagnoli)}

	var hdr [len(snapshotMagic) + 4]byte
	if n, err := io.ReadFull(cr, hdr[:]); err != nil {
		if n > 0 && !strings.HasPrefix(snapshotMagic, string(hdr[:min(n, len(snapshotMagic))])) {
			return ErrNotSnapshot
		}
		return readErr(err, "header")
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return ErrNotSnapshot
	}
	switch v := binary.BigEndian.Uint32(hdr[len(snapshotMagic):]); v {
	case 1:
		data, err := restoreV1(cr)
		if err != nil {
			return err
		}
		s.data = data
		return nil
	default:
		return fmt.Errorf("%w %d (this build reads %d)", ErrUnsupportedVersion, v, SnapshotVersion)
	}
}

func restoreV1(cr *crcReader) (map[string]entry, error) {
	data := make(map[string]entry)
	var (
		buf  []byte
		prev string
		n    uint64
	)
	for {
		size, err := binary.ReadUvarint(cr)
		if err != nil {
			return nil, readErr(err, "record length")
		}
		if size == 0 {
			break
		}
		if size > maxRecordSize {
			return nil, fmt.Errorf("%w: record %d is %d bytes, limit %d", ErrCorrupt, n, size, maxRecordSize)
		}
		if uint64(cap(buf)) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(cr, buf); err != nil {
			return nil, readErr(err, "record")
		}
		var e Entry
		if err := proto.Unmarshal(buf, &e); err != nil {
			return nil, fmt.Errorf("%w: record %d: %v", ErrCorrupt, n, err)
		}
		key := string(e.GetKey())
		switch {
		case checkKey(e.GetKey()) != "":
			return nil, fmt.Errorf("%w: record %d: %s", ErrCorrupt, n, strings.TrimPrefix(checkKey(e.GetKey()), "kvstore: "))
		case len(e.GetValue()) > MaxValueSize:
			return nil, fmt.Errorf("%w: record %d: value larger than MaxValueSize", ErrCorrupt, n)
		case n > 0 && key <= prev:
			// Sorted order is part of format 1; a repeat or a step back
			// means records were duplicated or spliced.
			return nil, fmt.Errorf("%w: record %d: key %q out of order", ErrCorrupt, n, key)
		}
		// Copy the value: buf is reused for the next record, and the
		// store must own what it keeps whatever the decoder aliases.
		data[key] = entry{value: cloneValue(e.GetValue()), revision: e.GetRevision()}
		prev = key
		n++
	}

	var cnt [8]byte
	if _, err := io.ReadFull(cr, cnt[:]); err != nil {
		return nil, readErr(err, "trailer")
	}
	if want := binary.BigEndian.Uint64(cnt[:]); want != n {
		return nil, fmt.Errorf("%w: trailer counts %d records, stream holds %d", ErrCorrupt, want, n)
	}
	sum := cr.crc.Sum32()
	var got [4]byte
	if _, err := io.ReadFull(cr.r, got[:]); err != nil {
		return nil, readErr(err, "checksum")
	}
	if binary.BigEndian.Uint32(got[:]) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	if _, err := cr.r.ReadByte(); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("kvstore: reading snapshot: %w", err)
		}
		return nil, fmt.Errorf("%w: data after trailer", ErrCorrupt)
	}
	return data, nil
}

// readErr turns an end of stream into ErrTruncated, so a short file is
// reported as such and not as an opaque EOF, and passes other read errors
// through.
func readErr(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: in %s", ErrTruncated, what)
	}
	return fmt.Errorf("kvstore: reading snapshot %s: %w", what, err)
}

// crcReader checksums exactly the bytes consumed, not the bytes bufio
// happened to buffer ahead, which is what the trailer's CRC covers.
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

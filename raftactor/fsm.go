package raftactor

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/internal/wire"
)

// snapshotMagic starts every snapshot protoraft writes, before the user
// state machine's own bytes.
var snapshotMagic = [8]byte{'p', 'r', 'o', 't', 'o', 'r', 'f', 't'}

// snapshotFormatVersion is the version of protoraft's snapshot envelope.
// Restore reads every version up to this one.
const snapshotFormatVersion = 1

// maxSnapshotExtension bounds the envelope's extension section, so a
// corrupt length cannot make Restore allocate without limit.
const maxSnapshotExtension = 1 << 30

// ErrSnapshotFormat is returned when a snapshot is not one protoraft wrote
// or was written by a newer version.
var ErrSnapshotFormat = errors.New("unknown snapshot format")

// fsm adapts the user's StateMachine to hashicorp/raft. It serialises
// Apply against Query and Snapshot, tracks the highest log index whose
// effect Query can see, and wakes readers waiting for an index.
type fsm struct {
	mu       sync.RWMutex
	sm       StateMachine
	sessions *sessions
	// system is protoraft's own replicated state (the committed policy).
	system systemState

	// applied is the index of the last log entry the state machine has seen
	// (commands and configuration entries; raft keeps no-ops and barriers
	// from it, see waitApplied).
	applied atomic.Uint64

	// reflected is the highest log index this state machine is known to
	// reflect though it applied less: the entries above its applied index
	// are no-ops and barriers (see waitApplied). A leader's read index sits
	// on its term's barrier until the next command, and without this every
	// read would look that barrier up in the log store again. It belongs to
	// the state machine, not to the node: a node that reopens its data
	// directory starts a new one from its snapshot, which reflects less, and
	// a read index vouched for by the old one would let a LINEARIZABLE read
	// through to the new one before it applied that far.
	reflected atomic.Uint64

	// configIndex is the index of the last configuration entry applied.
	configIndex atomic.Uint64

	// lastCommand is the command index of the last user command applied
	// (see StateMachine.Apply); written only under the write lock, read by
	// queries to report which writes a read reflects.
	lastCommand atomic.Uint64

	notifyMu sync.Mutex
	notify   chan struct{}
}

func newFSM(sm StateMachine, sessionTTL time.Duration) *fsm {
	return &fsm{sm: sm, sessions: newSessions(sessionTTL), notify: make(chan struct{})}
}

// ApplyBatch implements raft.BatchingFSM: one lock for a whole batch.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	results := make([]any, len(logs))
	if len(logs) == 0 {
		return results
	}
	f.mu.Lock()
	for i, l := range logs {
		switch l.Type {
		case raft.LogCommand:
			results[i] = f.applyEntry(l)
		case raft.LogConfiguration:
			f.configIndex.Store(l.Index)
		}
	}
	f.sessions.expire()
	f.applied.Store(logs[len(logs)-1].Index)
	f.mu.Unlock()
	f.wake()
	return results
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// wake releases every reader waiting for the applied index to move.
func (f *fsm) wake() {
	f.notifyMu.Lock()
	close(f.notify)
	f.notify = make(chan struct{})
	f.notifyMu.Unlock()
}

// changed returns a channel closed at the next apply or restore.
func (f *fsm) changed() <-chan struct{} {
	f.notifyMu.Lock()
	defer f.notifyMu.Unlock()
	return f.notify
}

// query runs a read-only query and returns the command index of the last
// write it reflects: a write is visible to the read when its
// WriteResponse.index is at most that.
func (f *fsm) query(q []byte) ([]byte, uint64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	res, err := f.sm.Query(q)
	return res, f.lastCommand.Load(), err
}

// Snapshot implements raft.FSM. It runs on raft's FSM goroutine, between
// applies, so the applied index it records is exact.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, err := f.sm.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("state machine snapshot: %w", err)
	}
	table := f.system.save(f.sessions.table())
	table.CommandIndex = f.lastCommand.Load()
	ext, err := proto.MarshalOptions{Deterministic: true}.Marshal(table)
	if err != nil {
		s.Release()
		return nil, fmt.Errorf("session table: %w", err)
	}
	return &fsmSnapshot{snap: s, applied: f.applied.Load(), ext: ext}, nil
}

// Restore implements raft.FSM: it replaces the whole state.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64<<10)
	applied, ext, err := readSnapshotHeader(br)
	if err != nil {
		return err
	}
	table := &wire.SessionTable{}
	if err := proto.Unmarshal(ext, table); err != nil {
		return fmt.Errorf("%w: session table: %v", ErrSnapshotFormat, err)
	}
	f.mu.Lock()
	err = f.sm.Restore(br)
	if err == nil {
		f.sessions.restore(table)
		f.system.restore(table)
		f.applied.Store(applied)
		last := table.GetCommandIndex()
		if last == 0 {
			// A snapshot from before batching: command indexes were log
			// indexes, and the next command's entry lies above applied.
			last = applied
		}
		f.lastCommand.Store(last)
	}
	f.mu.Unlock()
	if err != nil {
		return fmt.Errorf("state machine restore: %w", err)
	}
	f.wake()
	return nil
}

// fsmSnapshot writes protoraft's snapshot envelope around the user's.
//
// Envelope, version 1, all integers big-endian:
//
//	magic    [8]byte  "protorft"
//	version  uint32   snapshotFormatVersion
//	applied  uint64   last index the state reflects
//	extLen   uint32   length of the extension section
//	ext      [extLen]byte, protoraft's own replicated state: the session
//	         table (wire.SessionTable); readers skip fields they do not know
//	state    the user StateMachine's Snapshot.Persist bytes, to the end
type fsmSnapshot struct {
	snap    Snapshot
	applied uint64
	ext     []byte
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	bw := bufio.NewWriterSize(sink, 64<<10)
	var hdr [8 + 4 + 8 + 4]byte
	copy(hdr[:8], snapshotMagic[:])
	binary.BigEndian.PutUint32(hdr[8:], snapshotFormatVersion)
	binary.BigEndian.PutUint64(hdr[12:], s.applied)
	binary.BigEndian.PutUint32(hdr[20:], uint32(len(s.ext)))
	_, err := bw.Write(hdr[:])
	if err == nil {
		_, err = bw.Write(s.ext)
	}
	if err == nil {
		err = s.snap.Persist(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.snap.Release() }

func readSnapshotHeader(r io.Reader) (uint64, []byte, error) {
	var hdr [8 + 4 + 8 + 4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("%w: short header: %v", ErrSnapshotFormat, err)
	}
	if [8]byte(hdr[:8]) != snapshotMagic {
		return 0, nil, fmt.Errorf("%w: bad magic", ErrSnapshotFormat)
	}
	if v := binary.BigEndian.Uint32(hdr[8:]); v < 1 || v > snapshotFormatVersion {
		return 0, nil, fmt.Errorf("%w: version %d, this build reads 1 to %d", ErrSnapshotFormat, v, snapshotFormatVersion)
	}
	applied := binary.BigEndian.Uint64(hdr[12:])
	extLen := binary.BigEndian.Uint32(hdr[20:])
	if extLen > maxSnapshotExtension {
		return 0, nil, fmt.Errorf("%w: extension section of %d bytes", ErrSnapshotFormat, extLen)
	}
	ext := make([]byte, extLen)
	if _, err := io.ReadFull(r, ext); err != nil {
		return 0, nil, fmt.Errorf("%w: short extension section: %v", ErrSnapshotFormat, err)
	}
	return applied, ext, nil
}

package raftactor

import (
	"io"
	"time"

	"github.com/hashicorp/raft"
)

// Metrics receives the measurements only the node can take, because they
// happen on Raft's own goroutines (the FSM and snapshot goroutines) where no
// actor message is in sight. The telemetry package implements it; it is an
// interface here because raftactor must not import telemetry (they are
// siblings above actors, see DESIGN.md).
//
// Calls come from Raft's goroutines, concurrently with each other: an
// implementation must be safe for concurrent use and return at once (a slow
// one stalls the state machine).
type Metrics interface {
	// FSMApplied reports one batch of log entries handed to the state
	// machine and how long applying it took.
	FSMApplied(entries int, took time.Duration)
	// SnapshotPersisted reports a snapshot written to the snapshot store:
	// the bytes the state machine wrote and the time from capture to the
	// end of the write, or the error that failed it.
	SnapshotPersisted(size int64, took time.Duration, err error)
	// SnapshotRestored reports the state replaced from a snapshot (at
	// start, or sent by the leader), or the error that failed it.
	SnapshotRestored(took time.Duration, err error)
}

// measuredFSM times the node's FSM. It implements raft.BatchingFSM like the
// FSM it wraps, so Raft keeps applying in batches.
type measuredFSM struct {
	f *fsm
	m Metrics
}

func (w *measuredFSM) ApplyBatch(logs []*raft.Log) []any {
	start := time.Now()
	res := w.f.ApplyBatch(logs)
	w.m.FSMApplied(len(logs), time.Since(start))
	return res
}

func (w *measuredFSM) Apply(l *raft.Log) any { return w.ApplyBatch([]*raft.Log{l})[0] }

func (w *measuredFSM) Snapshot() (raft.FSMSnapshot, error) {
	start := time.Now()
	s, err := w.f.Snapshot()
	if err != nil {
		w.m.SnapshotPersisted(0, time.Since(start), err)
		return nil, err
	}
	return &measuredSnapshot{s: s, m: w.m, start: start}, nil
}

func (w *measuredFSM) Restore(rc io.ReadCloser) error {
	start := time.Now()
	err := w.f.Restore(rc)
	w.m.SnapshotRestored(time.Since(start), err)
	return err
}

// measuredSnapshot counts the bytes a snapshot writes and times it from
// capture (on the FSM goroutine) to the end of Persist (on Raft's snapshot
// goroutine): both parts delay the next snapshot.
type measuredSnapshot struct {
	s     raft.FSMSnapshot
	m     Metrics
	start time.Time
}

func (s *measuredSnapshot) Persist(sink raft.SnapshotSink) error {
	cs := &countingSink{SnapshotSink: sink}
	err := s.s.Persist(cs)
	s.m.SnapshotPersisted(cs.n, time.Since(s.start), err)
	return err
}

func (s *measuredSnapshot) Release() { s.s.Release() }

type countingSink struct {
	raft.SnapshotSink
	n int64
}

func (c *countingSink) Write(p []byte) (int, error) {
	n, err := c.SnapshotSink.Write(p)
	c.n += int64(n)
	return n, err
}

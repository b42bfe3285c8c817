package raftactor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
	"go.uber.org/zap"
)

// What a node does when its disk fails (see docs/operations.md):
//
//   - An append to the log that fails (a full disk, an I/O error on write
//     or fsync) was not acknowledged by the node: a leader answers the
//     writes of that entry UNAVAILABLE ("log store write failed: no space
//     left on device") and steps down (hashicorp/raft does), a follower
//     answers the leader's AppendEntries unsuccessful, and the leader
//     sends it again later. raft-wal rolls its writer back, so the next
//     append that succeeds picks up where the last good one ended: the node
//     recovers without a restart once space returns. Health says
//     UNHEALTHY with the reason until an append succeeds again.
//   - A failure while raft-wal starts a new segment file (which it
//     preallocates, so this is where a full disk usually shows) leaves its
//     writer on the sealed segment: every later append fails until the log
//     is opened again. The node then reopens its data directory by itself
//     (reopenLog), and while the disk is still full and the open fails with
//     no space, it tries again with a growing pause (retryStart) instead of
//     staying down.
//   - A failure of raft-wal's commit of the next segment, after the append
//     that sealed the full one (its bolt meta database met the full disk),
//     leaves the sealed file listed as the open tail; raft-wal would reopen
//     it sealed and fail every append forever. The open records the seal
//     and starts a new segment (recordSeal), keeping every entry.
//   - A failure while raft-wal creates the new segment file of a log
//     truncation comes after raft-wal committed the truncation to its meta
//     database, while its state in memory still holds the truncated
//     entries: the node reopens its data directory (reopenLog), so that
//     its log is what its files hold. The empty file such a failure leaves
//     is removed when raft-wal asks for it again (creationWatch), which
//     would otherwise fail with "file exists" forever.
//   - A data directory that cannot be read (an I/O error on open) is not
//     retried: the node refuses every request with the reason, INTERNAL.

// LogStoreError is a failed write to the node's log store, as Raft and the
// node's metrics see it.
type LogStoreError struct {
	// Op is what failed: "write" (an append) or "delete" (a truncation).
	Op string
	// Err is raft-wal's error.
	Err error
}

func (e *LogStoreError) Error() string {
	return "log store " + e.Op + " failed: " + describeIOError(e.Err)
}

func (e *LogStoreError) Unwrap() error { return e.Err }

// describeIOError is an I/O error as an operator reads it: the system's
// words for the errno when there is one ("no space left on device"), the
// whole error otherwise.
func describeIOError(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

// logStoreWriteFailed starts the text of a failed append, which reaches a
// Raft future through hashicorp's log cache as text only.
const logStoreWriteFailed = "log store write failed"

// logStoreFailure returns the failed append err reports, as text, if it is
// one.
func logStoreFailure(err error) (string, bool) {
	var lse *LogStoreError
	if errors.As(err, &lse) {
		return lse.Error(), true
	}
	msg := err.Error()
	i := strings.Index(msg, logStoreWriteFailed)
	if i < 0 {
		return "", false
	}
	return strings.TrimRight(msg[i:], `"`), true
}

// noSpace reports whether err is a full disk (or quota): a start that
// failed for it is tried again, since space may return.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// StorageObserver is implemented by Metrics (Config.Metrics) that want to
// hear of the log store's health: every failed append or truncation, and
// the first append that succeeds after one. Both run on Raft's goroutines
// and must be quick.
type StorageObserver interface {
	LogStoreFailed(err error)
	LogStoreRecovered()
}

// logWatch sits between Raft (and its log cache) and raft-wal, and sees
// every write to the log: it reports failures and recoveries to the
// node's metrics, turns raft-wal's errors into LogStoreErrors, and tells
// the node when raft-wal cannot append again until it is reopened.
type logWatch struct {
	raft.LogStore

	filer *creationWatch

	mu       sync.Mutex
	failing  bool
	observer StorageObserver
	stuck    bool
	onStuck  func()
}

// watchWith sets who hears of failures; a stuck log already seen is
// reported at once.
func (w *logWatch) watchWith(o StorageObserver, onStuck func()) {
	w.mu.Lock()
	w.observer, w.onStuck = o, onStuck
	stuck := w.stuck
	w.mu.Unlock()
	if stuck && onStuck != nil {
		onStuck()
	}
}

// IsMonotonic implements raft.MonotonicLogStore for the store it wraps.
// raft-wal appends only right after its last entry, and says so; Raft then
// empties the log when it installs a snapshot. Hidden behind this wrapper,
// Raft only compacted the log, kept its tail, and every append after the
// snapshot failed as non-monotonic: the follower never caught up.
func (w *logWatch) IsMonotonic() bool {
	m, ok := w.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// StoreLogs implements raft.LogStore.
func (w *logWatch) StoreLogs(logs []*raft.Log) error {
	err := w.LogStore.StoreLogs(logs)
	if err == nil {
		w.succeeded()
		return nil
	}
	return w.failed("write", err, false)
}

// StoreLog implements raft.LogStore.
func (w *logWatch) StoreLog(log *raft.Log) error { return w.StoreLogs([]*raft.Log{log}) }

// DeleteRange implements raft.LogStore.
//
// raft-wal commits a truncation to its meta database before it creates
// the new tail segment's file, and keeps its state in memory as it was
// when the creation fails: the meta database (what a reopen, or a power
// cut, finds) no longer holds the truncated entries, while the log in
// memory still serves them and reports them as its last index. A
// truncation that failed in the creation therefore makes the node reopen
// its log (onStuck), as a failed rotation does, so that what it reports
// is what its files hold.
func (w *logWatch) DeleteRange(lo, hi uint64) error {
	var fails uint64
	if w.filer != nil {
		fails = w.filer.createFailures()
	}
	if err := w.LogStore.DeleteRange(lo, hi); err != nil {
		committed := w.filer != nil && w.filer.createFailures() != fails
		return w.failed("delete", err, committed)
	}
	return nil
}

func (w *logWatch) succeeded() {
	w.mu.Lock()
	was, o := w.failing, w.observer
	w.failing = false
	w.mu.Unlock()
	if was && o != nil {
		o.LogStoreRecovered()
	}
}

// failed reports a failed write to the log; diverged says raft-wal's
// state in memory may no longer be what its meta database holds, so the
// log must be opened again.
func (w *logWatch) failed(op string, err error, diverged bool) error {
	if errors.Is(err, raftwal.ErrClosed) {
		return err // a node that stops, not a disk that fails
	}
	if errors.Is(err, types.ErrSealed) && w.filer != nil {
		if cause := w.filer.lastCreateError(); cause != nil {
			// The append fails because the next segment file could not be
			// made: that is the cause to report.
			err = fmt.Errorf("%w (starting a new segment file: %w)", cause, err)
		}
	}
	lse := &LogStoreError{Op: op, Err: err}
	w.mu.Lock()
	w.failing = true
	o := w.observer
	var stuck func()
	if (diverged || errors.Is(err, types.ErrSealed)) && !w.stuck {
		w.stuck = true
		stuck = w.onStuck
	}
	w.mu.Unlock()
	if o != nil {
		o.LogStoreFailed(lse)
	}
	if stuck != nil {
		stuck()
	}
	return lse
}

// reopenLog tells the node that its log cannot take appends until it is
// opened again (a failed segment rotation): the node reopens its data
// directory.
type reopenLog struct{ inc *incarnation }

// retryStart tells the node to try its start again: the last one failed
// for lack of space.
type retryStart struct{ inc *incarnation }

func isLogStoreFailure(err error) bool {
	_, ok := logStoreFailure(err)
	return ok
}

// creationWatch is raft-wal's segment filer, remembering why it last failed
// to create a segment file: raft-wal only logs that failure (it happens on
// its rotation goroutine) and fails every later append with "segment is
// sealed".
//
// It also removes what a failed creation left behind. raft-wal's file
// system creates a segment file with O_EXCL and then preallocates it; when
// the preallocation fails (a full disk), the empty file stays. raft-wal
// has by then committed the new segment's ID to its meta database but not
// to its state in memory, so its next rotation or truncation asks for the
// same file again and, without this, fails with "file exists" forever,
// also once space is back (seed 385781004 of the process fault profile).
type creationWatch struct {
	types.SegmentFiler
	dir       string
	vfs       types.VFS
	log       *zap.Logger
	createErr atomic.Pointer[error]
	failures  atomic.Uint64
}

// Create implements types.SegmentFiler.
func (c *creationWatch) Create(info types.SegmentInfo) (types.SegmentWriter, error) {
	w, err := c.SegmentFiler.Create(info)
	if errors.Is(err, os.ErrExist) && c.vfs != nil {
		var removed bool
		if removed, err = c.removeUnwritten(info, err); removed {
			w, err = c.SegmentFiler.Create(info)
		}
	}
	if err != nil {
		c.failures.Add(1)
		c.createErr.Store(&err)
	} else {
		c.createErr.Store(nil)
	}
	return w, err
}

// removeUnwritten deletes the segment file info names, which already
// exists (exists is the creation's error), if nothing was ever written to
// it, and reports whether it did. raft-wal asks for a file only under an
// ID its state in memory has not used yet; the file can only be what a
// failed creation of this process left behind, before raft-wal wrote its
// header: raft-wal writes a new segment's header with its first batch of
// entries, after the creation returned (segment.createFile only buffers
// it). A file holding any byte that is not zero is left alone, and the
// creation fails as before.
func (c *creationWatch) removeUnwritten(info types.SegmentInfo, exists error) (bool, error) {
	name := segment.FileName(info)
	path := filepath.Join(c.dir, name)
	fi, err := os.Stat(path)
	if err != nil {
		return false, errors.Join(exists, fmt.Errorf("inspect the existing segment file: %w", err))
	}
	f, err := os.Open(path)
	if err != nil {
		return false, errors.Join(exists, fmt.Errorf("inspect the existing segment file: %w", err))
	}
	written, err := writtenAfter(f, 0, fi.Size())
	f.Close()
	if err != nil {
		return false, errors.Join(exists, fmt.Errorf("inspect the existing segment file: %w", err))
	}
	if len(written) > 0 {
		return false, exists
	}
	if err := c.vfs.Delete(c.dir, name); err != nil {
		return false, errors.Join(exists, fmt.Errorf("remove the unwritten segment file: %w", err))
	}
	if c.log != nil {
		c.log.Warn("removed an empty log segment file a failed creation left behind, to create it again",
			zap.String("segment", path), zap.Uint64("segment_id", info.ID), zap.Uint64("base_index", info.BaseIndex))
	}
	return true, nil
}

func (c *creationWatch) lastCreateError() error {
	if e := c.createErr.Load(); e != nil {
		return *e
	}
	return nil
}

// createFailures counts the segment files that could not be created.
func (c *creationWatch) createFailures() uint64 { return c.failures.Load() }

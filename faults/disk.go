package faults

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// ErrPowerCut is what every operation of a Disk returns after PowerCut:
// the machine is off. It wraps syscall.EIO, as a vanished device reports.
var ErrPowerCut = fmt.Errorf("faults: power cut: %w", syscall.EIO)

// Disk is a node's log files as a test can fail them, for
// raftactor.Config.Disk. It is the file system under raft-wal's segment
// files (a types.VFS over raft-wal's own fs.FS; Filer gives the
// types.SegmentFiler raft-wal takes), and it remembers, per file, what was
// written since the file's last Sync:
//
//   - PowerCut makes every later file operation fail (ErrPowerCut; the
//     writes of StableStore vanish instead, see there) and rolls each
//     file back on disk to its content at its last Sync, deleting files that
//     were never synced: the data directory is then what a power loss would
//     leave. A node restarted from it must still hold every entry it
//     acknowledged, since raft-wal syncs before it returns from an append.
//   - FailWrites and FailSyncs make writes (creating a segment file
//     included; FailCreates fails creation alone) or fsyncs fail with an error such as syscall.ENOSPC or
//     syscall.EIO until Heal. A failed Sync loses what was written since
//     the last good one, as Linux drops dirty pages whose writeback failed,
//     so a store that trusted a retry would be caught.
//   - FailPreallocations makes the creation of a segment file fail after
//     the file was made, as raft-wal's own file system does when the
//     preallocation of a new file meets a full disk: the empty file stays.
//   - FailReads makes reads and opens fail (an unreadable disk).
//   - FailMetaCommits makes raft-wal's commits of its segment list fail
//     (MetaStore): a disk that fills between the append that seals a
//     segment file and the commit that starts the next one.
//   - DropSyncs is a mutant for tests that must be able to fail: Sync
//     reports success without syncing, and a later PowerCut loses the
//     writes.
//
// StableStore wraps the node's stable store (raft-wal's bolt meta database,
// which is not under the segment filer and syncs every commit itself) so
// that it fails too once the power is cut.
//
// It is a test hook, never set in production. Unlike the rest of this
// package it does I/O: it is the file system.
type Disk struct {
	real types.VFS

	mu          sync.Mutex
	files       map[string]*diskFile // by path, files written since their last sync
	writeErr    error
	syncErr     error
	createErr   error
	preallocErr error
	readErr     atomic.Pointer[error]
	metaErr     atomic.Pointer[error]
	drop        bool
	cut         atomic.Bool

	injected atomic.Int64
}

// diskFile is what a file held at its last sync, as the writes since undo.
type diskFile struct {
	// created says the file did not exist at the last sync of its
	// directory: a power cut removes it.
	created bool
	// undo restores the file, last record first.
	undo []undoRecord
}

// undoRecord is one write's undo: the bytes it overwrote and the size the
// file had before it.
type undoRecord struct {
	off  int64
	old  []byte
	size int64
}

// NewDisk returns a Disk that passes every operation to the real file
// system until a fault is injected.
func NewDisk() *Disk {
	return &Disk{real: fs.New(), files: map[string]*diskFile{}}
}

// Filer is the segment filer of raft-wal's directory dir over this Disk,
// for raftwal.WithSegmentFiler.
func (d *Disk) Filer(dir string) types.SegmentFiler { return segment.NewFiler(dir, d) }

// FailWrites makes every later write and file creation fail with err (for
// example syscall.ENOSPC) until Heal; nil stops failing them.
func (d *Disk) FailWrites(err error) {
	d.mu.Lock()
	d.writeErr = err
	d.mu.Unlock()
}

// FailCreates makes every later file creation fail with err until Heal,
// while writes to existing files go on: a disk whose space ran out when
// raft-wal preallocates its next segment file. nil stops failing them.
func (d *Disk) FailCreates(err error) {
	d.mu.Lock()
	d.createErr = err
	d.mu.Unlock()
}

// FailPreallocations makes every later file creation fail with err
// (for example syscall.ENOSPC) after the file was created, until Heal: the
// new file stays behind, empty, as raft-wal's fs.Create leaves it when its
// preallocation fails (it opens the file with O_EXCL, then closes it and
// returns the error). nil stops failing them.
func (d *Disk) FailPreallocations(err error) {
	d.mu.Lock()
	d.preallocErr = err
	d.mu.Unlock()
}

// FailSyncs makes every later fsync fail with err (for example
// syscall.EIO) until Heal; nil stops failing them.
func (d *Disk) FailSyncs(err error) {
	d.mu.Lock()
	d.syncErr = err
	d.mu.Unlock()
}

// FailReads makes every later read and open of a segment file fail with
// err (for example syscall.EIO: an unreadable disk) until Heal; nil stops
// failing them.
func (d *Disk) FailReads(err error) {
	if err == nil {
		d.readErr.Store(nil)
		return
	}
	d.readErr.Store(&err)
}

// FailMetaCommits makes every later commit of raft-wal's segment list
// (through MetaStore) fail with err, for example syscall.ENOSPC, until
// Heal; nil stops failing them. The segment files and the stable store
// are not affected: raft-wal seals a full segment file in the append that
// fills it and commits the list afterwards, so the commit can meet a full
// disk the append did not.
func (d *Disk) FailMetaCommits(err error) {
	if err == nil {
		d.metaErr.Store(nil)
		return
	}
	d.metaErr.Store(&err)
}

// readFailure is the injected read error, or nil.
func (d *Disk) readFailure(op, path string) error {
	if d.cut.Load() {
		return ErrPowerCut
	}
	if e := d.readErr.Load(); e != nil {
		return d.failure(op, path, *e)
	}
	return nil
}

// DropSyncs, when on, makes Sync report success without syncing: the
// mutant of a store that acknowledges what is not durable.
func (d *Disk) DropSyncs(on bool) {
	d.mu.Lock()
	d.drop = on
	d.mu.Unlock()
}

// Heal stops failing writes and syncs. It does not undo a PowerCut
// (Restore does).
func (d *Disk) Heal() {
	d.mu.Lock()
	d.writeErr, d.syncErr, d.createErr, d.preallocErr = nil, nil, nil, nil
	d.mu.Unlock()
	d.readErr.Store(nil)
	d.metaErr.Store(nil)
}

// Injected counts the operations failed on purpose so far, power cuts
// excepted.
func (d *Disk) Injected() int64 { return d.injected.Load() }

// PowerCut cuts the power: every later operation fails with ErrPowerCut,
// and every file is rolled back on disk to what its last Sync made
// durable. An error means the rollback itself failed and the directory is
// not what a power loss leaves.
func (d *Disk) PowerCut() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cut.Store(true)
	paths := make([]string, 0, len(d.files))
	for p := range d.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var errs []error
	for _, p := range paths {
		errs = append(errs, d.files[p].rollback(p))
	}
	d.files = map[string]*diskFile{}
	return errors.Join(errs...)
}

// PoweredOff reports whether the power is cut.
func (d *Disk) PoweredOff() bool { return d.cut.Load() }

// Restore turns the power back on for the next start of the node, with no
// faults injected; what the files hold is what the cut left.
func (d *Disk) Restore() {
	d.mu.Lock()
	d.files = map[string]*diskFile{}
	d.writeErr, d.syncErr, d.createErr, d.drop = nil, nil, nil, false
	d.readErr.Store(nil)
	d.metaErr.Store(nil)
	d.cut.Store(false)
	d.mu.Unlock()
}

// rollback restores path to its content at its last sync.
func (f *diskFile) rollback(path string) error {
	if f.created {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("faults: power cut: %w", err)
		}
		return nil
	}
	h, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("faults: power cut: %w", err)
	}
	defer h.Close()
	for i := len(f.undo) - 1; i >= 0; i-- {
		u := f.undo[i]
		if len(u.old) > 0 {
			if _, err := h.WriteAt(u.old, u.off); err != nil {
				return fmt.Errorf("faults: power cut: %w", err)
			}
		}
		if err := h.Truncate(u.size); err != nil {
			return fmt.Errorf("faults: power cut: %w", err)
		}
	}
	return h.Sync()
}

func (d *Disk) failure(op, path string, err error) error {
	d.injected.Add(1)
	return &os.PathError{Op: op, Path: path, Err: err}
}

// ListDir implements types.VFS.
func (d *Disk) ListDir(dir string) ([]string, error) {
	if d.cut.Load() {
		return nil, ErrPowerCut
	}
	return d.real.ListDir(dir)
}

// Create implements types.VFS: the file, preallocated to size, is new
// until its first Sync (which also syncs its directory).
func (d *Disk) Create(dir, name string, size uint64) (types.WritableFile, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	path := filepath.Join(dir, name)
	if d.cut.Load() {
		return nil, ErrPowerCut
	}
	if err := cmp.Or(d.createErr, d.writeErr); err != nil {
		return nil, d.failure("create", path, err)
	}
	if d.preallocErr != nil {
		// The file is made (without its preallocation) and left behind,
		// never synced.
		f, err := d.real.Create(dir, name, 0)
		if err != nil {
			return nil, err
		}
		d.files[path] = &diskFile{created: true}
		return nil, errors.Join(d.failure("fallocate", path, d.preallocErr), f.Close())
	}
	f, err := d.real.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	d.files[path] = &diskFile{created: true}
	return &diskWritable{d: d, path: path, f: f}, nil
}

// Delete implements types.VFS. raft-wal syncs the directory after a
// delete, so the file is gone for good.
func (d *Disk) Delete(dir, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut.Load() {
		return ErrPowerCut
	}
	if err := d.real.Delete(dir, name); err != nil {
		return err
	}
	delete(d.files, filepath.Join(dir, name))
	return nil
}

// OpenReader implements types.VFS.
func (d *Disk) OpenReader(dir, name string) (types.ReadableFile, error) {
	path := filepath.Join(dir, name)
	if err := d.readFailure("open", path); err != nil {
		return nil, err
	}
	f, err := d.real.OpenReader(dir, name)
	if err != nil {
		return nil, err
	}
	return &diskReadable{d: d, path: path, f: f}, nil
}

// OpenWriter implements types.VFS.
func (d *Disk) OpenWriter(dir, name string) (types.WritableFile, error) {
	if err := d.readFailure("open", filepath.Join(dir, name)); err != nil {
		return nil, err
	}
	f, err := d.real.OpenWriter(dir, name)
	if err != nil {
		return nil, err
	}
	return &diskWritable{d: d, path: filepath.Join(dir, name), f: f}, nil
}

type diskReadable struct {
	d    *Disk
	path string
	f    types.ReadableFile
}

func (r *diskReadable) ReadAt(p []byte, off int64) (int, error) {
	if err := r.d.readFailure("read", r.path); err != nil {
		return 0, err
	}
	return r.f.ReadAt(p, off)
}

func (r *diskReadable) Close() error { return r.f.Close() }

type diskWritable struct {
	d    *Disk
	path string
	f    types.WritableFile
}

func (w *diskWritable) ReadAt(p []byte, off int64) (int, error) {
	if err := w.d.readFailure("read", w.path); err != nil {
		return 0, err
	}
	return w.f.ReadAt(p, off)
}

// WriteAt records what the write overwrites, then writes.
func (w *diskWritable) WriteAt(p []byte, off int64) (int, error) {
	d := w.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut.Load() {
		return 0, ErrPowerCut
	}
	if d.writeErr != nil {
		return 0, d.failure("write", w.path, d.writeErr)
	}
	size, err := w.size()
	if err != nil {
		return 0, err
	}
	old := make([]byte, 0)
	if off < size {
		old = make([]byte, min(int64(len(p)), size-off))
		if _, err := w.f.ReadAt(old, off); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
	}
	f := d.files[w.path]
	if f == nil {
		f = &diskFile{}
		d.files[w.path] = f
	}
	if !f.created {
		f.undo = append(f.undo, undoRecord{off: off, old: old, size: size})
	}
	return w.f.WriteAt(p, off)
}

func (w *diskWritable) size() (int64, error) {
	type stater interface{ Stat() (os.FileInfo, error) }
	if s, ok := w.f.(stater); ok {
		fi, err := s.Stat()
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	}
	fi, err := os.Stat(w.path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Sync syncs, and what was written is durable from then on; an injected
// failure loses it instead.
func (w *diskWritable) Sync() error {
	d := w.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut.Load() {
		return ErrPowerCut
	}
	if d.syncErr != nil {
		err := d.failure("sync", w.path, d.syncErr)
		if f := d.files[w.path]; f != nil && !f.created {
			if rerr := f.rollback(w.path); rerr != nil {
				return errors.Join(err, rerr)
			}
			delete(d.files, w.path)
		}
		return err
	}
	if d.drop {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	delete(d.files, w.path)
	return nil
}

func (w *diskWritable) Close() error { return w.f.Close() }

// StableStore wraps a node's stable store (Raft's term and vote) so that it
// fails once the power is cut. raft-wal keeps it in a bolt database beside
// the segment files, not under the filer; bolt syncs every commit before it
// returns, so there is nothing unsynced for a cut to lose.
func (d *Disk) StableStore(s raft.StableStore) raft.StableStore { return &diskStable{d: d, s: s} }

type diskStable struct {
	d *Disk
	s raft.StableStore
}

// After a power cut the stable store's writes vanish without an error, as
// they would with the machine: hashicorp/raft panics when it cannot store
// its term or vote, which a process without power never gets to do. The
// harness takes the node off the network first (Network.Down), so nothing
// it decides on a vote it did not store reaches anyone.
func (s *diskStable) Set(key, val []byte) error {
	if s.d.cut.Load() {
		return nil
	}
	return s.s.Set(key, val)
}

func (s *diskStable) Get(key []byte) ([]byte, error) {
	if s.d.cut.Load() {
		return nil, ErrPowerCut
	}
	return s.s.Get(key)
}

func (s *diskStable) SetUint64(key []byte, val uint64) error {
	if s.d.cut.Load() {
		return nil
	}
	return s.s.SetUint64(key, val)
}

func (s *diskStable) GetUint64(key []byte) (uint64, error) {
	if s.d.cut.Load() {
		return 0, ErrPowerCut
	}
	return s.s.GetUint64(key)
}

// MetaStore wraps raft-wal's meta store (its segment list and the stable
// store, a bolt database beside the segment files, not under the filer) so
// that its commits of the segment list fail while FailMetaCommits says so.
func (d *Disk) MetaStore(m types.MetaStore) types.MetaStore { return &diskMeta{MetaStore: m, d: d} }

type diskMeta struct {
	types.MetaStore
	d *Disk
}

// CommitState fails with the injected error, as bolt fails a commit whose
// pages it cannot write: nothing of it is stored.
func (m *diskMeta) CommitState(s types.PersistentState) error {
	if e := m.d.metaErr.Load(); e != nil {
		return m.d.failure("write", metadb.FileName, *e)
	}
	return m.MetaStore.CommitState(s)
}

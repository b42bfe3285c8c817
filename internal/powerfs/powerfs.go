//go:build linux

// Package powerfs is a file system whose power a test can cut, for a node
// that runs in another OS process: a FUSE loopback over a backing
// directory that remembers, for every file, what was written to it since
// its last fsync. Cut makes every later change fail, as a disk that lost
// its power does; Reboot, once the writer is dead, unmounts, rolls every
// file back on the backing directory to what its last fsync made durable,
// and mounts it again. What the node finds after the reboot is what a
// power loss leaves, under this model:
//
//   - A file's data and size since its last fsync (or fdatasync) are lost:
//     writes, truncations, fallocate. A file created and never synced is
//     still there, empty: the zero-length file of a crash.
//   - Namespace changes (create, mkdir, rename, unlink) are durable at
//     once, as on a file system mounted with dirsync. So it would not
//     find a missing fsync of a directory; it finds every missing or
//     ignored fsync of a file.
//   - Reads are not failed; the writer is killed right after the cut.
//
// Every write passes through the test process (the FUSE server), which is
// what makes the model exact for the writer: the kernel sends each
// write(2) to the server before it returns (no writeback cache, no
// passthrough), and each fsync(2) too.
//
// It needs root and /dev/fuse (Available says why not). It is test
// support: it knows nothing of Raft, of protoraft or of what a test checks.
package powerfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Available returns nil where a power-cut file system can be mounted
// (root, and the kernel's FUSE device), and why not elsewhere.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("powerfs: mounting a FUSE file system needs root")
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("powerfs: no FUSE device: %w", err)
	}
	return f.Close()
}

// FS is one mounted power-cut file system.
type FS struct {
	backing, mnt string

	// gate is held shared by every change while it runs, and exclusively
	// by Cut: once Cut returns, no change is in flight and none succeeds.
	gate sync.RWMutex
	cut  bool
	drop atomic.Bool // DropSyncs

	mu     sync.Mutex
	files  map[uint64]*file // by the backing file's inode number
	server *fuse.Server
}

// file is what one file held at its last fsync, as the changes since undo.
type file struct {
	// f is read-write on the backing file, whatever name it has by now.
	f    *os.File
	undo []undo
}

// undo reverts one change: the bytes it overwrote at off and the size the
// file had before it.
type undo struct {
	off  int64
	old  []byte
	size int64
	// n is how many bytes the change wrote, for Lost.
	n int64
}

// Mount mounts a power-cut file system at mnt (an existing, empty
// directory) over backing (an existing directory, never touched through
// any other path while mounted).
func Mount(backing, mnt string) (*FS, error) {
	p := &FS{backing: backing, mnt: mnt, files: map[uint64]*file{}}
	if err := p.mount(); err != nil {
		return nil, err
	}
	return p, nil
}

// Dir is the mount point, where the writer sees its files.
func (p *FS) Dir() string { return p.mnt }

// Backing is the directory the files live in.
func (p *FS) Backing() string { return p.backing }

func (p *FS) mount() error {
	var st syscall.Stat_t
	if err := syscall.Stat(p.backing, &st); err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	root := &fs.LoopbackRoot{Path: p.backing, Dev: st.Dev}
	// NewNode is deprecated for NodeWrapChilder, which hands over a
	// LoopbackNode already made, to be wrapped by copying it (and the
	// lock inside it). NewNode makes ours in its place and is still
	// supported by go-fuse v2.
	//lint:ignore SA1019 see above
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, p: p}
	}
	//lint:ignore SA1019 as for NewNode above
	root.RootNode = root.NewNode(root, nil, "", &st)
	timeout := time.Second
	server, err := fs.Mount(p.mnt, root.RootNode, &fs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		MountOptions: fuse.MountOptions{
			FsName:        "powerfs",
			Name:          "powerfs",
			DirectMount:   true,
			DisableXAttrs: true,
		},
	})
	if err != nil {
		return fmt.Errorf("powerfs: mount %s: %w", p.mnt, err)
	}
	p.mu.Lock()
	p.server = server
	p.mu.Unlock()
	return nil
}

// Cut cuts the power: every later change through the mount fails with
// EIO, and no change is in flight once Cut returns. The files keep what
// was written until Reboot rolls them back; the writer must be killed
// before it.
func (p *FS) Cut() {
	p.gate.Lock()
	p.cut = true
	p.gate.Unlock()
}

// Reboot, after a Cut and once every process that had files open on the
// mount is gone, unmounts it (so no cached page survives), rolls every
// file back to what its last fsync made durable, and mounts it again with
// the power on. It says what was lost.
func (p *FS) Reboot() (Lost, error) {
	if err := p.unmount(); err != nil {
		return Lost{}, err
	}
	lost, err := p.rollback()
	if err != nil {
		return lost, err
	}
	p.gate.Lock()
	p.cut = false
	p.gate.Unlock()
	return lost, p.mount()
}

// DropSyncs, when on, makes every fsync report success without making
// anything durable: the mutant of a store that acknowledges what is not on
// disk, which a test must see a power cut catch.
func (p *FS) DropSyncs(on bool) { p.drop.Store(on) }

// Settle makes everything written so far durable, as if every file had
// been synced: for changes a test makes to a stopped node's files on
// purpose, which a later power cut must not undo.
func (p *FS) Settle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ino, f := range p.files {
		_ = f.f.Close()
		delete(p.files, ino)
	}
}

// Close unmounts the file system, lazily if something still holds it;
// the files stay as they are. Later calls do nothing.
func (p *FS) Close() error {
	err := p.unmount()
	p.Settle()
	return err
}

func (p *FS) unmount() error {
	p.mu.Lock()
	server := p.server
	p.server = nil
	p.mu.Unlock()
	if server == nil {
		return nil
	}
	if err := server.Unmount(); err != nil {
		// Something still has a file open on it (a process not dead yet):
		// detach it, so the mount point is free and the next mount has no
		// cache; the old one goes when its last file does.
		if derr := syscall.Unmount(p.mnt, syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("powerfs: unmount %s: %w (detach: %w)", p.mnt, err, derr)
		}
	}
	return nil
}

// rollback undoes every change since each file's last fsync, newest
// first, and forgets them.
func (p *FS) rollback() (Lost, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var lost Lost
	var errs []error
	inos := make([]uint64, 0, len(p.files))
	for ino := range p.files {
		inos = append(inos, ino)
	}
	sort.Slice(inos, func(a, b int) bool { return inos[a] < inos[b] })
	for _, ino := range inos {
		f := p.files[ino]
		if len(f.undo) > 0 {
			lost.Files++
		}
		for i := len(f.undo) - 1; i >= 0; i-- {
			u := f.undo[i]
			lost.Bytes += u.n
			if len(u.old) > 0 {
				if _, err := f.f.WriteAt(u.old, u.off); err != nil {
					errs = append(errs, err)
				}
			}
			if err := f.f.Truncate(u.size); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, f.f.Close())
		delete(p.files, ino)
	}
	if err := errors.Join(errs...); err != nil {
		return lost, fmt.Errorf("powerfs: roll back: %w", err)
	}
	return lost, nil
}

// enter starts a change: it fails once the power is cut, and otherwise
// holds the gate until the returned function is called.
func (p *FS) enter() (func(), syscall.Errno) {
	p.gate.RLock()
	if p.cut {
		p.gate.RUnlock()
		return nil, syscall.EIO
	}
	return p.gate.RUnlock, 0
}

// tracked returns the record of the file open as fd, opening a read-write
// handle on it at its first change since its last sync. Under p.mu.
func (p *FS) tracked(fd int) (*file, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if f := p.files[st.Ino]; f != nil {
		return f, nil
	}
	// Through /proc, the same file whatever its name and open mode.
	h, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	f := &file{f: h}
	p.files[st.Ino] = f
	return f, nil
}

// record remembers what a change of n bytes at off (n 0: a change of size
// only) is about to overwrite in the file open as fd. Under p.mu.
func (p *FS) record(fd int, off, n int64) error {
	f, err := p.tracked(fd)
	if err != nil {
		return err
	}
	fi, err := f.f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	u := undo{off: off, size: size, n: n}
	if n > 0 && off < size {
		u.old = make([]byte, min(n, size-off))
		if _, err := f.f.ReadAt(u.old, off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	f.undo = append(f.undo, u)
	return nil
}

// recordTruncate remembers what truncating the file open as fd to size
// takes away (its bytes past size) or adds (a longer size). Under p.mu.
func (p *FS) recordTruncate(fd int, size int64) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Size == size {
		return nil
	}
	return p.record(fd, size, max(st.Size-size, 0))
}

// synced forgets the changes of the file open as fd: its fsync made them
// durable.
func (p *FS) synced(fd int) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.files[st.Ino]; f != nil {
		_ = f.f.Close()
		delete(p.files, st.Ino)
	}
}

// withPath opens path, if it exists, and runs fn on it under p.mu: for the
// changes FUSE makes by name (an open with O_TRUNC).
func (p *FS) withPath(path string, fn func(fd int) error) error {
	h, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer h.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	return fn(int(h.Fd()))
}

// node is a file or directory of the mount: the loopback node of go-fuse,
// with every change recorded and gated.
type node struct {
	fs.LoopbackNode
	p *FS
}

func (n *node) path(name string) string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()), name)
}

// handle is an open file. It offers go-fuse no passthrough descriptor,
// which would let the kernel write to the backing file without the server
// seeing it, and it writes only through the node, which records.
type handle struct {
	lf *fs.LoopbackFile
	fd int
}

func newHandle(fh fs.FileHandle) (*handle, error) {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return nil, fmt.Errorf("powerfs: unexpected file handle %T", fh)
	}
	fd, _ := lf.PassthroughFd()
	return &handle{lf: lf, fd: fd}, nil
}

// Read implements fs.FileReader.
func (h *handle) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return h.lf.Read(ctx, buf, off)
}

// Release implements fs.FileReleaser.
func (h *handle) Release(ctx context.Context) syscall.Errno { return h.lf.Release(ctx) }

// Flush implements fs.FileFlusher.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return h.lf.Flush(ctx) }

// Getattr implements fs.FileGetattrer.
func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return h.lf.Getattr(ctx, out)
}

// Lseek implements fs.FileLseeker.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return h.lf.Lseek(ctx, off, whence)
}

func unwrap(f fs.FileHandle) fs.FileHandle {
	if h, ok := f.(*handle); ok {
		return h.lf
	}
	return f
}

var (
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeWriter         = (*node)(nil)
	_ fs.NodeFsyncer        = (*node)(nil)
	_ fs.NodeAllocater      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
)

const writeFlags = syscall.O_WRONLY | syscall.O_RDWR | syscall.O_TRUNC

// Open implements fs.NodeOpener; an open for writing is a change, and
// O_TRUNC is recorded.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&writeFlags != 0 {
		leave, errno := n.p.enter()
		if errno != 0 {
			return nil, 0, errno
		}
		defer leave()
	}
	if flags&syscall.O_TRUNC != 0 {
		if err := n.p.withPath(n.path(""), func(fd int) error { return n.p.recordTruncate(fd, 0) }); err != nil {
			return nil, 0, fs.ToErrno(err)
		}
	}
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	h, err := newHandle(fh)
	if err != nil {
		_ = fh.(fs.FileReleaser).Release(ctx)
		return nil, 0, syscall.EIO
	}
	return h, fl, 0
}

// Create implements fs.NodeCreater; an existing file it truncates is
// recorded.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	leave, errno := n.p.enter()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	defer leave()
	if flags&syscall.O_TRUNC != 0 && flags&syscall.O_EXCL == 0 {
		if err := n.p.withPath(n.path(name), func(fd int) error { return n.p.recordTruncate(fd, 0) }); err != nil {
			return nil, nil, 0, fs.ToErrno(err)
		}
	}
	ch, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	h, err := newHandle(fh)
	if err != nil {
		_ = fh.(fs.FileReleaser).Release(ctx)
		return nil, nil, 0, syscall.EIO
	}
	return ch, h, fl, 0
}

// Write implements fs.NodeWriter: what the write overwrites is recorded
// first.
func (n *node) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	leave, errno := n.p.enter()
	if errno != 0 {
		return 0, errno
	}
	defer leave()
	h, ok := f.(*handle)
	if !ok {
		return 0, syscall.EBADF
	}
	n.p.mu.Lock()
	defer n.p.mu.Unlock()
	if err := n.p.record(h.fd, off, int64(len(data))); err != nil {
		return 0, fs.ToErrno(err)
	}
	return h.lf.Write(ctx, data, off)
}

// Fsync implements fs.NodeFsyncer: a file's changes are durable once it
// returns. A directory's fsync has nothing to do: namespace changes are
// durable at once.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	leave, errno := n.p.enter()
	if errno != 0 {
		return errno
	}
	defer leave()
	h, ok := f.(*handle)
	if !ok || n.p.drop.Load() {
		return 0
	}
	if errno := h.lf.Fsync(ctx, flags); errno != 0 {
		return errno
	}
	n.p.synced(h.fd)
	return 0
}

// Allocate implements fs.NodeAllocater: a size it adds is recorded.
func (n *node) Allocate(ctx context.Context, f fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	leave, errno := n.p.enter()
	if errno != 0 {
		return errno
	}
	defer leave()
	h, ok := f.(*handle)
	if !ok {
		return syscall.EBADF
	}
	n.p.mu.Lock()
	defer n.p.mu.Unlock()
	if err := n.p.record(h.fd, 0, 0); err != nil {
		return fs.ToErrno(err)
	}
	return h.lf.Allocate(ctx, off, size, mode)
}

// Setattr implements fs.NodeSetattrer: a change of size is recorded.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	leave, errno := n.p.enter()
	if errno != 0 {
		return errno
	}
	defer leave()
	if size, ok := in.GetSize(); ok {
		rec := func(fd int) error { return n.p.recordTruncate(fd, int64(size)) }
		var err error
		if h, ok := f.(*handle); ok {
			n.p.mu.Lock()
			err = rec(h.fd)
			n.p.mu.Unlock()
		} else {
			err = n.p.withPath(n.path(""), rec)
		}
		if err != nil {
			return fs.ToErrno(err)
		}
	}
	return n.LoopbackNode.Setattr(ctx, unwrap(f), in, out)
}

// CopyFileRange implements fs.NodeCopyFileRanger by refusing: the kernel
// and Go fall back to reads and writes, which are recorded.
func (n *node) CopyFileRange(context.Context, fs.FileHandle, uint64, *fs.Inode, fs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// Mkdir implements fs.NodeMkdirer, gated.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	leave, errno := n.p.enter()
	if errno != 0 {
		return nil, errno
	}
	defer leave()
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

// Unlink implements fs.NodeUnlinker, gated.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	leave, errno := n.p.enter()
	if errno != 0 {
		return errno
	}
	defer leave()
	return n.LoopbackNode.Unlink(ctx, name)
}

// Rmdir implements fs.NodeRmdirer, gated.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	leave, errno := n.p.enter()
	if errno != 0 {
		return errno
	}
	defer leave()
	return n.LoopbackNode.Rmdir(ctx, name)
}

// Rename implements fs.NodeRenamer, gated.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	leave, errno := n.p.enter()
	if errno != 0 {
		return errno
	}
	defer leave()
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

// Link implements fs.NodeLinker, gated.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	leave, errno := n.p.enter()
	if errno != 0 {
		return nil, errno
	}
	defer leave()
	return n.LoopbackNode.Link(ctx, target, name, out)
}

// Symlink implements fs.NodeSymlinker, gated.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	leave, errno := n.p.enter()
	if errno != 0 {
		return nil, errno
	}
	defer leave()
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

// Mknod implements fs.NodeMknoder, gated.
func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	leave, errno := n.p.enter()
	if errno != 0 {
		return nil, errno
	}
	defer leave()
	return n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
}

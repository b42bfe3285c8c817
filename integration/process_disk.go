//go:build unix

package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/protoraft/protoraft/internal/powerfs"
)

// The process carrier's disks (root only): every node's data directory is
// on a small tmpfs of its own, so a full disk is a real one, filled with a
// ballast file (disk-full); and, where FUSE is there, on a power-cut file
// system over that tmpfs (internal/powerfs), whose every unsynced write a
// power cut loses (power-cut). Layout under the run's directory:
//
//	disks/<id>/          the node's tmpfs (procDiskSize)
//	disks/<id>/data/     the node's files
//	disks/<id>/ballast   the ballast, while the disk is full
//	<id>/                the power-cut mount over disks/<id>/data, and the
//	                     node's --data; without FUSE --data is disks/<id>/data

// procDiskSize is the size of each node's tmpfs. Far more than a run
// writes (its log is compacted by snapshots), little enough to fill at
// once; tmpfs takes memory only for what is written.
const procDiskSize = "64m"

// procFullAtMost bounds how much longer than its step a full disk is
// held while its node has not met it yet.
const procFullAtMost = 3 * time.Second

// procSegmentSize is the log segment size the processes run with on their
// own disks: raft-wal preallocates each segment whole, so with small ones
// a full disk is met within a step or two, when the next segment is
// started, not only once a 64 MiB one is full: the process workload writes
// a few dozen entries a second, and some 18 fit in 2 KiB.
const procSegmentSize = 2 << 10

// ProbeDisks says whether process mode can give its nodes disks of their
// own here: disks is nil when a tmpfs can be mounted (as root), power is
// nil when a power-cut file system can be mounted over it (FUSE). dir is
// a scratch directory.
func ProbeDisks(dir string) (disks, power error) {
	if os.Geteuid() != 0 {
		err := errors.New("mounting a tmpfs per node needs root (CI runs as root)")
		return err, err
	}
	mnt := filepath.Join(dir, "probe")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err, err
	}
	if err := mountTmpfs(mnt, "1m"); err != nil {
		return err, err
	}
	defer func() { _ = unmount(mnt) }()
	if err := powerfs.Available(); err != nil {
		return nil, err
	}
	back, top := filepath.Join(mnt, "back"), filepath.Join(dir, "probe-top")
	for _, d := range []string{back, top} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	p, err := powerfs.Mount(back, top)
	if err != nil {
		return nil, err
	}
	return nil, p.Close()
}

func mountTmpfs(dir, size string) error {
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("mount a %s tmpfs on %s: %w: %s", size, dir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func unmount(dir string) error {
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		// Still busy (a process not reaped yet): detach it, so nothing is
		// left mounted under the test's directory.
		if derr := syscall.Unmount(dir, syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("umount %s: %w: %s (detach: %w)", dir, err, strings.TrimSpace(string(out)), derr)
		}
	}
	return nil
}

// procDisk is one node's disk.
type procDisk struct {
	tmpfs, backing, data string
	power                *powerfs.FS // nil without FUSE

	mu      sync.Mutex
	ballast string // the ballast's path while the disk is full
	filled  bool   // the disk was full at least once: a crash on it is excused
}

// procDisks are every node's disks.
type procDisks struct {
	byID map[string]*procDisk

	closeOnce sync.Once
	closeErr  error
}

// mountDisks mounts a tmpfs for each of ids under dir, and over each a
// power-cut file system when power is set. On an error everything mounted
// so far is unmounted.
func mountDisks(dir string, ids []string, power bool) (_ *procDisks, err error) {
	d := &procDisks{byID: map[string]*procDisk{}}
	defer func() {
		if err != nil {
			_ = d.close()
		}
	}()
	for _, id := range ids {
		pd := &procDisk{tmpfs: filepath.Join(dir, "disks", id)}
		pd.backing = filepath.Join(pd.tmpfs, "data")
		pd.data = pd.backing
		if err := os.MkdirAll(pd.tmpfs, 0o755); err != nil {
			return nil, err
		}
		if err := mountTmpfs(pd.tmpfs, procDiskSize); err != nil {
			return nil, err
		}
		d.byID[id] = pd
		if err := os.Mkdir(pd.backing, 0o755); err != nil {
			return nil, err
		}
		if !power {
			continue
		}
		pd.data = filepath.Join(dir, id)
		if err := os.MkdirAll(pd.data, 0o755); err != nil {
			return nil, err
		}
		if pd.power, err = powerfs.Mount(pd.backing, pd.data); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// close unmounts every disk, the power-cut file systems first; once every
// process is gone. Later calls return the first one's error.
func (d *procDisks) close() error {
	if d == nil {
		return nil
	}
	d.closeOnce.Do(func() {
		var errs []error
		for _, pd := range d.byID {
			if pd.power != nil {
				errs = append(errs, pd.power.Close())
			}
			errs = append(errs, unmount(pd.tmpfs))
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

func (d *procDisks) disk(id string) *procDisk {
	if d == nil {
		return nil
	}
	return d.byID[id]
}

// diskFaults: a disk to fill with Processes.Disks, a power to cut with
// Processes.Power too.
func (c *processes) diskFaults() (fill, cut bool) {
	if c.disks == nil {
		return false, false
	}
	for _, pd := range c.disks.byID {
		return true, pd.power != nil
	}
	return false, false
}

// fillDisk fills id's tmpfs with a ballast file until a write fails with
// ENOSPC; the heal it returns deletes the ballast, after asking the node's
// health, which says whether it noticed. The node must refuse what it
// cannot store and take part again once the space is back; if it crashes
// instead (hashicorp/raft panics when its stable store cannot write), the
// crash is excused and counted (crashes), the heal starts it again, and
// the checks still hold it to every acknowledged write.
func (c *processes) fillDisk(ctx context.Context, id string, _ *rand.Rand) (string, func() string, bool) {
	pd := c.disks.disk(id)
	if pd == nil {
		return "", nil, false
	}
	var logFrom int64
	if n := c.g.Node(id); n != nil {
		if fi, err := os.Stat(n.LogPath()); err == nil {
			logFrom = fi.Size()
		}
	}
	pd.mu.Lock()
	defer pd.mu.Unlock()
	path := filepath.Join(pd.tmpfs, "ballast")
	size, err := fill(path)
	pd.ballast, pd.filled = path, true
	what := fmt.Sprintf("a %d KiB ballast fills its tmpfs", size>>10)
	if err != nil {
		what += fmt.Sprintf(" (%v)", err)
	}
	return what, func() string {
		// A node that wrote nothing new yet has met no full disk: it
		// writes into space its log preallocated. Hold on, a bounded
		// while, until it says it met one.
		met := c.logLinesSince(id, logFrom, syscall.ENOSPC.Error())
		for deadline := time.Now().Add(procFullAtMost); met == 0 && time.Now().Before(deadline) && c.running(id); {
			sleepCtx(ctx, 50*time.Millisecond)
			met = c.logLinesSince(id, logFrom, syscall.ENOSPC.Error())
		}
		health := c.health(ctx, id)
		pd.mu.Lock()
		defer pd.mu.Unlock()
		err := os.Remove(pd.ballast)
		pd.ballast = ""
		return fmt.Sprintf("ballast deleted: %s; log lines with %q while full: %d; health while full: %s",
			errText(err), syscall.ENOSPC.Error(), met, health)
	}, true
}

// logLinesSince counts the lines of id's log past offset from that
// contain s.
func (c *processes) logLinesSince(id string, from int64, s string) int {
	n := c.g.Node(id)
	if n == nil {
		return 0
	}
	f, err := os.Open(n.LogPath())
	if err != nil {
		return 0
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, from, 1<<30))
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// fill writes a ballast file at path until its file system has no space
// left and returns its size: fallocate for the bulk, then small writes
// until one fails with ENOSPC, so the last free block is taken too.
func fill(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var size int64
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		return 0, err
	}
	// The nodes write meanwhile, so a request for all that is free may
	// fail: halve it until one fits.
	for chunk := int64(st.Bavail) * st.Bsize; chunk >= 64<<10; chunk /= 2 {
		if err := syscall.Fallocate(int(f.Fd()), 0, size, chunk); err == nil {
			size += chunk
		} else if !errors.Is(err, syscall.ENOSPC) {
			break
		}
	}
	buf := make([]byte, 4<<10)
	// Bounded: the tmpfs is procDiskSize at most.
	for range 64 << 20 / len(buf) {
		n, err := f.WriteAt(buf, size)
		size += int64(n)
		if errors.Is(err, syscall.ENOSPC) {
			return size, nil
		}
		if err != nil {
			return size, err
		}
	}
	return size, errors.New("the disk never filled up")
}

// health is what id's /health says, in a few words.
func (c *processes) health(ctx context.Context, id string) string {
	ctx, cancel := context.WithTimeout(ctx, procStatusTimeout)
	defer cancel()
	code, body, err := c.get(ctx, id, "/health")
	if err != nil {
		return "no answer (" + err.Error() + ")"
	}
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return fmt.Sprintf("%d %s", code, s)
}

// excuse excuses a crash of id on its full disk: a process whose disk was
// filled and that panicked with "no space left on device" (hashicorp/raft
// panics when its stable store cannot write). Any other exit stays a
// violation.
func (c *processes) excuse(id, log string) string {
	pd := c.disks.disk(id)
	if pd == nil {
		return ""
	}
	pd.mu.Lock()
	filled := pd.filled
	pd.mu.Unlock()
	if !filled {
		return ""
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
			if strings.Contains(line, syscall.ENOSPC.Error()) {
				return "crashed on its full disk: " + line
			}
			return ""
		}
	}
	return ""
}

// crashes are the excused exits: processes that crashed on a full disk.
func (c *processes) crashes() []string { return c.g.Excused() }

// procCutWithin bounds a power cut's status request.
const procCutWithin = 2 * time.Second

// powerCut cuts the power of id's disk (every later change fails),
// SIGKILLs its process, reboots the disk (what was not synced is rolled
// back), and reads what its data directory holds then. The node stays
// down until started again.
func (c *processes) powerCut(ctx context.Context, id string) (reported, onDisk uint64, detail string, err error) {
	pd := c.disks.disk(id)
	if pd == nil || pd.power == nil {
		return 0, 0, "", fmt.Errorf("%w: %s has no power-cut file system", errNotCut, id)
	}
	n, err := c.node(id)
	if err != nil {
		return 0, 0, "", fmt.Errorf("%w: %v", errNotCut, err)
	}
	sctx, cancel := context.WithTimeout(ctx, procCutWithin)
	st, err := c.status(sctx, id)
	cancel()
	if err != nil {
		return 0, 0, "", fmt.Errorf("%w: %v", errNotCut, err)
	}
	reported = st.GetLastIndex()
	n.KillAfter(pd.power.Cut)
	lost, err := pd.power.Reboot()
	if err != nil {
		return reported, 0, "", err
	}
	// Read a copy taken at rest through the mount, which has no cache
	// from before the cut. Never the mount itself: raft-wal's meta
	// database is bolt, which maps its file, and a page fault on a file of
	// this process's own FUSE mount holds the faulting thread outside any
	// system call, where the garbage collector's stop-the-world waits for
	// it while the FUSE server that would answer the fault waits for the
	// collector (a long-profile run hung so). Plain reads are system
	// calls, which the collector does not wait for.
	onDisk, err = lastDurableIndexOfCopy(pd.data)
	pd.power.Settle()
	return reported, onDisk, "the cut lost " + lost.String(), err
}

// settle makes what the harness wrote to id's stopped files durable (the
// damage overlay's torn tails and flipped bits), so that a later power
// cut does not undo them.
func (c *processes) settle(id string) {
	if pd := c.disks.disk(id); pd != nil && pd.power != nil {
		pd.power.Settle()
	}
}

// lastDurableIndexOfCopy is lastDurableIndex of a copy of dir, made with
// plain reads and writes.
func lastDurableIndexOfCopy(dir string) (uint64, error) {
	tmp, err := os.MkdirTemp("", "protoraft-power-cut")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if err := copyTree(dir, tmp); err != nil {
		return 0, fmt.Errorf("copy the data directory after the power cut: %w", err)
	}
	return lastDurableIndex(tmp)
}

// copyTree copies the directories and regular files under src into dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, 0o644)
		}
		return nil
	})
}

// emptyDir deletes everything in dir but dir itself, which may be a mount
// point.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

package raftactor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it when the test ends; it skips the test where it cannot (not root, or
// mount refused).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a size-limited tmpfs (CI runs as root); the injected full-disk tests cover the same paths")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, strings.TrimSpace(string(out)))
	}
	// Registered after TempDir's cleanup, so it runs first.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file into dir until the file system is full and returns
// its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !strings.Contains(err.Error(), syscall.ENOSPC.Error()) {
				t.Fatalf("fill: %v", err)
			}
			return path
		}
	}
}

// A real full file system under one node (a 4 MiB tmpfs): filled up while
// the group takes writes, the node refuses what it cannot store and says
// why (no space left on device), the group goes on; once space is freed
// the node recovers without anyone restarting it and catches up.
func TestRealFullDiskUnderANode(t *testing.T) {
	mnt := mountTmpfs(t, "4m")
	obs := &storageObserver{}
	c := grouptest.New(t, 3, func(cfg *raftactor.Config) {
		if cfg.ID == "n3" {
			cfg.DataDir = filepath.Join(mnt, "n3")
			cfg.Metrics = obs
		}
	})
	leader := c.WaitLeader()
	c.Put("before", "before")
	c.WaitValue("n3", "before", "before")
	pid := c.Node("n3").PID
	filler := fill(t, mnt)

	// Writes go on through the others; n3's log fills its preallocated
	// segment and cannot make the next one.
	big := strings.Repeat("x", 8<<10)
	var sawNoSpace string
	for i := 0; i < 400 && sawNoSpace == ""; i++ {
		if _, err := c.TryPut("k", big, testutil.WaitFor); err != nil {
			t.Fatal(err)
		}
		l := c.WaitLeader()
		if f := obs.failure(); strings.Contains(f, "no space left on device") {
			sawNoSpace = f
		}
		r, err := c.Ask("n3", &actors.StatusRequest{Meta: grouptest.Meta(time.Second)})
		if err != nil {
			continue
		}
		if e := r.(*actors.StatusResponse).Error; e.Err() != nil && actors.CodeOf(e) != actors.Code_UNAVAILABLE {
			t.Fatalf("a node out of space answers %v, want UNAVAILABLE while it tries again", e)
		}
		if l == "n3" {
			// n3 leads: its own writes are refused once its log is full.
			if e := writeTo(c, "n3", "refused"); e.Err() != nil && strings.Contains(e.GetMessage(), "no space left on device") {
				sawNoSpace = e.String()
			}
		}
	}
	if sawNoSpace == "" {
		t.Fatal("n3 never reported its full disk")
	}
	t.Logf("n3 (leader at start: %s): %s", leader, sawNoSpace)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryPut("after", "after", testutil.WaitFor); err != nil {
		t.Fatal(err)
	}
	c.WaitValue("n3", "after", "after")
	c.WaitValue("n3", "k", big)
	testutil.Eventually(t, "n3 reports its log store recovered", func() bool { return obs.failure() == "" })
	if c.Node("n3").PID != pid {
		t.Fatal("n3 was restarted from outside")
	}
	testutil.Eventually(t, "n3 converges", func() bool {
		ls, s := c.Status(c.WaitLeader()), c.Status("n3")
		return s.Error.Err() == nil && s.LastIndex == ls.LastIndex
	})
}

// storageObserver is a node's Metrics that keeps the log store's current
// failure (raftactor.StorageObserver), as telemetry does for health.
type storageObserver struct {
	mu      sync.Mutex
	failing string
}

func (o *storageObserver) FSMApplied(int, time.Duration)                 {}
func (o *storageObserver) SnapshotPersisted(int64, time.Duration, error) {}
func (o *storageObserver) SnapshotRestored(time.Duration, error)         {}

func (o *storageObserver) LogStoreFailed(err error) {
	o.mu.Lock()
	o.failing = err.Error()
	o.mu.Unlock()
}

func (o *storageObserver) LogStoreRecovered() {
	o.mu.Lock()
	o.failing = ""
	o.mu.Unlock()
}

func (o *storageObserver) failure() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failing
}

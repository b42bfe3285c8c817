//go:build linux

package powerfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// mountForTest mounts a power-cut file system over a new backing
// directory, or skips where none can be mounted.
func mountForTest(t *testing.T) *FS {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("%v (CI runs as root, where /dev/fuse exists)", err)
	}
	dir := t.TempDir()
	backing, mnt := filepath.Join(dir, "backing"), filepath.Join(dir, "mnt")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Mount(backing, mnt)
	if err != nil {
		t.Skipf("cannot mount FUSE here: %v", err)
	}
	// Registered after TempDir's cleanup, so it runs first.
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func write(t *testing.T, path string, flag int, data string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

// A power cut keeps what each file's last fsync made durable and loses
// the rest: appended bytes, overwritten bytes, a truncation, a file
// preallocated and never synced (left empty); while the power is off
// every change fails; after the reboot the mount works again.
func TestPowerCutKeepsWhatWasSynced(t *testing.T) {
	p := mountForTest(t)
	m := p.Dir()
	synced, appended, overwritten, truncated, fresh :=
		filepath.Join(m, "synced"), filepath.Join(m, "appended"), filepath.Join(m, "overwritten"), filepath.Join(m, "truncated"), filepath.Join(m, "fresh")
	write(t, synced, os.O_CREATE|os.O_WRONLY, "durable", true)
	write(t, appended, os.O_CREATE|os.O_WRONLY, "kept", true)
	write(t, appended, os.O_WRONLY|os.O_APPEND, "+lost", false)
	write(t, overwritten, os.O_CREATE|os.O_WRONLY, "original", true)
	write(t, overwritten, os.O_WRONLY, "CHANGED", false)
	write(t, truncated, os.O_CREATE|os.O_WRONLY, "long content", true)
	if err := os.Truncate(truncated, 4); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(fresh, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("never synced"), 100); err != nil {
		t.Fatal(err)
	}
	// A rename is durable at once (the model is a dirsync mount).
	if err := os.Rename(synced, synced+".renamed"); err != nil {
		t.Fatal(err)
	}

	p.Cut()
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("a write after the cut: %v, want EIO", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("an fsync after the cut: %v, want EIO", err)
	}
	if err := os.WriteFile(filepath.Join(m, "new"), nil, 0o644); !errors.Is(err, syscall.EIO) {
		t.Fatalf("a create after the cut: %v, want EIO", err)
	}
	_ = f.Close()
	lost, err := p.Reboot()
	if err != nil {
		t.Fatal(err)
	}
	if lost.Files != 4 {
		t.Errorf("lost %v, want 4 files", lost)
	}
	for path, want := range map[string]string{
		synced + ".renamed": "durable",
		appended:            "kept",
		overwritten:         "original",
		truncated:           "long content",
		fresh:               "",
	} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, []byte(want)) {
			t.Errorf("%s holds %q after the power cut, want %q", filepath.Base(path), got, want)
		}
	}
	write(t, filepath.Join(m, "after"), os.O_CREATE|os.O_WRONLY, "power is back", true)
	if got, _ := os.ReadFile(filepath.Join(p.Backing(), "after")); string(got) != "power is back" {
		t.Errorf("the backing directory holds %q after the reboot", got)
	}
}

// Settle makes what was written durable: a later cut keeps it.
func TestSettleMakesWritesDurable(t *testing.T) {
	p := mountForTest(t)
	path := filepath.Join(p.Dir(), "damaged")
	write(t, path, os.O_CREATE|os.O_WRONLY, "on purpose", false)
	p.Settle()
	p.Cut()
	if _, err := p.Reboot(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "on purpose" {
		t.Errorf("after Settle and a power cut the file holds %q", got)
	}
}

// With syncs dropped (the mutant), a power cut loses what was "synced".
func TestDroppedSyncsAreLost(t *testing.T) {
	p := mountForTest(t)
	p.DropSyncs(true)
	path := filepath.Join(p.Dir(), "lying")
	write(t, path, os.O_CREATE|os.O_WRONLY, "acknowledged", true)
	p.Cut()
	if _, err := p.Reboot(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); len(got) != 0 {
		t.Errorf("with syncs dropped, the power cut left %q", got)
	}
}

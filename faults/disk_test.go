package faults

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

func TestDiskPowerCutKeepsOnlySyncedBytes(t *testing.T) {
	dir := t.TempDir()
	d := NewDisk()
	f, err := d.Create(dir, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("synced"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("SY"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(" and lost"), 6); err != nil {
		t.Fatal(err)
	}
	g, err := d.Create(dir, "never-synced", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteAt([]byte("gone"), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.PowerCut(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, ErrPowerCut) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("write after the cut: %v", err)
	}
	if _, err := d.OpenReader(dir, "a"); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("open after the cut: %v", err)
	}
	f.Close()
	g.Close()
	b, err := os.ReadFile(filepath.Join(dir, "a"))
	if err != nil || string(b) != "synced" {
		t.Fatalf("after the cut a holds %q (%v), want the synced %q", b, err, "synced")
	}
	if _, err := os.Stat(filepath.Join(dir, "never-synced")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file never synced survived the cut: %v", err)
	}
	d.Restore()
	if _, err := d.OpenReader(dir, "a"); err != nil {
		t.Fatalf("open after Restore: %v", err)
	}
}

func TestDiskInjectsErrorsUntilHeal(t *testing.T) {
	dir := t.TempDir()
	d := NewDisk()
	f, err := d.Create(dir, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("one"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	d.FailWrites(syscall.ENOSPC)
	if _, err := f.WriteAt([]byte("two"), 3); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write: %v, want ENOSPC", err)
	}
	if _, err := d.Create(dir, "b", 0); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("create: %v, want ENOSPC", err)
	}
	d.Heal()
	d.FailSyncs(syscall.EIO)
	if _, err := f.WriteAt([]byte("two"), 3); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync: %v, want EIO", err)
	}
	// A failed fsync loses what it should have made durable.
	if b, _ := os.ReadFile(filepath.Join(dir, "a")); string(b) != "one" {
		t.Fatalf("after a failed sync the file holds %q, want %q", b, "one")
	}
	d.Heal()
	d.FailReads(syscall.EIO)
	if _, err := f.ReadAt(make([]byte, 3), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read: %v, want EIO", err)
	}
	d.Heal()
	if _, err := f.WriteAt([]byte("two"), 3); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if d.Injected() != 4 {
		t.Fatalf("injected %d failures, want 4", d.Injected())
	}
}

// openWAL opens raft-wal in dir over d, with a meta database it closes.
func openWAL(dir string, d *Disk) (*raftwal.WAL, func(), error) {
	meta := &metadb.BoltMetaDB{}
	w, err := raftwal.Open(dir, raftwal.WithMetaStore(meta), raftwal.WithLogger(hclog.NewNullLogger()),
		raftwal.WithSegmentFiler(d.Filer(dir)), raftwal.WithSegmentSize(64*1024))
	if err != nil {
		meta.Close()
		return nil, nil, err
	}
	return w, func() { w.Close(); meta.Close() }, nil
}

func mustOpenWAL(t *testing.T, dir string, d *Disk) (*raftwal.WAL, func()) {
	t.Helper()
	w, closeWAL, err := openWAL(dir, d)
	if err != nil {
		t.Fatal(err)
	}
	return w, closeWAL
}

func entries(from, to uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 300)})
	}
	return out
}

// lastIndex opens the log in dir and checks every entry it holds; an
// error means it could not be read back.
func lastIndex(dir string) (uint64, error) {
	w, closeWAL, err := openWAL(dir, NewDisk())
	if err != nil {
		return 0, err
	}
	defer closeWAL()
	last, err := w.LastIndex()
	if err != nil {
		return 0, err
	}
	for i := uint64(1); i <= last; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil {
			return 0, fmt.Errorf("entry %d: %w", i, err)
		}
		if !bytes.Equal(l.Data, bytes.Repeat([]byte{byte(i)}, 300)) {
			return 0, fmt.Errorf("entry %d holds other data", i)
		}
	}
	return last, nil
}

// Every append raft-wal acknowledged survives a power cut, across segment
// rotations; with syncs dropped (the mutant) the same run loses entries,
// so the check can fail.
func TestDiskPowerCutUnderRaftWAL(t *testing.T) {
	for _, mutant := range []bool{false, true} {
		t.Run(fmt.Sprintf("drop_syncs=%v", mutant), func(t *testing.T) {
			dir := t.TempDir()
			d := NewDisk()
			w, closeWAL := mustOpenWAL(t, dir, d)
			if err := w.StoreLogs(entries(1, 100)); err != nil {
				t.Fatal(err)
			}
			d.DropSyncs(mutant)
			var acked uint64 = 100
			for i := uint64(101); i <= 600; i += 10 {
				if err := w.StoreLogs(entries(i, i+9)); err != nil {
					t.Fatal(err)
				}
				acked = i + 9
			}
			if err := d.PowerCut(); err != nil {
				t.Fatal(err)
			}
			// The cut may also have failed a rotation under way, which
			// leaves raft-wal on its sealed tail ("segment is sealed").
			if err := w.StoreLogs(entries(acked+1, acked+1)); err == nil {
				t.Fatal("an append after the cut succeeded")
			}
			closeWAL()
			got, err := lastIndex(dir)
			lost := err != nil || got < acked
			if lost != mutant {
				t.Fatalf("drop syncs %v: acknowledged %d, after the cut the log ends at %d (%v)", mutant, acked, got, err)
			}
			t.Logf("acknowledged %d, after the cut the log ends at %d (%v)", acked, got, err)
		})
	}
}

// raft-wal refuses appends while writes or syncs fail, and takes them again
// once they work, without being reopened; nothing refused is in the log.
func TestDiskErrorsUnderRaftWAL(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(d *Disk)
		want error
	}{
		{"write ENOSPC", func(d *Disk) { d.FailWrites(syscall.ENOSPC) }, syscall.ENOSPC},
		{"sync EIO", func(d *Disk) { d.FailSyncs(syscall.EIO) }, syscall.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d := NewDisk()
			w, closeWAL := mustOpenWAL(t, dir, d)
			if err := w.StoreLogs(entries(1, 10)); err != nil {
				t.Fatal(err)
			}
			tc.fail(d)
			if err := w.StoreLogs(entries(11, 12)); !errors.Is(err, tc.want) {
				t.Fatalf("append: %v, want %v", err, tc.want)
			}
			if last, _ := w.LastIndex(); last != 10 {
				t.Fatalf("last index %d after a refused append, want 10", last)
			}
			d.Heal()
			if err := w.StoreLogs(entries(11, 12)); err != nil {
				t.Fatalf("append after heal: %v", err)
			}
			if err := d.PowerCut(); err != nil {
				t.Fatal(err)
			}
			closeWAL()
			if got, err := lastIndex(dir); err != nil || got != 12 {
				t.Fatalf("log ends at %d (%v) after the cut, want 12", got, err)
			}
		})
	}
}

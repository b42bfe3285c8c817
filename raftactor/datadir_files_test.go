package raftactor_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/diskdamage"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/telemetry"
)

// The files of a stopped node are damaged, as a crash mid-write or a
// failing disk would, and the node is started again. A torn tail of the
// open log segment is rolled back and the node catches up; damage
// anywhere else makes it refuse to start (ErrDamagedDataDir, naming the
// file), and never apply or serve what it read.

const damageKeys = 300

// damageValue is key i's value: about 1 KiB, so that 300 writes fill
// more than one 256 KiB log segment; its number is where a test flips a
// bit to make a wrong value.
func damageValue(i int) string {
	return fmt.Sprintf("value-%04d-%s", i, strings.Repeat("abcdefgh", 125))
}

// damagedFollower runs a group of three, writes damageKeys keys (the
// follower snapshots after all but the last ten when snapshot is set),
// stops the follower and damages its directory with damage.
func damagedFollower(t *testing.T, snapshot bool, damage func(t *testing.T, dir string)) (*grouptest.Nodes, string) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	f := otherThan(c, leader)
	for i := 0; i < damageKeys; i++ {
		if i == damageKeys-10 && snapshot {
			sr := c.MustAsk(f, &actors.SnapshotRequest{Meta: grouptest.Meta(5 * time.Second)}).(*actors.SnapshotResponse)
			if sr.Error.Err() != nil {
				t.Fatalf("snapshot: %v", sr.Error)
			}
		}
		c.Put(fmt.Sprint("k", i), damageValue(i))
	}
	c.WaitValue(f, fmt.Sprint("k", damageKeys-1), damageValue(damageKeys-1))
	c.Stop(f)
	damage(t, c.Node(f).Config.DataDir)
	return c, f
}

// assertEveryValue checks every key on node id, and that it follows new
// writes.
func assertEveryValue(t *testing.T, c *grouptest.Nodes, id string) {
	t.Helper()
	c.Put("after-damage", "x")
	c.WaitValue(id, "after-damage", "x")
	for i := 0; i < damageKeys; i++ {
		rr, qr := c.Get(id, fmt.Sprint("k", i), actors.Consistency_STALE)
		if rr.Error.Err() != nil || string(qr.GetValue()) != damageValue(i) {
			t.Fatalf("k%d on %s after the damage: %v %.24q, want %.24q", i, id, rr.Error, qr.GetValue(), damageValue(i))
		}
	}
}

func tailSegment(t *testing.T, dir string) (string, int64) {
	t.Helper()
	segs, err := diskdamage.Segments(dir)
	if err != nil || len(segs) < 2 {
		t.Fatalf("want a sealed and an open log segment: %v %v", segs, err)
	}
	p := segs[len(segs)-1]
	n, err := diskdamage.Written(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, n
}

func writeAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// flipInValue flips a bit of the number in value, where it is stored in
// path: the entry then decodes to another, well-formed value.
func flipInValue(t *testing.T, path, value string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(value))
	if i < 0 {
		t.Fatalf("%.16q is not in %s", value, path)
	}
	if err := diskdamage.FlipBitAt(path, int64(i+len("value-")), 0); err != nil {
		t.Fatal(err)
	}
}

// firstValueIn is the first key's value stored in path.
func firstValueIn(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < damageKeys; i++ {
		if bytes.Contains(b, []byte(damageValue(i))) {
			return damageValue(i)
		}
	}
	t.Fatalf("no value in %s", path)
	return ""
}

func TestTornLogTailIsRolledBackAndTheNodeCatchesUp(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"truncated in the last batch", func(t *testing.T, dir string) {
			p, n := tailSegment(t, dir)
			if err := os.Truncate(p, n-50); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated half way", func(t *testing.T, dir string) {
			p, n := tailSegment(t, dir)
			if err := os.Truncate(p, n/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage after the end", func(t *testing.T, dir string) {
			p, n := tailSegment(t, dir)
			g := make([]byte, 3000)
			rand.New(rand.NewSource(1)).Read(g)
			writeAt(t, p, g, n)
		}},
		// raft-wal v0.4.1 takes such a frame, after the last commit, for
		// the open segment's seal: the node started, and every append
		// failed with "segment is sealed"; it never caught up.
		{"garbage that reads as an index frame", func(t *testing.T, dir string) {
			p, n := tailSegment(t, dir)
			writeAt(t, p, []byte{2, 0, 0, 0, 8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, n)
		}},
		{"bit flipped in the last batch", func(t *testing.T, dir string) {
			p, _ := tailSegment(t, dir)
			flipInValue(t, p, damageValue(damageKeys-1))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, snapshot := range []bool{false, true} {
				c, f := damagedFollower(t, snapshot, tc.damage)
				if err := c.TryStart(f); err != nil {
					t.Fatalf("start after a torn tail (snapshot %v): %v", snapshot, err)
				}
				assertEveryValue(t, c, f)
				// The rolled-back bytes are gone: a second start reads a
				// clean tail.
				c.Stop(f)
				c.Start(f)
				assertEveryValue(t, c, f)
			}
		})
	}
}

func TestDamagedFilesAreRefused(t *testing.T) {
	cases := []struct {
		name     string
		snapshot bool
		file     string // what the error names
		damage   func(t *testing.T, dir string)
	}{
		// Before the check, raft-wal served the flipped value: the node
		// started and answered k5 = "value-1005-…" (and the same for an
		// earlier batch of the open segment).
		{"bit flipped in a sealed segment", false, ".wal", func(t *testing.T, dir string) {
			segs, _ := diskdamage.Segments(dir)
			flipInValue(t, segs[0], damageValue(5))
		}},
		{"bit flipped in an earlier batch of the open segment", false, ".wal", func(t *testing.T, dir string) {
			p, _ := tailSegment(t, dir)
			flipInValue(t, p, firstValueIn(t, p))
		}},
		// An entry below the snapshot is never applied again, but a
		// leader sends it to a follower that lags.
		{"bit flipped in a sealed segment below the snapshot", true, ".wal", func(t *testing.T, dir string) {
			segs, _ := diskdamage.Segments(dir)
			flipInValue(t, segs[0], damageValue(5))
		}},
		// Before: "start raft: failed to load any existing snapshots",
		// not a damaged directory.
		{"bit flipped in a snapshot's state", true, "state.bin", func(t *testing.T, dir string) {
			for _, f := range snapshotFile(t, dir, "state.bin") {
				n, _ := diskdamage.Written(f)
				if err := diskdamage.FlipBitAt(f, n/2, 1); err != nil {
					t.Fatal(err)
				}
			}
		}},
		// Before: the node started from a snapshot at index 202 (the
		// flipped digit of 302) and applied entries 203 to 302 again.
		{"bit flipped in a snapshot's index", true, "meta.json", func(t *testing.T, dir string) {
			for _, f := range snapshotFile(t, dir, "meta.json") {
				b, _ := os.ReadFile(f)
				i := bytes.Index(b, []byte(`"Index":`))
				if err := diskdamage.FlipBitAt(f, int64(i+len(`"Index":`)), 0); err != nil {
					t.Fatal(err)
				}
			}
		}},
		// The meta file still parses, and names another address for a
		// member: only its SHA-256 tells.
		{"bit flipped in a member's address in a snapshot's meta file", true, "meta.json", func(t *testing.T, dir string) {
			for _, f := range snapshotFile(t, dir, "meta.json") {
				b, _ := os.ReadFile(f)
				i := bytes.Index(b, []byte(`"Address":"`))
				if err := diskdamage.FlipBitAt(f, int64(i+len(`"Address":"`)+2), 0); err != nil {
					t.Fatal(err)
				}
			}
		}},
		// A snapshot of an earlier build has no checksum of its meta
		// file: its index must still agree with its name.
		{"bit flipped in the index of a snapshot without a meta checksum", true, "meta.json", func(t *testing.T, dir string) {
			for _, f := range snapshotFile(t, dir, "meta.json") {
				if err := os.Remove(filepath.Join(filepath.Dir(f), "meta.sha256")); err != nil {
					t.Fatal(err)
				}
				b, _ := os.ReadFile(f)
				i := bytes.Index(b, []byte(`"Index":`))
				if err := diskdamage.FlipBitAt(f, int64(i+len(`"Index":`)), 0); err != nil {
					t.Fatal(err)
				}
			}
		}},
		// Before: raft skipped the snapshot it could not parse and
		// started without it.
		{"snapshot meta file that does not parse", true, "meta.json", func(t *testing.T, dir string) {
			for _, f := range snapshotFile(t, dir, "meta.json") {
				if err := diskdamage.FlipBitAt(f, 0, 3); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, f := damagedFollower(t, tc.snapshot, tc.damage)
			err := c.TryStart(f)
			assertRefused(t, c, f, err, tc.file)
			// The rest of the group goes on without it.
			var rest []string
			for _, id := range c.IDs() {
				if id != f {
					rest = append(rest, id)
				}
			}
			if _, err := tryPutTo(c, c.WaitLeader(rest...), "without-the-damaged-node", "ok"); err != nil {
				t.Fatalf("write without the damaged node: %v", err)
			}
		})
	}
}

func snapshotFile(t *testing.T, dir, name string) []string {
	t.Helper()
	files, err := diskdamage.SnapshotFiles(dir)
	var out []string
	for _, f := range files {
		if filepath.Base(f) == name {
			out = append(out, f)
		}
	}
	if err != nil || len(out) == 0 {
		t.Fatalf("no snapshot %s in %s: %v", name, dir, err)
	}
	return out
}

// assertRefused checks that node id refused to start because of damage in
// a file named like file, refuses every request with INTERNAL naming the
// damage, and that its health says UNHEALTHY with the reason.
func assertRefused(t *testing.T, c *grouptest.Nodes, id string, err error, file string) {
	t.Helper()
	if !errors.Is(err, raftactor.ErrDamagedDataDir) || !strings.Contains(err.Error(), file) ||
		!strings.Contains(err.Error(), "delete its data directory") {
		t.Fatalf("start of the damaged node: %v, want ErrDamagedDataDir naming %s and the recovery", err, file)
	}
	rr, qr := c.Get(id, "k1", actors.Consistency_STALE)
	if actors.CodeOf(rr.Error) != actors.Code_INTERNAL || !strings.Contains(rr.Error.GetMessage(), "damaged data directory") || qr != nil {
		t.Fatalf("stale read on the damaged node: %v %v, want INTERNAL naming the damage", rr.Error, qr)
	}
	st := c.MustAsk(id, &actors.StatusRequest{Meta: grouptest.Meta(time.Second)}).(*actors.StatusResponse)
	now := time.Now()
	h := telemetry.Judge(telemetry.Config{}, telemetry.Poll{At: now, Self: st}, now)
	if h.Status != actors.HealthStatus_UNHEALTHY || len(h.Reasons) == 0 || !strings.Contains(h.Reasons[0], "damaged data directory") {
		t.Fatalf("health of the damaged node: %v %v", h.Status, h.Reasons)
	}
}

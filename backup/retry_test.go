package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// reapingGroup is a three-node group whose nodes keep one snapshot only,
// holding more than two snapshot chunks of data, so a backup of it streams
// in several requests and a new snapshot reaps the one being streamed.
func reapingGroup(t *testing.T) (*grouptest.Groups, *cluster.Client, map[string]string) {
	t.Helper()
	gs := grouptest.NewGroups(t)
	_, groups := gs.SpawnVoters("orig", 3, func(cfg *cluster.Config) { cfg.Node.SnapshotRetain = 1 })
	leader := gs.WaitLeader(groups...)
	want := map[string]string{}
	value := strings.Repeat("v", 100<<10)
	for i := range 3 * raftactor.MaxSnapshotReadChunk / len(value) {
		k := fmt.Sprintf("key-%03d", i)
		gs.Put(leader.FrontDoor(), k, value+k)
		want[k] = value + k
	}
	return gs, cluster.NewClient(gs.System, "orig", grouptest.Peers("n1", "n2", "n3")), want
}

// reap makes the leader replace its snapshot: a write, so there is
// something new, then a snapshot, after which a store that keeps one
// deletes the one before.
func reap(t *testing.T, ctx context.Context, c *cluster.Client, key string) {
	t.Helper()
	if _, err := c.Write(ctx, kvstore.Put(key, []byte("late"))); err != nil {
		t.Errorf("write %s: %v", key, err)
		return
	}
	if _, err := c.Snapshot(ctx); err != nil {
		t.Errorf("snapshot: %v", err)
	}
}

// A backup whose snapshot the node reaps mid-stream starts again with a
// new snapshot and ends with a whole backup of it, which holds the writes
// acknowledged before it, the one made while the first attempt streamed
// included.
func TestSaveRetriesWhenTheSnapshotIsReapedMidStream(t *testing.T) {
	gs, client, want := reapingGroup(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reaped := 0
	afterRead = func(attempt int, read int64) {
		if attempt == 1 && reaped == 0 && read >= raftactor.MaxSnapshotReadChunk {
			reaped++
			reap(t, ctx, client, "written-mid-stream")
		}
	}
	t.Cleanup(func() { afterRead = nil })
	path := filepath.Join(t.TempDir(), "orig.bak")
	h, err := Save(ctx, client, "orig", path)
	if err != nil {
		t.Fatalf("Save with the snapshot reaped mid-stream: %v", err)
	}
	if reaped != 1 {
		t.Fatalf("the snapshot was reaped %d times, want 1", reaped)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatalf("the backup written after the retry: %v", err)
	}
	defer f.Close()
	if f.Header.SnapshotID != h.SnapshotID || f.Header.Size != h.Size {
		t.Fatalf("Save returned %+v, the file holds %+v", h, f.Header)
	}
	want["written-mid-stream"] = "late"
	restored := restoreInto(t, gs, f, "copy", "c1")
	rl := gs.WaitLeader(restored...)
	for k, v := range want {
		if got, ok := gs.Read(rl.FrontDoor(), k); !ok || got != v {
			t.Fatalf("restored %s = %.20q (found %v), want %.20q", k, got, ok, v)
		}
	}
}

// A snapshot reaped on every attempt makes Save give up after a bounded
// number of attempts, with the error that says so, and leave no file, not
// even a partial one.
func TestSaveGivesUpWhenEverySnapshotIsReaped(t *testing.T) {
	_, client, _ := reapingGroup(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	attempts := map[int]bool{}
	afterRead = func(attempt int, read int64) {
		if !attempts[attempt] && read >= raftactor.MaxSnapshotReadChunk {
			attempts[attempt] = true
			reap(t, ctx, client, fmt.Sprintf("written-in-attempt-%d", attempt))
		}
	}
	t.Cleanup(func() { afterRead = nil })
	path := filepath.Join(t.TempDir(), "orig.bak")
	_, err := Save(ctx, client, "orig", path)
	if !cluster.IsSnapshotGone(err) {
		t.Fatalf("Save with every snapshot reaped: %v", err)
	}
	if len(attempts) != SaveAttempts {
		t.Errorf("%d attempts, want %d", len(attempts), SaveAttempts)
	}
	for _, p := range []string{path, path + ".tmp"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after a failed Save: %v", p, err)
		}
	}
}

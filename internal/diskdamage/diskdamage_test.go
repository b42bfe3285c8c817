package diskdamage

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// writeLog writes n entries to a raft-wal log under dir/wal, in batches
// of one to four entries, and returns what it wrote by index.
func writeLog(t *testing.T, dir string, n int, rng *rand.Rand) map[uint64][]byte {
	t.Helper()
	w := openLog(t, dir)
	defer w.Close()
	want := map[uint64][]byte{}
	for i := uint64(1); i <= uint64(n); {
		var batch []*raft.Log
		for k := 0; k < 1+rng.Intn(4) && i <= uint64(n); k++ {
			data := []byte(fmt.Sprintf("entry-%d-%s", i, strings.Repeat("x", rng.Intn(300))))
			batch = append(batch, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data})
			want[i] = data
			i++
		}
		if err := w.StoreLogs(batch); err != nil {
			t.Fatalf("store: %v", err)
		}
	}
	return want
}

func openLog(t *testing.T, dir string) *raftwal.WAL {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := raftwal.Open(filepath.Join(dir, "wal"), raftwal.WithMetaStore(&metadb.BoltMetaDB{}), raftwal.WithLogger(hclog.NewNullLogger()))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return w
}

// A torn tail is a write that never finished: raft-wal rolls it back on
// open, and every entry written before the crash is still there, whole.
// Tearing into what was written (the old TornTail cut within the last
// 8 KiB) loses entries that raft-wal had synced, which this test catches.
func TestTornTailKeepsEveryWrittenEntry(t *testing.T) {
	torn := 0
	for seed := int64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			dir := t.TempDir()
			want := writeLog(t, dir, 20+rng.Intn(60), rng)
			d, err := TornTail(dir, rng)
			if err != nil {
				t.Fatalf("tear: %v", err)
			}
			if strings.HasPrefix(d.What, "torn write") {
				torn++
			}
			w := openLog(t, dir)
			defer w.Close()
			last, err := w.LastIndex()
			if err != nil {
				t.Fatal(err)
			}
			if last != uint64(len(want)) {
				t.Fatalf("after %s: last index %d, want %d", d, last, len(want))
			}
			for i, data := range want {
				var l raft.Log
				if err := w.GetLog(i, &l); err != nil || !bytes.Equal(l.Data, data) {
					t.Fatalf("after %s: entry %d: %v, %q", d, i, err, l.Data)
				}
			}
			// The log takes appends after the rolled-back tail.
			next := uint64(len(want)) + 1
			if err := w.StoreLogs([]*raft.Log{{Index: next, Term: 1, Data: []byte("after")}}); err != nil {
				t.Fatalf("after %s: append: %v", d, err)
			}
		})
	}
	if torn == 0 {
		t.Fatal("no seed drew a torn write: the test checked garbage only")
	}
}

func TestLastBatchFindsTheFinalCommit(t *testing.T) {
	dir := t.TempDir()
	w := openLog(t, dir)
	for i := uint64(1); i <= 3; i++ {
		if err := w.StoreLogs([]*raft.Log{{Index: i, Term: 1, Data: []byte(fmt.Sprint("e", i))}}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	segs, _ := Segments(dir)
	b := mustRead(t, segs[len(segs)-1])
	batch, end, ok := lastBatch(b)
	if !ok {
		t.Fatal("no batch found")
	}
	if batch[len(batch)-frameHeaderLen] != frameCommit || batch[0] != frameEntry {
		t.Fatalf("batch does not run from an entry frame to a commit frame: %x", batch)
	}
	if !bytes.Contains(batch, []byte("e3")) || bytes.Contains(batch, []byte("e2")) {
		t.Fatalf("batch is not the last one: %q", batch)
	}
	if n, _ := Written(segs[len(segs)-1]); n != end {
		t.Fatalf("batch ends at %d, segment written to %d", end, n)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

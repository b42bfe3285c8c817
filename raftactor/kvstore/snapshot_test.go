package kvstore_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/protoraft/protoraft/raftactor/kvstore"
)

var update = flag.Bool("update", false, "rewrite testdata/snapshot-v1.golden from goldenStore (only when deliberately adding a format)")

const goldenV1 = "testdata/snapshot-v1.golden"

func snapshotBytes(t testing.TB, s *kvstore.Store) []byte {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var buf bytes.Buffer
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func restored(t testing.TB, b []byte) *kvstore.Store {
	t.Helper()
	s := kvstore.New()
	if err := s.Restore(bytes.NewReader(b)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return s
}

// sampleStore holds a deleted key, an empty value, a binary key and a
// rewritten key, so a snapshot exercises each of them.
func sampleStore(t testing.TB) *kvstore.Store {
	s := kvstore.New()
	for i, cmd := range [][]byte{
		kvstore.Put("config/b", []byte("2")),
		kvstore.Put("config/a", []byte("1")),
		kvstore.Put("gone", []byte("x")),
		kvstore.PutIfAbsent("lock", []byte("owner")),
		kvstore.Put("empty", nil),
		kvstore.Delete("gone"),
		kvstore.CompareAndSet("config/a", []byte("1"), []byte("one")),
		kvstore.Put("bin\x00\xff", []byte{0, 1, 2}),
	} {
		apply(t, s, uint64(100+i), cmd)
	}
	return s
}

func TestSnapshotDeterministic(t *testing.T) {
	a, b := sampleStore(t), sampleStore(t)
	sa, sb := snapshotBytes(t, a), snapshotBytes(t, b)
	if !bytes.Equal(sa, sb) {
		t.Fatal("two stores fed the same commands wrote different snapshots")
	}
	// A restored store writes the very same bytes again.
	if again := snapshotBytes(t, restored(t, sa)); !bytes.Equal(sa, again) {
		t.Fatal("snapshot of a restored store differs from the original")
	}
}

func TestSnapshotIsPointInTime(t *testing.T) {
	s := sampleStore(t)
	want := snapshotBytes(t, s)

	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	apply(t, s, 200, kvstore.Put("config/a", []byte("changed")))
	apply(t, s, 201, kvstore.Delete("lock"))
	apply(t, s, 202, kvstore.Put("new", []byte("n")))

	var buf bytes.Buffer
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatal("snapshot reflects writes applied after it was taken")
	}
	old := restored(t, buf.Bytes())
	wantValue(t, old, "config/a", "one", 106)
	wantValue(t, old, "lock", "owner", 103)
	wantAbsent(t, old, "new")
}

func TestRestoreRoundTripReplacesState(t *testing.T) {
	src := sampleStore(t)
	dst := kvstore.New()
	apply(t, dst, 1, kvstore.Put("stale", []byte("s")))
	apply(t, dst, 2, kvstore.Put("config/a", []byte("old")))
	if err := dst.Restore(bytes.NewReader(snapshotBytes(t, src))); err != nil {
		t.Fatal(err)
	}
	wantAbsent(t, dst, "stale")
	wantAbsent(t, dst, "gone")
	wantValue(t, dst, "config/a", "one", 106)
	wantValue(t, dst, "config/b", "2", 100)
	wantValue(t, dst, "empty", "", 104)
	wantValue(t, dst, "bin\x00\xff", "\x00\x01\x02", 107)
	if dst.Len() != src.Len() {
		t.Fatalf("Len = %d, want %d", dst.Len(), src.Len())
	}

	// An empty store round-trips too.
	if s := restored(t, snapshotBytes(t, kvstore.New())); s.Len() != 0 {
		t.Fatalf("empty snapshot restored %d keys", s.Len())
	}
}

func TestRestoreRejects(t *testing.T) {
	good := snapshotBytes(t, sampleStore(t))
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }

	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, kvstore.ErrTruncated},
		{"garbage", []byte("this is not a snapshot at all"), kvstore.ErrNotSnapshot},
		{"short garbage", []byte("xy"), kvstore.ErrNotSnapshot},
		{"unknown version", mutate(func(b []byte) []byte { b[11] = 2; return b }), kvstore.ErrUnsupportedVersion},
		{"header only", good[:12], kvstore.ErrTruncated},
		{"no checksum", good[:len(good)-4], kvstore.ErrTruncated},
		{"flipped value byte", mutate(func(b []byte) []byte { b[len(b)-20] ^= 0x40; return b }), kvstore.ErrCorrupt},
		{"bad checksum", mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), kvstore.ErrCorrupt},
		{"trailing data", append(append([]byte(nil), good...), 0), kvstore.ErrCorrupt},
		{"huge record length", append(append([]byte(nil), good[:12]...), 0xff, 0xff, 0xff, 0xff, 0x0f), kvstore.ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sampleStore(t)
			before := snapshotBytes(t, s)
			err := s.Restore(bytes.NewReader(tt.data))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Restore = %v, want %v", err, tt.want)
			}
			if !bytes.Equal(before, snapshotBytes(t, s)) {
				t.Fatal("failed Restore changed the state")
			}
		})
	}

	// Cutting the stream anywhere must be noticed, including exactly
	// between two records where every prefix still parses.
	for n := 0; n < len(good); n++ {
		if err := kvstore.New().Restore(bytes.NewReader(good[:n])); !errors.Is(err, kvstore.ErrTruncated) {
			t.Fatalf("truncated to %d of %d bytes: Restore = %v, want ErrTruncated", n, len(good), err)
		}
	}
}

// TestGoldenSnapshotV1 restores a snapshot written by the first release of
// format 1. If it fails after a change, the change broke snapshots already on
// disk: add a new format version instead and keep reading this one.
func TestGoldenSnapshotV1(t *testing.T) {
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenV1), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenV1, snapshotBytes(t, sampleStore(t)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(goldenV1)
	if err != nil {
		t.Fatalf("%v (create it with go test -run TestGoldenSnapshotV1 -update)", err)
	}
	s := restored(t, golden)
	wantValue(t, s, "config/a", "one", 106)
	wantValue(t, s, "config/b", "2", 100)
	wantValue(t, s, "lock", "owner", 103)
	wantValue(t, s, "empty", "", 104)
	wantValue(t, s, "bin\x00\xff", "\x00\x01\x02", 107)
	wantAbsent(t, s, "gone")
	if s.Len() != 5 {
		t.Fatalf("Len = %d, want 5", s.Len())
	}
	// The writer must still produce version 1 byte for byte; if it does
	// not, its output is a new format and needs a new version number.
	if got := snapshotBytes(t, sampleStore(t)); !bytes.Equal(got, golden) {
		t.Fatal("snapshot writer output changed without a format version bump")
	}
}

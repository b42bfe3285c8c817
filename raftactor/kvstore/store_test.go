package kvstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

func apply(t testing.TB, s *kvstore.Store, index uint64, cmd []byte) *kvstore.Result {
	t.Helper()
	res, err := kvstore.DecodeResult(s.Apply(index, cmd))
	if err != nil {
		t.Fatalf("Apply(%d) returned undecodable result: %v", index, err)
	}
	return res
}

func get(t testing.TB, s *kvstore.Store, key string) *kvstore.QueryResult {
	t.Helper()
	b, err := s.Query(kvstore.Get(key))
	if err != nil {
		t.Fatalf("Query(Get %q): %v", key, err)
	}
	res, err := kvstore.DecodeQueryResult(b)
	if err != nil {
		t.Fatalf("DecodeQueryResult: %v", err)
	}
	return res
}

func wantValue(t testing.TB, s *kvstore.Store, key, value string, revision uint64) {
	t.Helper()
	res := get(t, s, key)
	if !res.Found || string(res.Value) != value || res.Revision != revision {
		t.Fatalf("Get(%q) = found %v value %q rev %d, want %q rev %d", key, res.Found, res.Value, res.Revision, value, revision)
	}
}

func wantAbsent(t testing.TB, s *kvstore.Store, key string) {
	t.Helper()
	if res := get(t, s, key); res.Found || len(res.Value) != 0 || res.Revision != 0 {
		t.Fatalf("Get(%q) = found %v value %q rev %d, want absent", key, res.Found, res.Value, res.Revision)
	}
}

func TestPutGetDelete(t *testing.T) {
	s := kvstore.New()
	wantAbsent(t, s, "a")

	res := apply(t, s, 1, kvstore.Put("a", []byte("one")))
	if !res.Ok || res.Found || len(res.Value) != 0 || res.Revision != 1 || res.Error != "" {
		t.Fatalf("first put: %v", res)
	}
	wantValue(t, s, "a", "one", 1)

	res = apply(t, s, 2, kvstore.Put("a", []byte("two")))
	if !res.Ok || !res.Found || string(res.Value) != "one" || res.Revision != 2 {
		t.Fatalf("overwrite: %v", res)
	}
	wantValue(t, s, "a", "two", 2)

	// An empty value is a value, not a deletion.
	apply(t, s, 3, kvstore.Put("empty", nil))
	wantValue(t, s, "empty", "", 3)

	res = apply(t, s, 4, kvstore.Delete("a"))
	if !res.Ok || !res.Found || string(res.Value) != "two" || res.Revision != 4 {
		t.Fatalf("delete: %v", res)
	}
	wantAbsent(t, s, "a")

	res = apply(t, s, 5, kvstore.Delete("a"))
	if !res.Ok || res.Found || res.Revision != 0 || res.Error != "" {
		t.Fatalf("delete of absent key should succeed and change nothing: %v", res)
	}
	if s.Len() != 1 {
		t.Fatalf("Len = %d, want 1", s.Len())
	}
}

func TestCompareAndSet(t *testing.T) {
	s := kvstore.New()

	res := apply(t, s, 10, kvstore.PutIfAbsent("lock", []byte("owner-1")))
	if !res.Ok || res.Found || res.Revision != 10 {
		t.Fatalf("PutIfAbsent on absent key: %v", res)
	}
	wantValue(t, s, "lock", "owner-1", 10)

	res = apply(t, s, 11, kvstore.PutIfAbsent("lock", []byte("owner-2")))
	if res.Ok || !res.Found || string(res.Value) != "owner-1" || res.Revision != 10 || res.Error != "" {
		t.Fatalf("PutIfAbsent on present key must fail with the current value: %v", res)
	}
	wantValue(t, s, "lock", "owner-1", 10)

	res = apply(t, s, 12, kvstore.CompareAndSet("lock", []byte("owner-2"), []byte("owner-3")))
	if res.Ok || !res.Found || string(res.Value) != "owner-1" || res.Revision != 10 || res.Error != "" {
		t.Fatalf("CAS mismatch: %v", res)
	}
	wantValue(t, s, "lock", "owner-1", 10)

	res = apply(t, s, 13, kvstore.CompareAndSet("lock", []byte("owner-1"), []byte("owner-2")))
	if !res.Ok || !res.Found || string(res.Value) != "owner-1" || res.Revision != 13 {
		t.Fatalf("CAS match: %v", res)
	}
	wantValue(t, s, "lock", "owner-2", 13)

	// Expecting an empty value is not expecting absence.
	res = apply(t, s, 14, kvstore.CompareAndSet("new", nil, []byte("x")))
	if res.Ok || res.Found {
		t.Fatalf("CAS expecting empty value on absent key must fail: %v", res)
	}
	wantAbsent(t, s, "new")
	apply(t, s, 15, kvstore.Put("new", []byte{}))
	if res = apply(t, s, 16, kvstore.CompareAndSet("new", []byte{}, []byte("x"))); !res.Ok {
		t.Fatalf("CAS expecting empty value on empty key: %v", res)
	}
	wantValue(t, s, "new", "x", 16)
}

func TestLimits(t *testing.T) {
	s := kvstore.New()
	maxKey := strings.Repeat("k", kvstore.MaxKeySize)
	maxValue := make([]byte, kvstore.MaxValueSize)
	tests := []struct {
		name string
		cmd  []byte
		ok   bool
	}{
		{"empty key put", kvstore.Put("", []byte("v")), false},
		{"empty key delete", kvstore.Delete(""), false},
		{"empty key cas", kvstore.PutIfAbsent("", nil), false},
		{"key too large", kvstore.Put(maxKey+"k", nil), false},
		{"value too large", kvstore.Put("k", append(maxValue, 0)), false},
		{"cas value too large", kvstore.PutIfAbsent("k", append(maxValue, 0)), false},
		{"largest key", kvstore.Put(maxKey, nil), true},
		{"largest value", kvstore.Put("k", maxValue), true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Len()
			res := apply(t, s, uint64(i+1), tt.cmd)
			if res.Ok != tt.ok || (res.Error == "") != tt.ok {
				t.Fatalf("ok = %v error = %q, want ok %v", res.Ok, res.Error, tt.ok)
			}
			if !tt.ok && s.Len() != before {
				t.Fatalf("refused command changed the state")
			}
		})
	}
}

// The largest Put kvstore takes, a key of MaxKeySize and a value of
// MaxValueSize, fits in a command of raftactor's default size bound, so the
// documented maximum value is accepted by a node configured by default.
func TestLargestPutFitsDefaultCommandSize(t *testing.T) {
	cmd := kvstore.Put(strings.Repeat("k", kvstore.MaxKeySize), make([]byte, kvstore.MaxValueSize))
	if len(cmd) > raftactor.DefaultMaxCommandSize {
		t.Fatalf("the largest Put is %d bytes, over raftactor.DefaultMaxCommandSize %d", len(cmd), raftactor.DefaultMaxCommandSize)
	}
}

func TestMalformedCommands(t *testing.T) {
	cmds := map[string][]byte{
		"garbage":        {0xff, 0xff, 0xff},
		"truncated":      kvstore.Put("key", []byte("value"))[:5],
		"no op":          {},
		"unknown field":  {0xfa, 0x06, 0x01, 'x'}, // field 111, bytes "x": an op from a later release
		"wrong wiretype": {0x08, 0x01},            // field 1 as varint
	}
	for name, cmd := range cmds {
		t.Run(name, func(t *testing.T) {
			s := kvstore.New()
			out := s.Apply(1, cmd)
			res, err := kvstore.DecodeResult(out)
			if err != nil {
				t.Fatal(err)
			}
			if res.Ok || res.Error == "" || s.Len() != 0 {
				t.Fatalf("result %v, len %d: want refused with error text and no change", res, s.Len())
			}
			// Another node must produce exactly the same bytes.
			if other := kvstore.New().Apply(1, cmd); !bytes.Equal(out, other) {
				t.Fatalf("results differ between stores: %x vs %x", out, other)
			}
		})
	}
}

func TestList(t *testing.T) {
	s := kvstore.New()
	for i, k := range []string{"b/2", "a/1", "b/1", "b/3", "c"} {
		apply(t, s, uint64(i+1), kvstore.Put(k, []byte(k)))
	}
	list := func(prefix string, limit int) *kvstore.QueryResult {
		b, err := s.Query(kvstore.List(prefix, limit))
		if err != nil {
			t.Fatal(err)
		}
		res, err := kvstore.DecodeQueryResult(b)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	keys := func(res *kvstore.QueryResult) string {
		var ks []string
		for _, e := range res.Entries {
			ks = append(ks, string(e.Key))
		}
		return strings.Join(ks, ",")
	}
	if res := list("b/", 0); keys(res) != "b/1,b/2,b/3" || res.More {
		t.Fatalf("List(b/) = %s more %v", keys(res), res.More)
	}
	if res := list("b/", 2); keys(res) != "b/1,b/2" || !res.More {
		t.Fatalf("List(b/, 2) = %s more %v", keys(res), res.More)
	}
	if res := list("", 0); keys(res) != "a/1,b/1,b/2,b/3,c" || res.Entries[0].Revision != 2 {
		t.Fatalf("List() = %s", keys(res))
	}
	if res := list("zz", 0); len(res.Entries) != 0 || res.More {
		t.Fatalf("List(zz) = %s", keys(res))
	}
}

func TestQueryErrors(t *testing.T) {
	s := kvstore.New()
	for name, q := range map[string][]byte{
		"garbage":   {0xff, 0xff},
		"no query":  {},
		"empty key": kvstore.Get(""),
		"long key":  kvstore.Get(strings.Repeat("k", kvstore.MaxKeySize+1)),
	} {
		if _, err := s.Query(q); !errors.Is(err, kvstore.ErrInvalidQuery) {
			t.Errorf("%s: err = %v, want ErrInvalidQuery", name, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	if _, err := kvstore.DecodeResult([]byte{0xff}); err == nil {
		t.Error("DecodeResult accepted garbage")
	}
	if _, err := kvstore.DecodeQueryResult([]byte{0xff}); err == nil {
		t.Error("DecodeQueryResult accepted garbage")
	}
}

func FuzzApply(f *testing.F) {
	f.Add(kvstore.Put("k", []byte("v")))
	f.Add(kvstore.Delete("k"))
	f.Add(kvstore.PutIfAbsent("k", []byte("v")))
	f.Add(kvstore.CompareAndSet("k", []byte("v"), []byte("w")))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x0a, 0x80, 0x80, 0x80, 0x80, 0x10})
	f.Fuzz(func(t *testing.T, cmd []byte) {
		a, b := kvstore.New(), kvstore.New()
		apply(t, a, 1, kvstore.Put("k", []byte("v")))
		apply(t, b, 1, kvstore.Put("k", []byte("v")))
		before := snapshotBytes(t, a)
		ra, rb := a.Apply(2, cmd), b.Apply(2, cmd)
		if !bytes.Equal(ra, rb) {
			t.Fatalf("same command, different results: %x vs %x", ra, rb)
		}
		res, err := kvstore.DecodeResult(ra)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Ok && !bytes.Equal(before, snapshotBytes(t, a)) {
			t.Fatalf("failed command changed the state: %v", res)
		}
		if !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
			t.Fatal("same command, different states")
		}
	})
}

func BenchmarkApplyPut(b *testing.B) {
	cmds := make([][]byte, 1024)
	for i := range cmds {
		cmds[i] = kvstore.Put(fmt.Sprintf("key-%04d", i), bytes.Repeat([]byte{'v'}, 128))
	}
	s := kvstore.New()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Apply(uint64(i+1), cmds[i%len(cmds)])
	}
}

package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/raftactor"
)

// format1File is a backup written by this build's Save from a running
// three-process kv group (samples/kv) holding k1=v1, k2=v2, k3=v3. Every
// later build must read it: the test below keeps the promise.
const format1File = "testdata/kv-format1.bak"

// restoreInto builds the data directories of a new local group from f and
// starts it, returning its nodes.
func restoreInto(t *testing.T, gs *grouptest.Groups, f *File, group string, ids ...string) []*cluster.Group {
	t.Helper()
	members := grouptest.Peers(ids...)
	var nodes []Node
	var cfgs []cluster.Config
	for _, p := range members {
		cfg := gs.Config(group, p.ID, nil)
		cfgs = append(cfgs, cfg)
		nodes = append(nodes, Node{DataDir: cfg.Node.DataDir, Peer: p})
	}
	if err := Restore(f, group, members, nodes); err != nil {
		t.Fatal(err)
	}
	var groups []*cluster.Group
	for _, cfg := range cfgs {
		// The Bootstrap of a node whose directory holds state is ignored:
		// starting a restored node with its usual command line is safe.
		cfg.Bootstrap = members
		groups = append(groups, gs.Spawn(cfg))
	}
	return groups
}

func TestFormat1FileIsReadAndRestored(t *testing.T) {
	f, err := Open(format1File)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := f.Header
	if f.FormatVersion != 1 || h.Group != "kv" || h.Index != 8 || h.Term != 2 || h.Size != 170 || len(h.Members) != 3 || h.Node.ID != "n1" {
		t.Fatalf("header of %s: version %d, %+v", format1File, f.FormatVersion, h)
	}
	if got := fmt.Sprintf("%x", f.SHA256); got != "7b0e89027a3d93ad0f545e57d225722e8b3974ddfe54496671379ecab3f29690" {
		t.Errorf("checksum %s", got)
	}
	gs := grouptest.NewGroups(t)
	groups := restoreInto(t, gs, f, "restored", "r1", "r2", "r3")
	leader := gs.WaitLeader(groups...)
	for i := 1; i <= 3; i++ {
		key, want := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		if got, ok := gs.Read(leader.FrontDoor(), key); !ok || got != want {
			t.Errorf("%s = %q (found %v), want %q", key, got, ok, want)
		}
	}
	// The restored group takes writes: it is a group, not a copy.
	gs.Put(leader.FrontDoor(), "k4", "v4")
	for _, g := range groups {
		gs.WaitValue(g.FrontDoor(), "k4", "v4")
	}
}

// A backup of a running group, restored into a new group of another name
// and size, holds every write acknowledged before the backup.
func TestSaveAndRestoreInProcess(t *testing.T) {
	gs := grouptest.NewGroups(t)
	_, groups := gs.SpawnVoters("orig", 3, nil)
	leader := gs.WaitLeader(groups...)
	client := cluster.NewClient(gs.System, "orig", grouptest.Peers("n1", "n2", "n3"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := map[string]string{}
	for i := range 200 {
		k, v := fmt.Sprintf("key-%03d", i), fmt.Sprintf("value-%d", i)
		gs.Put(leader.FrontDoor(), k, v)
		want[k] = v
	}
	path := filepath.Join(t.TempDir(), "orig.bak")
	h, err := Save(ctx, client, "orig", path)
	if err != nil {
		t.Fatal(err)
	}
	if h.Group != "orig" || h.Index == 0 || len(h.Members) != 3 {
		t.Fatalf("header %+v", h)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary file is left: %v", err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	restored := restoreInto(t, gs, f, "copy", "c1", "c2")
	rl := gs.WaitLeader(restored...)
	for k, v := range want {
		if got, ok := gs.Read(rl.FrontDoor(), k); !ok || got != v {
			t.Fatalf("%s = %q (found %v), want %q", k, got, ok, v)
		}
	}
	// A restore never writes over a node.
	err = Restore(f, "copy", grouptest.Peers("c1", "c2"), []Node{{DataDir: gs.Config("copy", "c1", nil).Node.DataDir, Peer: grouptest.Peers("c1")[0]}})
	if !errors.Is(err, raftactor.ErrDataDirHoldsState) {
		t.Errorf("restore over a node's directory: %v", err)
	}
}

// sample writes a small backup and returns its bytes.
func sample(t *testing.T) []byte {
	t.Helper()
	snap := bytes.Repeat([]byte("snapshot"), 100)
	var buf bytes.Buffer
	h := Header{Group: "g", Index: 10, Term: 3, Size: uint64(len(snap)), SnapshotID: "3-10-1", Members: []Member{{ID: "n1", Address: "localhost:1/x"}}}
	if err := Write(&buf, h, bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func openBytes(t *testing.T, b []byte) (*File, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.bak")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if f != nil {
		t.Cleanup(func() { f.Close() })
	}
	return f, err
}

func TestWriteThenOpen(t *testing.T) {
	b := sample(t)
	f, err := openBytes(t, b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f.Snapshot())
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte("snapshot"), 100)) {
		t.Fatalf("snapshot read back: %d bytes, %v", len(got), err)
	}
	if sum := sha256.Sum256(b[:len(b)-sha256.Size]); sum != f.SHA256 {
		t.Errorf("the checksum is not the SHA-256 of the content")
	}
	// Write refuses a snapshot that is not the size its header says.
	if err := Write(io.Discard, Header{Size: 5}, bytes.NewReader([]byte("abc"))); err == nil {
		t.Error("Write took 3 bytes for a snapshot of 5")
	}
}

// Every damage is refused with ErrFormat, and none panics: each byte
// flipped, every length cut, a newer version, a huge header length.
func TestDamagedFilesAreRefused(t *testing.T) {
	b := sample(t)
	for i := range b {
		d := bytes.Clone(b)
		d[i] ^= 0x20
		if _, err := openBytes(t, d); !errors.Is(err, ErrFormat) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	for _, n := range []int{0, 7, 16, 40, len(b) / 2, len(b) - 1} {
		if _, err := openBytes(t, b[:n]); !errors.Is(err, ErrFormat) {
			t.Fatalf("cut to %d bytes: %v", n, err)
		}
	}
	d := bytes.Clone(b)
	binary.BigEndian.PutUint32(d[8:], FormatVersion+1)
	if _, err := openBytes(t, d); !errors.Is(err, ErrFormat) {
		t.Errorf("a newer version: %v", err)
	}
	binary.BigEndian.PutUint32(d[8:], FormatVersion)
	binary.BigEndian.PutUint32(d[12:], 1<<31)
	if _, err := openBytes(t, d); !errors.Is(err, ErrFormat) {
		t.Errorf("a huge header length: %v", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		d := bytes.Clone(b)
		for range 1 + rng.IntN(8) {
			d[rng.IntN(len(d))] = byte(rng.Uint32())
		}
		if _, err := openBytes(t, d); err == nil && !bytes.Equal(d, b) {
			t.Fatal("a randomly damaged file was accepted")
		}
	}
}

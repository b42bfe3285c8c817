package raftactor_test

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
)

var updateFixtures = flag.Bool("update", false, "rewrite testdata fixtures (only when the data format changes on purpose)")

// fixtureDir is a node's data directory written by the first release
// (format 1): a snapshot and log entries after it. Every later build must
// open it and find every write.
const fixtureDir = "testdata/datadir-v1"

const fixtureKeys = 40

func TestDataDirFromEarlierReleaseOpens(t *testing.T) {
	if *updateFixtures {
		writeFixture(t)
	}
	c := grouptest.New(t, 0, nil)
	c.Add("n1", nil)
	copyDir(t, fixtureDir, c.Node("n1").Config.DataDir)
	c.Start("n1")
	leader := c.WaitLeader()
	for i := 0; i < fixtureKeys; i++ {
		rr, qr := c.Get(leader, fmt.Sprintf("k%d", i), actors.Consistency_LINEARIZABLE)
		if rr.Error.Err() != nil || string(qr.GetValue()) != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d from the format-1 directory: %v %v", i, rr.Error, qr)
		}
	}
	if st := c.Status(leader); st.LastSnapshotIndex == 0 {
		t.Fatalf("the fixture's snapshot was not found: %+v", st)
	}
	c.Put("written-by-this-build", "ok")
}

// writeFixture makes the fixture with this build: run it only when the
// format changes on purpose, and keep the old fixture as a new test.
func writeFixture(t *testing.T) {
	c := grouptest.New(t, 1, nil)
	c.WaitLeader()
	for i := 0; i < fixtureKeys/2; i++ {
		c.Put(fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	sr := c.MustAsk("n1", &actors.SnapshotRequest{Meta: grouptest.Meta(5e9)}).(*actors.SnapshotResponse)
	if sr.Error.Err() != nil {
		t.Fatal(sr.Error)
	}
	for i := fixtureKeys / 2; i < fixtureKeys; i++ {
		c.Put(fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	c.Stop("n1")
	if err := os.RemoveAll(fixtureDir); err != nil {
		t.Fatal(err)
	}
	copyDir(t, c.Node("n1").Config.DataDir, fixtureDir)
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", from, to, err)
	}
}

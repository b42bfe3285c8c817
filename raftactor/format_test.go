package raftactor_test

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/raftactor"
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
	c := newTestCluster(t, 0)
	c.add("n1", nil)
	copyDir(t, fixtureDir, c.nodes["n1"].cfg.DataDir)
	c.start("n1")
	leader := c.waitLeader()
	for i := 0; i < fixtureKeys; i++ {
		rr, qr := c.get(leader, fmt.Sprintf("k%d", i), actors.Consistency_LINEARIZABLE)
		if rr.Error.Err() != nil || string(qr.GetValue()) != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d from the format-1 directory: %v %v", i, rr.Error, qr)
		}
	}
	if st := c.status(leader); st.LastSnapshotIndex == 0 {
		t.Fatalf("the fixture's snapshot was not found: %+v", st)
	}
	c.put("written-by-this-build", "ok")
}

// writeFixture makes the fixture with this build: run it only when the
// format changes on purpose, and keep the old fixture as a new test.
func writeFixture(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitLeader()
	for i := 0; i < fixtureKeys/2; i++ {
		c.put(fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	sr := c.mustAsk("n1", &actors.SnapshotRequest{Meta: meta(5e9)}).(*actors.SnapshotResponse)
	if sr.Error.Err() != nil {
		t.Fatal(sr.Error)
	}
	for i := fixtureKeys / 2; i < fixtureKeys; i++ {
		c.put(fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	c.stop("n1")
	if err := os.RemoveAll(fixtureDir); err != nil {
		t.Fatal(err)
	}
	copyDir(t, c.nodes["n1"].cfg.DataDir, fixtureDir)
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

var _ = raftactor.FormatVersion

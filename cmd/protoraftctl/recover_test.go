//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDisasterRecovery is the runbook of docs/operations.md ("Disaster
// recovery") on processes: of three nodes, two are killed with SIGKILL and
// their data directories deleted, a majority lost for good; the survivor,
// stopped, is turned into a group of one with protoraftctl recover, starts
// with its usual command line as the only voter with every write it had,
// takes writes, and the group grows back to three with two fresh nodes
// that join. Every acknowledged write is then on every node.
func TestDisasterRecovery(t *testing.T) {
	g := startGroup(t, t.TempDir(), []string{"n1", "n2", "n3"}, "")
	waitHealthy(t, g, 3, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	acked := map[string]string{}
	for i := range 30 {
		k, v := fmt.Sprintf("before-%02d", i), fmt.Sprintf("v%d", i)
		put(t, g.Node("n1"), k, v, deadline)
		acked[k] = v
	}
	// Everything acknowledged is on the survivor too before the disaster
	// (an acknowledged write is only on a majority: the runbook says to
	// pick the survivor with the highest last index).
	waitKeys(t, g.Node("n3"), acked, deadline)

	for _, id := range []string{"n1", "n2"} {
		n := g.Node(id)
		n.Kill()
		if err := os.RemoveAll(n.DataDir()); err != nil {
			t.Fatal(err)
		}
	}
	survivor := g.Node("n3")
	// Recovery is offline: refused while the node runs.
	if r := mustCtl(t, nil, exitRefused, "recover", "--data-dir", survivor.DataDir(), "--id", "n3", "--as-single-voter"); !strings.Contains(r.stderr, "in use") {
		t.Errorf("recover of a running node: %s", r.stderr)
	}
	survivor.Kill()
	mustCtl(t, nil, exitUsage, "recover", "--data-dir", survivor.DataDir(), "--id", "n3") // no --as-single-voter
	mustCtl(t, nil, exitRefused, "recover", "--data-dir", survivor.DataDir(), "--id", "n7", "--as-single-voter")
	var info map[string]any
	if err := json.Unmarshal([]byte(mustCtl(t, nil, exitOK, "inspect", "--json", "--data-dir", survivor.DataDir()).stdout), &info); err != nil || info["recovery"] != nil {
		t.Fatalf("inspect before the recovery: %v (%v)", info, err)
	}
	r := mustCtl(t, nil, exitOK, "recover", "--data-dir", survivor.DataDir(), "--id", "n3", "--as-single-voter")
	t.Log(strings.TrimSpace(r.stdout))
	if r := mustCtl(t, nil, exitOK, "inspect", "--data-dir", survivor.DataDir()); !strings.Contains(r.stdout, "recovery pending: node n3") {
		t.Errorf("inspect after the request:\n%s", r.stdout)
	}

	// The survivor starts as it always did (--peers is ignored: it has
	// state) and is a group of one.
	if err := survivor.Start(); err != nil {
		t.Fatal(err)
	}
	gs := waitHealthy(t, g, 1, 30*time.Second)
	if gs.Leader != "n3" {
		t.Fatalf("after the recovery: %+v", gs)
	}
	deadline = time.Now().Add(30 * time.Second)
	waitKeys(t, survivor, acked, deadline)
	for i := range 10 {
		k, v := fmt.Sprintf("alone-%02d", i), fmt.Sprintf("w%d", i)
		put(t, survivor, k, v, deadline)
		acked[k] = v
	}

	// Two fresh nodes join: the group is three again.
	for _, id := range []string{"n1", "n2"} {
		n := g.Node(id)
		n.SetJoin(true)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	gs = waitHealthy(t, g, 3, 60*time.Second)
	for _, m := range gs.Members {
		if m.Suffrage != "VOTER" || m.FailureTolerance != 1 {
			t.Errorf("after the joins: %+v", m)
		}
	}
	deadline = time.Now().Add(30 * time.Second)
	for i := range 10 {
		k, v := fmt.Sprintf("after-%02d", i), fmt.Sprintf("x%d", i)
		put(t, g.Node("n1"), k, v, deadline)
		acked[k] = v
	}
	for _, n := range g.Nodes() {
		waitKeys(t, n, acked, deadline)
	}
	if exits := g.Exits(); len(exits) > 0 {
		t.Errorf("processes exited on their own: %v", exits)
	}
}

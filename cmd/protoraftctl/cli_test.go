//go:build unix

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCommandsAgainstProcesses runs every online command of protoraftctl
// against three kv processes behind mutual TLS, as an operator would, and
// checks what it printed and its exit codes.
func TestCommandsAgainstProcesses(t *testing.T) {
	tmp := t.TempDir()
	g := startGroup(t, tmp, []string{"n1", "n2", "n3"}, "")
	gs := waitHealthy(t, g, 3, 30*time.Second)
	if gs.Leader == "" || gs.Group != "kv" {
		t.Fatalf("status: %+v", gs)
	}
	for _, m := range gs.Members {
		if m.Suffrage != "VOTER" || m.Term == 0 || m.CommitIndex == 0 || m.FailureTolerance != 1 {
			t.Errorf("status of %s: %+v", m.ID, m)
		}
	}
	// The table names every member and the leader.
	table := mustCtl(t, g, exitOK, "status").stdout
	if !strings.Contains(table, "leader "+gs.Leader) || strings.Count(table, "HEALTHY(100)") != 3 {
		t.Errorf("status table:\n%s", table)
	}

	// Exit codes: usage, unauthorized, refused.
	if r := mustCtl(t, g, exitUsage, "members", "add", "n4"); !strings.Contains(r.stderr, "takes 2 argument") {
		t.Errorf("usage error: %q", r.stderr)
	}
	mustCtl(t, nil, exitUsage, "status") // no --peers
	bogus := filepath.Join(tmp, "bogus.token")
	if err := os.WriteFile(bogus, []byte("not-the-admin-token-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := mustCtl(t, g, exitUnauthorized, "members", "list", "--token-file", bogus); !strings.Contains(r.stderr, "UNAUTHENTICATED") {
		t.Errorf("unauthenticated: %q", r.stderr)
	}
	node := filepath.Join(g.Secrets(), "node.token") // may join, may not snapshot
	if r := mustCtl(t, g, exitUnauthorized, "snapshot", "--token-file", node); !strings.Contains(r.stderr, "PERMISSION_DENIED") {
		t.Errorf("permission denied: %q", r.stderr)
	}
	if r := mustCtl(t, g, exitRefused, "members", "remove", "nosuch"); !strings.Contains(r.stderr, "INVALID_ARGUMENT") {
		t.Errorf("refused: %q", r.stderr)
	}
	if r := mustCtl(t, g, exitRefused, "timeouts", "set", "--heartbeat", "2s"); !strings.Contains(r.stderr, "INVALID_ARGUMENT (timeouts.election)") {
		t.Errorf("a heartbeat above the election timeout: %q", r.stderr)
	}

	// Membership: a non-voter that does not run is added (it counts toward
	// no quorum) and removed again.
	r := mustCtl(t, g, exitOK, "members", "add", "n9", "127.0.0.1:9", "--nonvoter")
	if !strings.Contains(r.stdout, "n9") || !strings.Contains(r.stdout, "NONVOTER") {
		t.Errorf("members add:\n%s", r.stdout)
	}
	mustCtl(t, g, exitOK, "members", "remove", "n9")
	var members struct {
		Members []struct{ ID string } `json:"members"`
	}
	if err := json.Unmarshal([]byte(mustCtl(t, g, exitOK, "members", "list", "--json").stdout), &members); err != nil || len(members.Members) != 3 {
		t.Errorf("members after the removal: %+v (%v)", members, err)
	}

	// Timeouts are per node: set on every member, read back from each.
	mustCtl(t, g, exitOK, "timeouts", "set", "--snapshot-threshold", "4096", "--trailing-logs", "2048")
	var timeouts []struct {
		Node   string `json:"node"`
		Answer struct {
			Timeouts struct {
				SnapshotThreshold string `json:"snapshot_threshold"`
				TrailingLogs      string `json:"trailing_logs"`
			} `json:"timeouts"`
		} `json:"answer"`
	}
	if err := json.Unmarshal([]byte(mustCtl(t, g, exitOK, "timeouts", "get", "--json").stdout), &timeouts); err != nil || len(timeouts) != 3 {
		t.Fatalf("timeouts get: %+v (%v)", timeouts, err)
	}
	for _, n := range timeouts {
		if n.Answer.Timeouts.SnapshotThreshold != "4096" || n.Answer.Timeouts.TrailingLogs != "2048" {
			t.Errorf("timeouts of %s: %+v", n.Node, n.Answer.Timeouts)
		}
	}

	// Limits: one class replaced on one node, the others untouched.
	mustCtl(t, g, exitOK, "limits", "set", "--node", "n2", "--class", "write", "--rps", "500", "--burst", "50", "--raft-backlog", "10000")
	var limits []struct {
		Node   string `json:"node"`
		Answer struct {
			Limits struct {
				Write struct {
					Rps   float64 `json:"rps"`
					Burst int     `json:"burst"`
				} `json:"write"`
				RaftBacklog string `json:"raft_backlog"`
			} `json:"limits"`
		} `json:"answer"`
	}
	if err := json.Unmarshal([]byte(mustCtl(t, g, exitOK, "limits", "get", "--json").stdout), &limits); err != nil || len(limits) != 3 {
		t.Fatalf("limits get: %+v (%v)", limits, err)
	}
	for _, n := range limits {
		l := n.Answer.Limits
		set := l.Write.Rps == 500 && l.Write.Burst == 50 && l.RaftBacklog == "10000"
		if set != (n.Node == "n2") {
			t.Errorf("limits of %s: %+v", n.Node, l)
		}
	}
	if r := mustCtl(t, g, exitOK, "limits", "stats", "--node", "n2"); !strings.Contains(r.stdout, "n2    admin") {
		t.Errorf("limits stats:\n%s", r.stdout)
	}

	// A snapshot now, on the leader and on a follower.
	if r := mustCtl(t, g, exitOK, "snapshot"); !strings.Contains(r.stdout, "snapshot of "+gs.Leader+" at index") {
		t.Errorf("snapshot: %s", r.stdout)
	}
	follower := "n1"
	if gs.Leader == "n1" {
		follower = "n2"
	}
	mustCtl(t, g, exitOK, "snapshot", "--node", follower)

	// Leadership to a named follower.
	r = mustCtl(t, g, exitOK, "leader", "transfer", "--to", follower)
	if !strings.Contains(r.stdout, "to "+follower) {
		t.Errorf("leader transfer: %s", r.stdout)
	}
	if r := mustCtl(t, g, exitOK, "leader"); !strings.HasPrefix(r.stdout, "leader "+follower) {
		t.Errorf("leader after the transfer: %s", r.stdout)
	}

	// A member down: status still prints, says so and exits 6.
	g.Node(gs.Leader).Kill()
	r = ctl(t, g, "status", "--timeout", "10s")
	if r.code != exitDegraded || !strings.Contains(r.stdout, gs.Leader) {
		t.Errorf("status with %s down: exit %d\n%s%s", gs.Leader, r.code, r.stdout, r.stderr)
	}
}

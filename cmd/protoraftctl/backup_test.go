//go:build unix

package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/proctest"
	"github.com/protoraft/protoraft/policies"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// dial connects this test process to g as protoraftctl does: its own
// remote endpoint behind the operator's certificate, the admin token.
func dial(t *testing.T, g *proctest.Group) *conn {
	t.Helper()
	cf := connFlags{peers: g.Peers(), group: "kv", secrets: g.Secrets(), bind: "127.0.0.1:0", timeout: 20 * time.Second}
	peers, err := cf.check()
	if err != nil {
		t.Fatal(err)
	}
	c, err := connect(&cf, peers, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return c
}

// leaderPeer is the group's leader as a peer.
func leaderPeer(t *testing.T, ctx context.Context, c *conn) cluster.Peer {
	t.Helper()
	lr, err := c.client.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cluster.PeerOf(lr.GetLeader().GetId(), lr.GetLeader().GetAddress())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sessionWrite sends a write of client ID id with sequence seq straight to
// the leader, as a Client retrying it would.
func sessionWrite(t *testing.T, ctx context.Context, c *conn, id string, seq uint64, open bool, command []byte) *actors.WriteResponse {
	t.Helper()
	resp, err := cluster.AskMember[*actors.WriteResponse](ctx, c.client, leaderPeer(t, ctx, c), func(m *actors.RequestMeta) actors.Request {
		m.ClientId, m.Sequence = id, seq
		m.OpenSession, m.RegisteredSession = open, !open
		return &actors.WriteRequest{Meta: m, Command: command}
	})
	if err != nil {
		t.Fatalf("write of session %s, sequence %d: %v", id, seq, err)
	}
	return resp
}

// readAs reads key through node n's HTTP API with token, returning the
// HTTP status.
func readAs(t *testing.T, n *proctest.Node, token, key string) int {
	t.Helper()
	base, _ := n.HTTP()
	req, _ := http.NewRequest(http.MethodGet, base+"/kv/"+key, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestBackupDestroyRestore is backup and restore end to end on processes:
// a secured three-process group takes writes, a policy change and a
// session's write; protoraftctl backs it up; the group and its
// directories are destroyed; protoraftctl restores the backup into the
// directories of a new group of other IDs and addresses, which starts
// with its usual command line and holds every acknowledged write, the
// committed policy (a token only the changed policy knows works) and the
// session table (the session's write, retried, is answered with its first
// result and not applied again).
func TestBackupDestroyRestore(t *testing.T) {
	tmp := t.TempDir()
	g1 := startGroup(t, filepath.Join(tmp, "g1"), []string{"n1", "n2", "n3"}, "")
	waitHealthy(t, g1, 3, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	acked := map[string]string{}
	for i := range 40 {
		k, v := "key-"+string(rune('a'+i%26))+string(rune('a'+i/26)), "value-"+time.Now().Format(time.RFC3339Nano)
		put(t, g1.Node("n1"), k, v, deadline)
		acked[k] = v
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c1 := dial(t, g1)
	// The policy gains a reader whose token the spawn policy (policy.yaml
	// of the secrets directory) does not know.
	readerToken, err := policies.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(g1.Secrets(), "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	newDoc := strings.Replace(string(doc), "principals:\n", "  reader: [read_linearizable, read_lease, read_stale]\nprincipals:\n", 1) +
		"  - name: reader\n    token_sha256: " + policies.HashToken(readerToken) + "\n    roles: [reader]\n"
	if _, err := cluster.AskMember[*actors.PolicyUpdateResponse](ctx, c1.client, leaderPeer(t, ctx, c1), func(m *actors.RequestMeta) actors.Request {
		return &actors.PolicyUpdateRequest{Meta: m, Document: []byte(newDoc)}
	}); err != nil {
		t.Fatalf("policy update: %v", err)
	}
	if code := readAs(t, g1.Node("n1"), readerToken, "key-aa"); code != http.StatusOK {
		t.Fatalf("the reader's token after the policy update: HTTP %d", code)
	}
	const session, seq = "backup-test-session", 1000
	sessionWrite(t, ctx, c1, session, seq, true, nil)
	first := sessionWrite(t, ctx, c1, session, seq, false, kvstore.Put("session-key", []byte("first")))
	acked["session-key"] = "first"

	file := filepath.Join(tmp, "kv.bak")
	r := mustCtl(t, g1, exitOK, "backup", file)
	t.Log(strings.TrimSpace(r.stdout))

	// Destroy the group: processes and data directories.
	c1.close()
	g1.Close()
	for _, n := range g1.Nodes() {
		if err := os.RemoveAll(n.DataDir()); err != nil {
			t.Fatal(err)
		}
	}

	// A new group, other IDs, other addresses, the same secrets.
	g2dir := filepath.Join(tmp, "g2")
	g2, err := proctest.NewGroup(proctest.Config{Binary: bins.kv, Dir: g2dir, IDs: []string{"m1", "m2", "m3"}, Secrets: g1.Secrets()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g2.Close()
		if t.Failed() {
			for _, n := range g2.Nodes() {
				t.Logf("---- log of %s ----\n%s", n.ID(), n.Log(40))
			}
		}
	})
	r = mustCtl(t, nil, exitOK, "restore", "--from", file, "--data-dir", g2dir, "--nodes", g2.Peers())
	t.Log(strings.TrimSpace(r.stdout))
	// Restoring again would write over the nodes: refused.
	mustCtl(t, nil, exitRefused, "restore", "--from", file, "--data-dir", g2dir, "--nodes", g2.Peers())
	if err := g2.Start(); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, g2, 3, 30*time.Second)
	deadline = time.Now().Add(30 * time.Second)
	for _, n := range g2.Nodes() {
		waitKeys(t, n, acked, deadline)
	}
	if code := readAs(t, g2.Node("m2"), readerToken, "key-aa"); code != http.StatusOK {
		t.Errorf("the reader's token on the restored group: HTTP %d; the committed policy was not restored", code)
	}
	c2 := dial(t, g2)
	again := sessionWrite(t, ctx, c2, session, seq, false, kvstore.Put("session-key", []byte("second")))
	if again.GetIndex() != first.GetIndex() {
		t.Errorf("the retried write was answered with index %d, its first answer had %d", again.GetIndex(), first.GetIndex())
	}
	rr, err := c2.client.Read(ctx, kvstore.Get("session-key"))
	if err != nil {
		t.Fatal(err)
	}
	if qr, err := kvstore.DecodeQueryResult(rr.GetResult()); err != nil || string(qr.GetValue()) != "first" {
		t.Errorf("session-key = %q (%v) after the retry: the session table was not restored", qr.GetValue(), err)
	}
}

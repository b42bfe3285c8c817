//go:build unix

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/protoraft/protoraft/policies"
)

// policy set commits a JSON document; policy get reads it back byte for
// byte from every member, linearizably, as the table, as JSON and as the
// bare document; the policy is enforced (a principal it adds gets in); a
// token without the permissions is refused both, with exit code 4 and
// PERMISSION_DENIED; a bad document is refused with its field, exit 3.
func TestPolicyGetAndSetAgainstProcesses(t *testing.T) {
	tmp := t.TempDir()
	g := startGroup(t, tmp, []string{"n1", "n2", "n3"}, "")
	waitHealthy(t, g, 3, 30*time.Second)
	secrets := g.Secrets()
	spawn, err := os.ReadFile(filepath.Join(secrets, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var before policyView
	if err := json.Unmarshal([]byte(mustCtl(t, g, exitOK, "policy", "get", "--json").stdout), &before); err != nil {
		t.Fatal(err)
	}
	if before.Source != "POLICY_SPAWN" || before.Document != string(spawn) || before.Index != 0 || len(before.Roles["admin"]) != 1 {
		t.Fatalf("policy get before any change: %+v", before)
	}

	// A new principal, auditor, that may read the policy and nothing more.
	auditorToken, err := policies.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	auditorFile := filepath.Join(tmp, "auditor.token")
	if err := os.WriteFile(auditorFile, []byte(auditorToken), 0o600); err != nil {
		t.Fatal(err)
	}
	token := func(name string) string {
		b, err := os.ReadFile(filepath.Join(secrets, name))
		if err != nil {
			t.Fatal(err)
		}
		return policies.HashToken(strings.TrimSpace(string(b)))
	}
	doc, err := json.MarshalIndent(map[string]any{
		"version": 1,
		"roles":   map[string][]string{"admin": {"*"}, "node": before.Roles["node"], "auditor": {"policy_read"}},
		"principals": []map[string]any{
			{"name": "admin", "token_sha256": token("admin.token"), "roles": []string{"admin"}},
			{"name": "nodes", "token_sha256": token("node.token"), "roles": []string{"node"}},
			{"name": "auditor", "token_sha256": policies.HashToken(auditorToken), "roles": []string{"auditor"}},
		},
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(tmp, "policy.json")
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	var set struct {
		Index string `json:"index"`
	}
	if err := json.Unmarshal([]byte(mustCtl(t, g, exitOK, "policy", "set", "--file", file, "--json").stdout), &set); err != nil || set.Index == "" {
		t.Fatalf("policy set --json: %+v (%v)", set, err)
	}

	// Every member answers with the document as it was set, at once: the
	// read-back is linearizable, so no member may lag behind the change.
	for _, id := range []string{"n1", "n2", "n3"} {
		var v policyView
		if err := json.Unmarshal([]byte(mustCtl(t, g, exitOK, "policy", "get", "--node", id, "--json").stdout), &v); err != nil {
			t.Fatal(err)
		}
		if v.Node != id || v.Source != "POLICY_COMMITTED" || v.Document != string(doc) || strconv.FormatUint(v.Index, 10) != set.Index {
			t.Errorf("policy get on %s after the change at index %s: %+v", id, set.Index, v)
		}
	}
	if got := mustCtl(t, g, exitOK, "policy", "get", "--document").stdout; got != string(doc) {
		t.Errorf("policy get --document:\n%s\nwant:\n%s", got, doc)
	}
	table := mustCtl(t, g, exitOK, "policy", "get").stdout
	for _, want := range []string{"committed at index " + set.Index, "auditor  policy_read", "auditor    auditor"} {
		if !strings.Contains(table, want) {
			t.Errorf("policy get table lacks %q:\n%s", want, table)
		}
	}
	// The new policy is the one enforced: its new principal reads it...
	mustCtl(t, g, exitOK, "policy", "get", "--token-file", auditorFile)
	// ...and may not change it; nor may the nodes' token read or change it.
	nodeToken := filepath.Join(secrets, "node.token")
	for _, args := range [][]string{
		{"policy", "set", "--file", file, "--token-file", auditorFile},
		{"policy", "get", "--token-file", nodeToken},
		{"policy", "get", "--node", "n2", "--token-file", nodeToken},
		{"policy", "set", "--file", file, "--token-file", nodeToken},
	} {
		if r := mustCtl(t, g, exitUnauthorized, args...); !strings.Contains(r.stderr, "PERMISSION_DENIED") {
			t.Errorf("protoraftctl %s: %q", strings.Join(args, " "), r.stderr)
		}
	}
	bad := filepath.Join(tmp, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"version": 1, "roles": {"ops": ["snapshott"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := mustCtl(t, g, exitRefused, "policy", "set", "--file", bad); !strings.Contains(r.stderr, "INVALID_ARGUMENT (roles.ops[0])") {
		t.Errorf("a bad document: %q", r.stderr)
	}
	mustCtl(t, g, exitUsage, "policy", "set")
	// The bad document changed nothing.
	if got := mustCtl(t, g, exitOK, "policy", "get", "--document", "--stale", "--node", "n3").stdout; got != string(doc) {
		t.Errorf("after a refused change, n3 holds:\n%s", got)
	}
}

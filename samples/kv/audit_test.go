package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protoraft/protoraft/internal/testutil"
)

// The sample writes an audit record for every administrative decision
// even at its default log level, which shows warnings only: an admin
// request over HTTP leaves a line with its principal in --audit-log.
func TestAuditRecordsAtDefaultLogLevel(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, testPolicy(), 0o600); err != nil {
		t.Fatal(err)
	}
	auditLog := filepath.Join(dir, "audit.log")
	o := options{group: defaultGroup, data: filepath.Join(dir, "data"), http: "127.0.0.1:0", policy: policy, auditLog: auditLog}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, func() {}, o, w)
		_ = w.Close()
		done <- err
	}()
	base := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "http: "); ok {
				base <- u
			}
		}
	}()
	var url string
	select {
	case url = <-base:
	case err := <-done:
		t.Fatalf("run ended before serving: %v", err)
	case <-time.After(testutil.WaitFor):
		t.Fatal("no HTTP address printed")
	}

	// Allowed at the door, refused by the group: n9 is no member.
	resp, body := call(t, "DELETE", url+"/members/n9", "Bearer "+adminToken, "")
	if resp.StatusCode == 401 || resp.StatusCode == 403 {
		t.Fatalf("remove as admin: %d %v", resp.StatusCode, body)
	}
	// Denied at the door.
	if resp, body := call(t, "POST", url+"/leader/transfer", "", ""); resp.StatusCode != 401 {
		t.Fatalf("transfer without a token: %d %v", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(testutil.WaitFor):
		t.Fatal("run did not stop")
	}

	raw, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", line, err)
		}
		if rec["msg"] == "audit" {
			found[rec["principal"].(string)+"/"+rec["operation"].(string)+"/"+rec["result"].(string)] = true
		}
	}
	for _, want := range []string{"root/remove/allowed", "unauthenticated/transfer_leadership/denied"} {
		if !found[want] {
			t.Errorf("no audit record %s in:\n%s", want, raw)
		}
	}
}

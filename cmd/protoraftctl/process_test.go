//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protoraft/protoraft/internal/proctest"
)

// bins are the binaries the process tests run, built once by TestMain.
var bins struct {
	kv, ctl string
	err     error
}

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "protoraftctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !testing.Short() {
		bins.kv, bins.err = proctest.BuildKV(dir)
		if bins.err == nil {
			bins.ctl = filepath.Join(dir, "protoraftctl")
			out, err := exec.Command("go", "build", "-o", bins.ctl, "github.com/protoraft/protoraft/cmd/protoraftctl").CombinedOutput()
			if err != nil {
				bins.err = fmt.Errorf("go build protoraftctl: %w\n%s", err, out)
			}
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startGroup starts a group of kv processes and returns it once it has a
// leader, with its logs in the test's output when the test fails.
func startGroup(t *testing.T, dir string, ids []string, secrets string) *proctest.Group {
	t.Helper()
	if testing.Short() {
		t.Skip("starts OS processes; skipped with -short")
	}
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	g, err := proctest.NewGroup(proctest.Config{Binary: bins.kv, Dir: dir, IDs: ids, Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Close()
		if t.Failed() {
			for _, n := range g.Nodes() {
				t.Logf("---- log of %s ----\n%s", n.ID(), n.Log(40))
			}
		}
	})
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	return g
}

// ctlResult is what one run of protoraftctl did.
type ctlResult struct {
	stdout, stderr string
	code           int
}

// ctl runs protoraftctl with args against g (its peers and secrets, unless
// args name their own) and returns what it printed and its exit code.
func ctl(t *testing.T, g *proctest.Group, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.ctl, args...)
	cmd.Env = os.Environ()
	if g != nil {
		cmd.Env = append(cmd.Env, "PROTORAFT_PEERS="+g.Peers(), "PROTORAFT_SECRETS="+g.Secrets())
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("protoraftctl %s: %v", strings.Join(args, " "), err)
	}
	return ctlResult{stdout.String(), stderr.String(), code}
}

// mustCtl is ctl that fails the test unless the exit code is want.
func mustCtl(t *testing.T, g *proctest.Group, want int, args ...string) ctlResult {
	t.Helper()
	r := ctl(t, g, args...)
	if r.code != want {
		t.Fatalf("protoraftctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

// waitHealthy polls status until every member answers, one leads and all
// are healthy, and returns that status.
func waitHealthy(t *testing.T, g *proctest.Group, members int, timeout time.Duration) groupStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last ctlResult
	for time.Now().Before(deadline) {
		last = ctl(t, g, "status", "--json", "--timeout", "5s")
		var gs groupStatus
		if last.code == exitOK && json.Unmarshal([]byte(last.stdout), &gs) == nil && len(gs.Members) == members {
			healthy := true
			for _, m := range gs.Members {
				healthy = healthy && m.Health == "HEALTHY" && m.AppliedIndex == gs.Members[0].AppliedIndex
			}
			if healthy {
				return gs
			}
		}
		time.Sleep(200 * time.Millisecond) // a poll interval, not a wait for an outcome
	}
	t.Fatalf("group not healthy with %d members within %v; last status (exit %d):\n%s%s", members, timeout, last.code, last.stdout, last.stderr)
	return groupStatus{}
}

// put writes key through node n's HTTP API, retrying until deadline while
// the group answers with a retryable status.
func put(t *testing.T, n *proctest.Node, key, value string, deadline time.Time) {
	t.Helper()
	for {
		base, _ := n.HTTP()
		req, _ := http.NewRequest(http.MethodPut, base+"/kv/"+key, strings.NewReader(value))
		req.Header.Set("Authorization", "Bearer "+n.Token())
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusGatewayTimeout && resp.StatusCode != http.StatusMisdirectedRequest {
				t.Fatalf("PUT %s: %d %s", key, resp.StatusCode, body)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUT %s not acknowledged by the deadline (last error %v)", key, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get reads key from node n's own state (stale), "" and false when absent.
func get(t *testing.T, n *proctest.Node, key string) (string, bool) {
	t.Helper()
	base, _ := n.HTTP()
	req, _ := http.NewRequest(http.MethodGet, base+"/kv/"+key+"?consistency=stale", nil)
	req.Header.Set("Authorization", "Bearer "+n.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", false
	}
	var v struct {
		Value string `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return "", false
	}
	return v.Value, true
}

// waitKeys waits until node n holds every key of want with its value, and
// fails the test with the keys missing at the deadline.
func waitKeys(t *testing.T, n *proctest.Node, want map[string]string, deadline time.Time) {
	t.Helper()
	for {
		var missing []string
		for k, v := range want {
			if got, ok := get(t, n, k); !ok || got != v {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: %d of %d acknowledged writes missing, e.g. %s", n.ID(), len(missing), len(want), missing[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

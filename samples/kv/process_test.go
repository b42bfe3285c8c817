package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestThreeProcesses is the sample's promise end to end: three OS
// processes on 127.0.0.1 form a cluster, take writes over HTTP, survive
// the leader's process being killed with SIGKILL, take writes under the
// new leader, and the killed process, restarted from its data directory,
// catches up: every acknowledged write is then read back from every node's
// own state.
func TestThreeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three OS processes; skipped with -short")
	}
	start := time.Now()
	tmp := t.TempDir() // before any process: cleanups run in reverse, so processes die before it goes
	bin := buildSample(t, tmp)

	ids := []string{"n1", "n2", "n3"}
	binds := map[string]string{}
	var peerList []string
	for i, port := range freePorts(t, len(ids)) {
		binds[ids[i]] = fmt.Sprintf("127.0.0.1:%d", port)
		peerList = append(peerList, ids[i]+"="+binds[ids[i]])
	}
	peers := strings.Join(peerList, ",")
	args := func(id string) []string {
		a := []string{"--id", id, "--bind", binds[id], "--http", "127.0.0.1:0",
			"--data", filepath.Join(tmp, id), "--peers", peers, "-v"}
		if id != "n3" {
			// n1 and n2 talk Raft on their links, n3 over remote with
			// both: a group may mix nodes with and without a link.
			a = append(a, "--link", "127.0.0.1:0")
		}
		return a
	}

	procs := map[string]*process{}
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
		}
		if t.Failed() {
			for _, id := range ids {
				if p := procs[id]; p != nil {
					t.Logf("---- output of %s (last run) ----\n%s", id, p.tail(60))
				}
			}
		}
	})
	for _, id := range ids {
		procs[id] = startProcess(t, bin, id, args(id))
	}

	leader := waitForLeader(t, procs, "", 20*time.Second)
	t.Logf("leader %s after %v", leader, time.Since(start).Round(time.Millisecond))

	acked := map[string]string{}
	put := func(i int) {
		key, value := fmt.Sprintf("key-%03d", i), fmt.Sprintf("value-%03d-%d", i, time.Now().UnixNano())
		if putWithRetry(t, procs, key, value, 20*time.Second) {
			acked[key] = value
		}
	}
	writesAt := time.Now()
	for i := range 50 {
		put(i)
	}
	t.Logf("50 writes in %v", time.Since(writesAt).Round(time.Millisecond))
	if len(acked) != 50 {
		t.Fatalf("only %d of 50 writes acknowledged with a healthy cluster", len(acked))
	}

	// n1 and n2 show their links' counts; n3 has none. While n1 or n2
	// leads, the other one receives its Raft RPCs on its link.
	leader = waitForLeader(t, procs, "", 10*time.Second)
	for _, id := range ids {
		_, ok := linkMetric(t, procs[id], "protoraft_link_connections")
		if ok != (id != "n3") {
			t.Errorf("%s: protoraft_link_connections exposed %v, want %v", id, ok, id != "n3")
		}
	}
	if leader != "n3" {
		other := map[string]string{"n1": "n2", "n2": "n1"}[leader]
		deadline := time.Now().Add(10 * time.Second)
		for {
			if n, _ := linkMetric(t, procs[other], "protoraft_link_requests_received_total"); n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s led, but %s received nothing on its link", leader, other)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Find the leader again: leadership may have moved during the writes.
	leader = waitForLeader(t, procs, "", 10*time.Second)
	t.Logf("killing leader %s (pid %d) with SIGKILL", leader, procs[leader].cmd.Process.Pid)
	killed := procs[leader]
	killed.kill()
	delete(procs, leader)
	killedAt := time.Now()

	newLeader := waitForLeader(t, procs, leader, 20*time.Second)
	t.Logf("new leader %s, %v after the kill", newLeader, time.Since(killedAt).Round(time.Millisecond))
	writesAt = time.Now()
	for i := 50; i < 70; i++ {
		put(i)
	}
	t.Logf("20 writes under the new leader in %v", time.Since(writesAt).Round(time.Millisecond))
	if len(acked) < 70 {
		t.Fatalf("only %d of 70 writes acknowledged; 20 with two of three nodes up", len(acked))
	}

	procs[leader] = startProcess(t, bin, leader, args(leader))
	restartedAt := time.Now()
	t.Logf("restarted %s from %s", leader, filepath.Join(tmp, leader))

	// Stale reads answer from each node's own state, so they show what that
	// node holds, not what the leader does.
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		missing := waitForKeys(procs[id], acked, deadline)
		if len(missing) > 0 {
			t.Errorf("node %s: %d of %d acknowledged writes not readable (stale) by the deadline, e.g. %s", id, len(missing), len(acked), missing[0])
		}
	}
	t.Logf("every node holds all %d acknowledged writes, %v after the restart", len(acked), time.Since(restartedAt).Round(time.Millisecond))
	// And the group as a whole serves them linearizably from any endpoint.
	for key, want := range acked {
		got, status, err := getKey(procs[leader].baseURL(), key, "linearizable")
		if err != nil || status != http.StatusOK || got != want {
			t.Errorf("linearizable read of %s through %s: status %d value %q err %v, want %q", key, leader, status, got, err, want)
			break
		}
	}

	// Graceful stop: SIGTERM, and each process must exit on its own, with
	// status 0.
	for _, id := range ids {
		_ = procs[id].cmd.Process.Signal(syscall.SIGTERM)
	}
	stopAt := time.Now()
	for _, id := range ids {
		if err := procs[id].wait(15 * time.Second); err != nil {
			t.Errorf("node %s after SIGTERM: %v", id, err)
		}
	}
	t.Logf("all stopped %v after SIGTERM", time.Since(stopAt).Round(time.Millisecond))
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}

// buildSample builds this package once with the toolchain running the test.
// go test puts its own GOROOT/bin first in PATH, so "go" is that toolchain.
func buildSample(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to build the sample with: %v", err)
	}
	bin := filepath.Join(dir, "kv")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePorts returns ports that were free a moment ago. Listening on :0 and
// closing leaves a small window for another program to take one; on a
// test machine that is rare enough, and far simpler than passing listeners.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return ports
}

// process is one running node of the sample.
type process struct {
	id   string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done

	mu   sync.Mutex
	out  bytes.Buffer // stdout and stderr, interleaved
	base string       // HTTP base URL, once printed
}

// Write collects the process's stderr, so a failed test can show it.
func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// baseURL is where the process serves HTTP, once it said so.
func (p *process) baseURL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.base
}

// tail returns the last n lines of the process's output.
func (p *process) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := strings.Split(strings.TrimRight(p.out.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// kill ends the process at once (SIGKILL: no cleanup, as in a crash) and
// waits for it to be gone.
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// wait waits for the process to exit on its own and returns its exit error.
func (p *process) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("did not exit within %v; killed", timeout)
	}
}

// startProcess starts one node and waits until its HTTP endpoint is up.
func startProcess(t *testing.T, bin, id string, args []string) *process {
	t.Helper()
	p := &process{id: id, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.Write([]byte(line + "\n"))
			if base, ok := strings.CutPrefix(line, "http: "); ok && p.baseURL() == "" {
				p.mu.Lock()
				p.base = strings.TrimSpace(base)
				p.mu.Unlock()
				close(ready)
			}
		}
		// Drain: Wait must not run before the pipe is read to its end.
		_, _ = io.Copy(io.Discard, stdout)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	select {
	case <-ready:
		return p
	case <-p.done:
		t.Fatalf("node %s exited before serving HTTP: %v\n%s", id, p.err, p.tail(40))
	case <-time.After(20 * time.Second):
		p.kill()
		t.Fatalf("node %s did not serve HTTP within 20s\n%s", id, p.tail(40))
	}
	return nil
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// nodeStatus is the part of GET /status the test needs.
type nodeStatus struct {
	Node   struct{ ID string }  `json:"node"`
	State  string               `json:"state"`
	Leader *struct{ ID string } `json:"leader"`
}

// waitForLeader polls every running process's own status until one says it
// leads, and returns its ID. not, when set, must not be the answer: a
// killed leader's stale belief in itself is not the new leader.
func waitForLeader(t *testing.T, procs map[string]*process, not string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for id, p := range procs {
			var st nodeStatus
			if err := getJSON(p.baseURL()+"/status", &st); err != nil {
				continue
			}
			if st.State == "Leader" && id != not {
				return id
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no leader among %d processes within %v", len(procs), within)
	return ""
}

func getJSON(url string, v any) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// putWithRetry writes key=value through whichever process answers,
// moving on to the next one on a retryable failure, and reports whether a
// write was acknowledged (200). Repeating a Put of the same value is
// harmless, so an unknown outcome (504, a lost connection) is retried too.
func putWithRetry(t *testing.T, procs map[string]*process, key, value string, within time.Duration) bool {
	t.Helper()
	var last string
	deadline := time.Now().Add(within)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		for _, p := range procs {
			req, err := http.NewRequest(http.MethodPut, p.baseURL()+"/kv/"+key, strings.NewReader(value))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				last = err.Error()
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				return true
			case http.StatusMisdirectedRequest, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
				last = fmt.Sprintf("%s via %s: %s", resp.Status, p.id, bytes.TrimSpace(body))
			default:
				t.Fatalf("PUT %s via %s: %s: %s", key, p.id, resp.Status, body)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("PUT %s not acknowledged within %v: %s", key, within, last)
	return false
}

// getKey reads key through base at consistency and returns its value and
// the HTTP status.
// linkMetric reads one unlabelled protoraft_link_* sample from p's
// /metrics; false when p does not expose it.
func linkMetric(t *testing.T, p *process, name string) (float64, bool) {
	t.Helper()
	resp, err := httpClient.Get(p.baseURL() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("%s: %q: %v", name, v, err)
			}
			return f, true
		}
	}
	return 0, false
}

func getKey(base, key, consistency string) (string, int, error) {
	resp, err := httpClient.Get(base + "/kv/" + key + "?consistency=" + consistency)
	if err != nil {
		return "", 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Value string `json:"value"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return "", resp.StatusCode, err
		}
	}
	return body.Value, resp.StatusCode, nil
}

// waitForKeys polls p's stale reads until it holds every key of want with
// its value, or the deadline passes; it returns what is still missing.
func waitForKeys(p *process, want map[string]string, deadline time.Time) []string {
	pending := map[string]string{}
	for k, v := range want {
		pending[k] = v
	}
	for {
		for key, value := range pending {
			got, status, err := getKey(p.baseURL(), key, "stale")
			if err == nil && status == http.StatusOK && got == value {
				delete(pending, key)
			}
		}
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	missing := make([]string, 0, len(pending))
	for k := range pending {
		missing = append(missing, k)
	}
	return missing
}

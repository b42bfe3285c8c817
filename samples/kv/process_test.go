//go:build unix

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/proctest"
)

// TestThreeProcesses is the sample's promise end to end: three OS
// processes on 127.0.0.1 form a cluster, take writes over HTTP, survive
// the leader's process being killed with SIGKILL, take writes under the
// new leader, and the killed process, restarted from its data directory,
// catches up: every acknowledged write is then read back from every node's
// own state.
//
// Every node listens on ports the kernel picked and is known by the
// addresses of forwarders the test holds (--advertise, --link-advertise),
// so the test also shows that remote and the link carry everything through
// them: PIDs name the advertised addresses, and the restarted process,
// on new ports, is reached at its old ones.
func TestThreeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three OS processes; skipped with -short")
	}
	start := time.Now()
	tmp := t.TempDir() // before any process: cleanups run in reverse, so processes die before it goes
	bin, err := proctest.BuildKV(tmp)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"n1", "n2", "n3"}
	g, err := proctest.NewGroup(proctest.Config{
		Binary: bin, Dir: tmp, IDs: ids, Args: []string{"-v"},
		// n1 and n2 talk Raft on their links, n3 over remote with both: a
		// group may mix nodes with and without a link.
		Link: func(id string) bool { return id != "n3" },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Close()
		if t.Failed() {
			for _, n := range g.Nodes() {
				t.Logf("---- log of %s ----\n%s", n.ID(), n.Log(60))
			}
		}
	})
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	up := map[string]*proctest.Node{}
	for _, n := range g.Nodes() {
		up[n.ID()] = n
	}

	leader := waitForLeader(t, up, "", 20*time.Second)
	t.Logf("leader %s after %v", leader, time.Since(start).Round(time.Millisecond))

	acked := map[string]string{}
	put := func(i int) {
		key, value := fmt.Sprintf("key-%03d", i), fmt.Sprintf("value-%03d-%d", i, time.Now().UnixNano())
		if putWithRetry(t, up, key, value, 20*time.Second) {
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

	// Every node knows every member by its advertised address, and every
	// remote forwarder has carried connections (votes and their answers at
	// the election, at least): nobody dialed a real port.
	for _, n := range g.Nodes() {
		st, err := nodeStatus(n)
		if err != nil {
			t.Fatalf("status of %s: %v", n.ID(), err)
		}
		if len(st.GetMembers()) != len(ids) {
			t.Errorf("%s knows members %v, want %d", n.ID(), st.GetMembers(), len(ids))
		}
		for _, m := range st.GetMembers() {
			if want := g.Node(m.GetId()).Addr() + "/"; !strings.HasPrefix(m.GetAddress(), want) {
				t.Errorf("%s knows %s at %s, not at its advertised address %s", n.ID(), m.GetId(), m.GetAddress(), want)
			}
		}
		if remote, _ := n.Forwarders(); remote.Stats().Joined == 0 {
			t.Errorf("no connection reached %s's remote through its forwarder: %+v", n.ID(), remote.Stats())
		}
	}

	// n1 and n2 show their links' counts; n3 has none. While n1 or n2
	// leads, the other one receives its Raft RPCs on its link, which the
	// leader dialed at the address the link advertised: its forwarder.
	leader = waitForLeader(t, up, "", 10*time.Second)
	for _, id := range ids {
		_, ok := linkMetric(t, up[id], "protoraft_link_connections")
		if ok != (id != "n3") {
			t.Errorf("%s: protoraft_link_connections exposed %v, want %v", id, ok, id != "n3")
		}
	}
	if leader != "n3" {
		other := map[string]string{"n1": "n2", "n2": "n1"}[leader]
		deadline := time.Now().Add(10 * time.Second)
		for {
			if n, _ := linkMetric(t, up[other], "protoraft_link_requests_received_total"); n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s led, but %s received nothing on its link", leader, other)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, link := up[other].Forwarders(); link.Stats().Joined == 0 {
			t.Errorf("%s received on its link, but not through its forwarder: %+v", other, link.Stats())
		}
	}

	// Find the leader again: leadership may have moved during the writes.
	leader = waitForLeader(t, up, "", 10*time.Second)
	killed := up[leader]
	t.Logf("killing leader %s (pid %d) with SIGKILL", leader, killed.PID())
	killed.Kill()
	delete(up, leader)
	killedAt := time.Now()

	newLeader := waitForLeader(t, up, leader, 20*time.Second)
	t.Logf("new leader %s, %v after the kill", newLeader, time.Since(killedAt).Round(time.Millisecond))
	writesAt = time.Now()
	for i := 50; i < 70; i++ {
		put(i)
	}
	t.Logf("20 writes under the new leader in %v", time.Since(writesAt).Round(time.Millisecond))
	if len(acked) < 70 {
		t.Fatalf("only %d of 70 writes acknowledged; 20 with two of three nodes up", len(acked))
	}

	joinedBefore := joinedThrough(killed)
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	up[leader] = killed
	restartedAt := time.Now()
	t.Logf("restarted %s from %s", leader, killed.DataDir())

	// Stale reads answer from each node's own state, so they show what that
	// node holds, not what the leader does.
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		missing := waitForKeys(up[id], acked, deadline)
		if len(missing) > 0 {
			t.Errorf("node %s: %d of %d acknowledged writes not readable (stale) by the deadline, e.g. %s", id, len(missing), len(acked), missing[0])
		}
	}
	t.Logf("every node holds all %d acknowledged writes, %v after the restart", len(acked), time.Since(restartedAt).Round(time.Millisecond))
	// The restarted process listens on new ports; its peers, which caught
	// it up, reached it through the same forwarders.
	if got := joinedThrough(killed); got <= joinedBefore {
		t.Errorf("no connection reached the restarted %s through its forwarders (%d joined before, %d after)", leader, joinedBefore, got)
	}
	// And the group as a whole serves them linearizably from any endpoint.
	for key, want := range acked {
		got, status, err := getKey(killed, key, "linearizable")
		if err != nil || status != http.StatusOK || got != want {
			t.Errorf("linearizable read of %s through %s: status %d value %q err %v, want %q", key, leader, status, got, err, want)
			break
		}
	}

	// Graceful stop: SIGTERM, and each process must exit on its own, with
	// status 0.
	if exits := g.Exits(); len(exits) > 0 {
		t.Errorf("processes exited on their own: %v", exits)
	}
	for _, id := range ids {
		if err := up[id].Terminate(); err != nil {
			t.Error(err)
		}
	}
	stopAt := time.Now()
	for _, id := range ids {
		if err := up[id].Wait(15 * time.Second); err != nil {
			t.Errorf("node %s after SIGTERM: %v", id, err)
		}
	}
	t.Logf("all stopped %v after SIGTERM", time.Since(stopAt).Round(time.Millisecond))
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// request sends method path to n's current process with the group's
// token; body may be nil.
func request(n *proctest.Node, method, path string, body io.Reader) (*http.Response, error) {
	base, _ := n.HTTP()
	if base == "" {
		return nil, fmt.Errorf("%s is down", n.ID())
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		return nil, err
	}
	if tok := n.Token(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return httpClient.Do(req)
}

// joinedThrough counts the connections n's forwarders (remote and link)
// joined to its processes so far.
func joinedThrough(n *proctest.Node) int64 {
	remote, link := n.Forwarders()
	joined := remote.Stats().Joined
	if link != nil {
		joined += link.Stats().Joined
	}
	return joined
}

// nodeStatus asks n's own node for its status: GET /status, protojson.
func nodeStatus(n *proctest.Node) (*actors.StatusResponse, error) {
	resp, err := request(n, http.MethodGet, "/status", nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /status: %s: %s", resp.Status, body)
	}
	var st actors.StatusResponse
	if err := protojson.Unmarshal(body, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// waitForLeader polls every running process's own status until one says it
// leads, and returns its ID. not, when set, must not be the answer: a
// killed leader's stale belief in itself is not the new leader.
func waitForLeader(t *testing.T, nodes map[string]*proctest.Node, not string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for id, n := range nodes {
			if st, err := nodeStatus(n); err == nil && st.GetState() == "Leader" && id != not {
				return id
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no leader among %d processes within %v", len(nodes), within)
	return ""
}

// putWithRetry writes key=value through whichever process answers,
// moving on to the next one on a retryable failure, and reports whether a
// write was acknowledged (200). Repeating a Put of the same value is
// harmless, so an unknown outcome (504, a lost connection) is retried too.
func putWithRetry(t *testing.T, nodes map[string]*proctest.Node, key, value string, within time.Duration) bool {
	t.Helper()
	var last string
	deadline := time.Now().Add(within)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		for id, n := range nodes {
			resp, err := request(n, http.MethodPut, "/kv/"+key, strings.NewReader(value))
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
				last = fmt.Sprintf("%s via %s: %s", resp.Status, id, bytes.TrimSpace(body))
			default:
				t.Fatalf("PUT %s via %s: %s: %s", key, id, resp.Status, body)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("PUT %s not acknowledged within %v: %s", key, within, last)
	return false
}

// linkMetric reads one unlabelled protoraft_link_* sample from n's
// /metrics; false when n does not expose it.
func linkMetric(t *testing.T, n *proctest.Node, name string) (float64, bool) {
	t.Helper()
	resp, err := request(n, http.MethodGet, "/metrics", nil)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
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

// getKey reads key through n at consistency and returns its value and
// the HTTP status.
func getKey(n *proctest.Node, key, consistency string) (string, int, error) {
	resp, err := request(n, http.MethodGet, "/kv/"+key+"?consistency="+consistency, nil)
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

// waitForKeys polls n's stale reads until it holds every key of want with
// its value, or the deadline passes; it returns what is still missing.
func waitForKeys(n *proctest.Node, want map[string]string, deadline time.Time) []string {
	pending := map[string]string{}
	for k, v := range want {
		pending[k] = v
	}
	for {
		for key, value := range pending {
			got, status, err := getKey(n, key, "stale")
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

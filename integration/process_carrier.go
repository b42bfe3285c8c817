//go:build unix

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/proctest"
)

// The process carrier: every node is an OS process of the samples/kv binary
// on 127.0.0.1 (one node per process, started by internal/proctest behind
// forwarders that keep its addresses across restarts), driven over HTTP
// (process_workload.go). It adds the faults only an OS process can suffer:
// SIGKILL (no shutdown, no flush beyond what Raft already synced) and
// SIGSTOP/SIGCONT, a leader frozen mid-term that wakes up after the others
// moved on.

// Processes says how the process carrier starts its nodes.
type Processes struct {
	// Binary is the samples/kv binary (see proctest.BuildKV).
	Binary string
	// Link starts every process with a Raft link (samples/kv --link), so
	// Raft RPCs travel on it rather than through remote.
	Link bool
	// OnStart receives, before any process starts, the function that
	// SIGKILLs every process of the run and unmounts its disks; a test
	// registers it with t.Cleanup so that no process and no mount outlives
	// the test, whatever happens.
	OnStart func(killAll func())
	// Disks gives every node a small tmpfs of its own for its data
	// directory, which the disk-full nemesis fills (root only; see
	// ProbeDisks). Power puts a power-cut file system over each
	// (internal/powerfs, FUSE), for the power-cut nemesis.
	Disks, Power bool
	// Upgrade is a later samples/kv build that the upgrade nemesis moves
	// the nodes to, one at a time (KindUpgrade); Binary is then the
	// earlier build every node starts on.
	Upgrade string
	// DropSyncs is a mutant, for showing that the power-cut check can
	// fail: the power-cut file systems acknowledge every fsync without
	// making anything durable (powerfs.FS.DropSyncs).
	DropSyncs bool
}

// RunProcess performs one seeded run on the process carrier. An error means
// the harness could not run (the processes did not start or elect a
// leader), not a violation.
func RunProcess(ctx context.Context, cfg Config, p Processes) (*Report, error) {
	return run(ctx, cfg, func(logf func(string, ...any)) (carrier, error) {
		return newProcesses(cfg.Nodes, cfg.Dir, p, logf)
	})
}

// Bounds of the process carrier's requests. An HTTP request is bounded on
// the client side; the sample bounds it at 5s on its side too.
const (
	procStatusTimeout = time.Second
	// procStopWithin is how long a SIGTERMed process has to exit before it
	// is killed.
	procStopWithin = 10 * time.Second
)

// processes is a group of samples/kv processes.
type processes struct {
	g    *proctest.Group
	dir  string
	link bool
	logf func(string, ...any)

	clockMu sync.Mutex
	clocks  map[string]time.Duration // each node's wall clock offset (jumpClock)

	// disks are the nodes' own file systems (Processes.Disks); nil
	// without.
	disks *procDisks

	// upgradeTo is Processes.Upgrade; upgraded are the nodes moved to it.
	upgradeTo string
	upgradeMu sync.Mutex
	upgraded  map[string]bool
}

func newProcesses(n int, dir string, p Processes, logf func(string, ...any)) (*processes, error) {
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("n%d", i+1))
	}
	c := &processes{dir: dir, link: p.Link, logf: logf, clocks: map[string]time.Duration{},
		upgradeTo: p.Upgrade, upgraded: map[string]bool{}}
	cfg := proctest.Config{Binary: p.Binary, Dir: dir, IDs: ids,
		Link: func(string) bool { return p.Link }, Clocks: true}
	if p.Disks {
		disks, err := mountDisks(dir, ids, p.Power)
		if err != nil {
			return nil, fmt.Errorf("integration: disks of their own: %w", err)
		}
		for _, pd := range disks.byID {
			if pd.power != nil {
				pd.power.DropSyncs(p.DropSyncs)
			}
		}
		c.disks = disks
		cfg.DataDir = func(id string) string { return disks.disk(id).data }
		cfg.Excuse = c.excuse
		cfg.Args = append(cfg.Args, "--wal-segment-size", fmt.Sprint(procSegmentSize))
	}
	g, err := proctest.NewGroup(cfg)
	if err != nil {
		_ = c.disks.close()
		return nil, err
	}
	c.g = g
	if p.OnStart != nil {
		p.OnStart(c.close)
	}
	if err := g.Start(); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// jumpClock moves node id's wall clock through its --clock-file; the node
// reads it within milliseconds, and every later process of the node too.
func (c *processes) jumpClock(id string, d time.Duration) bool {
	n := c.g.Node(id)
	if n == nil {
		return false
	}
	c.clockMu.Lock()
	defer c.clockMu.Unlock()
	if err := n.MoveClock(c.clocks[id] + d); err != nil {
		c.logf("clock of %s: %v", id, err)
		return false
	}
	c.clocks[id] += d
	return true
}

func (c *processes) name() string {
	if c.link {
		return "processes with raft links"
	}
	return "processes"
}

func (c *processes) kinds() []Kind { return ProcessKinds }
func (c *processes) schedule(seed int64, d time.Duration, kinds []Kind) []Step {
	return ProcessSchedule(seed, d, kinds)
}

func (c *processes) node(id string) (*proctest.Node, error) {
	if n := c.g.Node(id); n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("no node %s", id)
}

func (c *processes) nodes() []string {
	var out []string
	for _, n := range c.g.Nodes() {
		out = append(out, n.ID())
	}
	sort.Strings(out)
	return out
}

func (c *processes) running(id string) bool {
	n := c.g.Node(id)
	return n != nil && n.Running() && !n.Paused()
}

func (c *processes) start(_ context.Context, id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	return n.Start()
}

// stop stops id's process with SIGTERM, as an operator would, and SIGKILLs
// it if it has not exited within procStopWithin.
func (c *processes) stop(_ context.Context, id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	if !n.Running() {
		return nil
	}
	if err := n.Terminate(); err != nil {
		return err
	}
	return n.Wait(procStopWithin)
}

// kill SIGKILLs id's process (paused or not) and waits until it is gone.
func (c *processes) kill(id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	n.Kill()
	return nil
}

func (c *processes) pause(id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	return n.Pause()
}

func (c *processes) resume(id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	return n.Resume()
}

func (c *processes) paused(id string) bool {
	n := c.g.Node(id)
	return n != nil && n.Paused()
}

// get sends a GET to id's current process and returns the status and body.
func (c *processes) get(ctx context.Context, id, path string) (int, []byte, error) {
	n, err := c.node(id)
	if err != nil {
		return 0, nil, err
	}
	base, _ := n.HTTP()
	if base == "" {
		return 0, nil, errors.New(id + " is down")
	}
	return httpDo(ctx, n.Token(), http.MethodGet, base+path, "")
}

// status asks id's own node (not the leader) for its status.
func (c *processes) status(ctx context.Context, id string) (*actors.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, procStatusTimeout)
	defer cancel()
	code, body, err := c.get(ctx, id, "/status")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /status of %s: %d %s", id, code, body)
	}
	var st actors.StatusResponse
	if err := protojson.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("GET /status of %s: %w", id, err)
	}
	return &st, nil
}

// read reads key linearizably through via's HTTP API.
func (c *processes) read(ctx context.Context, key, via string) (Output, string) {
	code, body, err := c.get(ctx, via, "/kv/"+key+"?consistency=linearizable")
	if err != nil {
		return Output{Outcome: OutcomeFailed, Error: err.Error()}, via
	}
	out, _ := readOutcome(code, body)
	return out, via
}

// stateLimit bounds the listing of a node's state; the workload's keys are
// far fewer.
const stateLimit = 1000

// state lists id's whole state with a stale read, which the sample answers
// from its own node.
func (c *processes) state(ctx context.Context, id string) (nodeState, error) {
	code, body, err := c.get(ctx, id, fmt.Sprintf("/kv?consistency=stale&limit=%d", stateLimit))
	if err != nil {
		return nodeState{}, err
	}
	var list struct {
		Entries []struct {
			Key      string `json:"key"`
			Value    string `json:"value"`
			Revision uint64 `json:"revision"`
		} `json:"entries"`
		More         bool   `json:"more"`
		AppliedIndex uint64 `json:"applied_index"`
	}
	if code != http.StatusOK {
		return nodeState{}, fmt.Errorf("GET /kv of %s: %d %s", id, code, body)
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nodeState{}, fmt.Errorf("GET /kv of %s: %w", id, err)
	}
	if list.More {
		return nodeState{}, fmt.Errorf("%s holds more than %d keys", id, stateLimit)
	}
	s := nodeState{applied: list.AppliedIndex}
	for _, e := range list.Entries {
		s.entries = append(s.entries, fmt.Sprintf("%s=%s@%d", e.Key, e.Value, e.Revision))
	}
	return s, nil
}

// incidents are the processes that died on their own.
func (c *processes) incidents() []string {
	var out []string
	for _, e := range c.g.Exits() {
		out = append(out, "process died: "+e)
	}
	return out
}

// stuck is empty: the harness's own goroutines say nothing about the
// processes, whose logs are saved with the artifacts.
func (c *processes) stuck() string { return "" }

// save copies the processes' logs into dir/logs.
func (c *processes) save(dir string) error {
	return copyLogs(filepath.Join(c.dir, "logs"), filepath.Join(dir, "logs"))
}

// close kills every process, then unmounts the disks they wrote to.
func (c *processes) close() {
	c.g.Close()
	if err := c.disks.close(); err != nil {
		c.logf("unmount the disks: %v", err)
	}
}

var procHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second}}

// httpDo sends one request, with token as its bearer token unless that is
// empty, and returns the status and body. A body is sent as the request's;
// "" sends none.
func httpDo(ctx context.Context, token, method, url, body string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := procHTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, b, nil
}

// copyLogs copies the nodes' logs into a failed run's artifacts.
func copyLogs(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

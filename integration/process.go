//go:build unix

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/protoraft/protoraft/actors"
)

// The process mode runs every node as an OS process of the samples/kv
// binary (one node per process, --id --bind --peers --data), drives it over
// HTTP, and adds the faults only an OS process can suffer: SIGKILL (no
// shutdown, no flush beyond what Raft already synced) and SIGSTOP/SIGCONT,
// a leader frozen mid-term that wakes up after the others moved on.

// The nemeses of the process mode.
const (
	// KindSigkill kills a random node with SIGKILL and restarts it from
	// its data directory after the hold.
	KindSigkill Kind = "sigkill"
	// KindSigkillLeader kills the leader's process with SIGKILL and
	// restarts it from its data directory after the hold.
	KindSigkillLeader Kind = "sigkill-leader"
	// KindSigstopLeader freezes the leader's process with SIGSTOP for
	// longer than an election, then resumes it with SIGCONT: the woken old
	// leader must not answer linearizable (or lease) reads from its stale
	// term, which the linearizability check sees in the history.
	KindSigstopLeader Kind = "sigstop-leader"
	// KindGracefulRestart stops a random node with SIGTERM (a clean
	// shutdown) and starts it again at once: a restart with no partition
	// and no crash.
	KindGracefulRestart Kind = "graceful-restart"
)

// ProcessKinds are every process-mode nemesis, in a fixed order so that a
// seed always picks the same ones.
var ProcessKinds = []Kind{KindSigkill, KindSigkillLeader, KindSigstopLeader, KindGracefulRestart}

// Bounds of the process workload. An HTTP request is bounded on the client
// side; the sample bounds it at 5s on its side too.
const (
	procOpTimeout      = 2 * time.Second
	procStaleTimeout   = time.Second
	procStatusTimeout  = time.Second
	procMaxAttempts    = 3
	procStartTimeout   = 30 * time.Second
	procConvergeWithin = 30 * time.Second
)

// ProcessSchedule builds a random process-mode schedule from seed that
// fills about d. It draws the kinds in rounds, each a random order of all
// of them, so that even a short run meets every kind. A frozen leader is
// held longer than an election timeout (the sample's is 500ms) so that the
// others elect a new one; the quiet time lets a restarted process rejoin
// before the next fault.
func ProcessSchedule(seed int64, d time.Duration, kinds []Kind) []Step {
	rng := rand.New(rand.NewSource(seed))
	var steps []Step
	var total time.Duration
	var round []Kind
	for total < d {
		if len(round) == 0 {
			round = append([]Kind(nil), kinds...)
			rng.Shuffle(len(round), func(a, b int) { round[a], round[b] = round[b], round[a] })
		}
		k := round[0]
		round = round[1:]
		s := Step{
			Kinds: []Kind{k},
			Hold:  time.Duration(400+rng.Intn(1000)) * time.Millisecond,
			Quiet: time.Duration(500+rng.Intn(500)) * time.Millisecond,
			Param: rng.Int63(),
		}
		if k == KindSigstopLeader {
			s.Hold = time.Duration(1500+rng.Intn(1500)) * time.Millisecond
		}
		steps = append(steps, s)
		total += s.Hold + s.Quiet
	}
	return steps
}

// ProcConfig is one seeded run of the process mode.
type ProcConfig struct {
	// Binary is the samples/kv binary (see BuildKV).
	Binary string
	Seed   int64
	// Nodes is the group size (3 or 5).
	Nodes int
	// Link starts every process with a Raft link (samples/kv --link), so
	// Raft RPCs travel on it rather than through remote.
	Link     bool
	Duration time.Duration
	Clients  int
	Keys     int
	// Kinds are the nemeses the schedule draws from; nil means
	// ProcessKinds. Steps, when set, is the schedule itself.
	Kinds []Kind
	Steps []Step
	// Dir holds the nodes' data directories and logs.
	Dir string
	// ResultsDir receives the artifacts of a failed run.
	ResultsDir   string
	CheckTimeout time.Duration
	Replay       string
	Logf         func(format string, args ...any)
	// OnStart receives, before any process starts, the function that
	// SIGKILLs every process of the run; a test registers it with
	// t.Cleanup so that no process outlives the test, whatever happens.
	OnStart func(killAll func())
}

// BuildKV builds samples/kv into dir with the go command on PATH (under go
// test, the toolchain running the test) and returns the binary's path.
// moduleRoot is the repository root.
func BuildKV(moduleRoot, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go command to build samples/kv with: %w", err)
	}
	bin := filepath.Join(dir, "kv")
	cmd := exec.Command(goBin, "build", "-o", bin, "./samples/kv")
	cmd.Dir = moduleRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./samples/kv: %v\n%s", err, out)
	}
	return bin, nil
}

// procNode is one node: its fixed identity and its current process.
type procNode struct {
	id, bind, data string

	mu          sync.Mutex
	cmd         *exec.Cmd
	done        chan struct{} // closed when the current process exited
	base        string        // HTTP base URL of the current process, "" when down
	incarnation int
	paused      bool
	// expectExit is set before the harness signals the process to end, so
	// an exit without it is the process dying on its own.
	expectExit bool
}

func (n *procNode) alive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// endpoint is the node's HTTP base and incarnation, "" when it is down.
func (n *procNode) endpoint() (string, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.base, n.incarnation
}

func (n *procNode) isPaused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// procCluster is a group of samples/kv processes on 127.0.0.1.
type procCluster struct {
	bin   string
	dir   string
	peers string
	link  bool
	nodes []*procNode
	logf  func(string, ...any)

	mu         sync.Mutex
	unexpected []string
	closed     bool
}

func newProcCluster(bin, dir string, n int, link bool, logf func(string, ...any)) (*procCluster, error) {
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	ports, err := freeTCPPorts(n)
	if err != nil {
		return nil, err
	}
	c := &procCluster{bin: bin, dir: dir, link: link, logf: logf}
	var peers []string
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		node := &procNode{id: id, bind: fmt.Sprintf("127.0.0.1:%d", ports[i]), data: filepath.Join(dir, id)}
		c.nodes = append(c.nodes, node)
		peers = append(peers, id+"="+node.bind)
	}
	c.peers = strings.Join(peers, ",")
	return c, nil
}

// freeTCPPorts returns ports that were free a moment ago (see
// samples/kv's process test for why that is good enough here).
func freeTCPPorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start starts n's process, unless it runs, and waits until it serves HTTP.
func (c *procCluster) start(n *procNode) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return errors.New("cluster shut down")
	}
	if n.alive() {
		return nil
	}
	logFile, err := os.OpenFile(filepath.Join(c.dir, "logs", n.id+".log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	args := []string{"--id", n.id, "--bind", n.bind, "--http", "127.0.0.1:0", "--data", n.data, "--peers", c.peers}
	if c.link {
		args = append(args, "--link", "127.0.0.1:0")
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = logFile.Close()
		return err
	}
	setDeathSignal(cmd)
	n.mu.Lock()
	n.incarnation++
	inc := n.incarnation
	fmt.Fprintf(logFile, "---- %s incarnation %d starting at %s ----\n", n.id, inc, time.Now().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		_ = logFile.Close()
		return err
	}
	done := make(chan struct{})
	n.cmd, n.done, n.base, n.paused, n.expectExit = cmd, done, "", false, false
	n.mu.Unlock()

	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			if b, ok := strings.CutPrefix(line, "http: "); ok && !sent {
				ready <- strings.TrimSpace(b)
				sent = true
			}
		}
		_, _ = io.Copy(logFile, stdout)
		err := cmd.Wait()
		fmt.Fprintf(logFile, "---- %s incarnation %d exited at %s: %v ----\n", n.id, inc, time.Now().Format(time.RFC3339Nano), err)
		_ = logFile.Close()
		n.mu.Lock()
		expected := n.expectExit
		if n.incarnation == inc {
			n.base = ""
		}
		n.mu.Unlock()
		close(done)
		if !expected {
			c.mu.Lock()
			if !c.closed {
				c.unexpected = append(c.unexpected, fmt.Sprintf("%s (incarnation %d) exited on its own: %v (see logs/%s.log)", n.id, inc, err, n.id))
			}
			c.mu.Unlock()
		}
	}()
	select {
	case b := <-ready:
		n.mu.Lock()
		if n.incarnation == inc {
			n.base = b
		}
		n.mu.Unlock()
		return nil
	case <-done:
		return fmt.Errorf("%s exited before serving HTTP (see logs/%s.log)", n.id, n.id)
	case <-time.After(procStartTimeout):
		c.kill(n)
		return fmt.Errorf("%s did not serve HTTP within %v", n.id, procStartTimeout)
	}
}

// kill SIGKILLs n's process (paused or not) and waits until it is gone.
func (c *procCluster) kill(n *procNode) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.expectExit = true
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
}

// terminate stops n's process with SIGTERM, as an operator would, and
// SIGKILLs it if it has not exited within 10s.
func (c *procCluster) terminate(n *procNode) error {
	n.mu.Lock()
	cmd, done, paused := n.cmd, n.done, n.paused
	n.expectExit = true
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if paused {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		c.kill(n)
		return fmt.Errorf("%s did not exit within 10s of SIGTERM; killed", n.id)
	}
}

// signal sends SIGSTOP or SIGCONT to n's process and records its state.
func (c *procCluster) signal(n *procNode, sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return errors.New("not running")
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return err
	}
	n.paused = sig == syscall.SIGSTOP
	return nil
}

// killAll SIGKILLs every process; it is safe to call more than once and
// from any goroutine.
func (c *procCluster) killAll() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	for _, n := range c.nodes {
		c.kill(n)
	}
}

func (c *procCluster) exits() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.unexpected...)
}

// procStatus is a node's GET /status: its StatusResponse, in protojson.
type procStatus = actors.StatusResponse

var procHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second}}

// status asks n's own node (not the leader) for its status.
func (c *procCluster) status(ctx context.Context, n *procNode) (*procStatus, error) {
	base, _ := n.endpoint()
	if base == "" {
		return nil, errors.New(n.id + " is down")
	}
	ctx, cancel := context.WithTimeout(ctx, procStatusTimeout)
	defer cancel()
	code, body, err := httpDo(ctx, http.MethodGet, base+"/status", "")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /status of %s: %d %s", n.id, code, body)
	}
	var st procStatus
	if err := protojson.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("GET /status of %s: %w", n.id, err)
	}
	return &st, nil
}

// leader returns the running, unpaused node that says it leads at the
// highest term, or nil.
func (c *procCluster) leader(ctx context.Context) *procNode {
	var best *procNode
	var term uint64
	for _, n := range c.nodes {
		if !n.alive() || n.isPaused() {
			continue
		}
		st, err := c.status(ctx, n)
		if err == nil && st.State == "Leader" && (best == nil || st.Term > term) {
			best, term = n, st.Term
		}
	}
	return best
}

func (c *procCluster) waitLeader(ctx context.Context) (*procNode, error) {
	for {
		if l := c.leader(ctx); l != nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// httpDo sends one request and returns the status and body. A body is
// sent as the request's; "" sends none.
func httpDo(ctx context.Context, method, url, body string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
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

// kvReply is every field of the sample's /kv answers the workload reads.
type kvReply struct {
	Code         string  `json:"code"`
	Message      string  `json:"message"`
	Field        string  `json:"field"`
	Key          *string `json:"key"`
	Value        *string `json:"value"`
	AppliedIndex uint64  `json:"applied_index"`
	Created      *bool   `json:"created"`
	Deleted      bool    `json:"deleted"`
}

// notSent reports whether a request certainly never reached the server.
func notSent(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// procWorkload runs concurrent HTTP clients against the processes.
type procWorkload struct {
	c       *procCluster
	rec     *recorder
	keys    int
	clients []*procClient

	mu      sync.Mutex
	refused []string
}

type procClient struct {
	id  int
	w   *procWorkload
	rng *rand.Rand
	seq int
}

func newProcWorkload(c *procCluster, rec *recorder, seed int64, clients, keys int) *procWorkload {
	w := &procWorkload{c: c, rec: rec, keys: keys}
	for i := range clients {
		w.clients = append(w.clients, &procClient{id: i, w: w, rng: rand.New(rand.NewSource(seed*1000 + int64(i) + 1))})
	}
	return w
}

func (w *procWorkload) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, pc := range w.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				pc.one()
				sleepCtx(ctx, time.Duration(2000+pc.rng.Intn(6000))*time.Microsecond)
			}
		}()
	}
	wg.Wait()
}

// refusedRequest notes a request the sample refused as malformed: the
// workload never sends one, so the run reports it.
func (w *procWorkload) refusedRequest(format string, args ...any) {
	w.mu.Lock()
	w.refused = append(w.refused, fmt.Sprintf(format, args...))
	w.mu.Unlock()
}

// pick returns a random node that serves HTTP (a paused one included: a
// client cannot tell), other than not when there is a choice.
func (pc *procClient) pick(not string) *procNode {
	var up []*procNode
	for _, n := range pc.w.c.nodes {
		if b, _ := n.endpoint(); b != "" && n.id != not {
			up = append(up, n)
		}
	}
	if len(up) == 0 {
		for _, n := range pc.w.c.nodes {
			if b, _ := n.endpoint(); b != "" {
				up = append(up, n)
			}
		}
	}
	if len(up) == 0 {
		return nil
	}
	return up[pc.rng.Intn(len(up))]
}

func (pc *procClient) timeout() time.Duration {
	if pc.rng.Intn(5) == 0 {
		return time.Duration(200+pc.rng.Intn(500)) * time.Millisecond
	}
	return procOpTimeout
}

func (pc *procClient) one() {
	key := fmt.Sprintf("k%d", pc.rng.Intn(pc.w.keys))
	pc.seq++
	value := fmt.Sprintf("c%d.%d", pc.id, pc.seq)
	p := pc.rng.Intn(100)
	switch {
	case p < 30:
		pc.write(Input{Kind: OpPut, Key: key, Value: value})
	case p < 42:
		pc.write(Input{Kind: OpDelete, Key: key})
	case p < 65:
		pc.read(key, "LINEARIZABLE")
	case p < 82:
		pc.read(key, "LEASE")
	default:
		pc.staleRead(key)
	}
}

// write sends a PUT or DELETE, retrying on another node after a 421 or 503
// or a refused connection, within the operation's deadline and at most
// procMaxAttempts times. Every attempt that may have taken effect is its
// own operation in the history: the sample's Client keeps one write exactly
// once, but a second HTTP request is a second write.
func (pc *procClient) write(in Input) {
	deadline := time.Now().Add(pc.timeout())
	method, body := http.MethodPut, in.Value
	if in.Kind == OpDelete {
		method, body = http.MethodDelete, ""
	}
	last := ""
	for range procMaxAttempts {
		if time.Now().After(deadline) {
			return
		}
		n := pc.pick(last)
		if n == nil {
			sleepCtx(context.Background(), 50*time.Millisecond)
			continue
		}
		last = n.id
		base, _ := n.endpoint()
		if base == "" {
			continue
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		op := Op{Client: pc.id, Input: in, Call: pc.w.rec.now(), Node: n.id, Incarnation: -1}
		code, b, err := httpDo(ctx, method, base+"/kv/"+in.Key, body)
		op.Return = pc.w.rec.now()
		cancel()
		var retry bool
		op.Output, retry = pc.writeOutput(in, n.id, code, b, err)
		pc.w.rec.add(op)
		if !retry {
			return
		}
	}
}

// writeOutput classifies one write attempt and says whether to retry it
// elsewhere. Only a refused connection or a refused request is certainly
// not applied; any other failure may have been, or may still be.
func (pc *procClient) writeOutput(in Input, node string, code int, body []byte, err error) (Output, bool) {
	if err != nil {
		if notSent(err) {
			return Output{Outcome: OutcomeFailed, Error: err.Error()}, true
		}
		return Output{Outcome: OutcomeUnknown, Error: err.Error()}, false
	}
	var r kvReply
	_ = json.Unmarshal(body, &r)
	switch {
	case code == http.StatusOK && in.Kind == OpPut && r.Created != nil:
		return Output{Outcome: OutcomeOK, Found: !*r.Created, ValueUnknown: true}, false
	case code == http.StatusOK && in.Kind == OpDelete && r.Deleted:
		return Output{Outcome: OutcomeOK, Found: true, ValueUnknown: true}, false
	case code == http.StatusNotFound && in.Kind == OpDelete && r.Code == "NOT_FOUND" && r.Key != nil:
		return Output{Outcome: OutcomeOK, Found: false}, false
	case code == http.StatusBadRequest && r.Field == "meta.deadline_unix_nano":
		// An attempt of the sample's Client reached a node after its
		// deadline and was refused, but an earlier attempt of the same
		// write may have been applied: a timeout, whatever the status says.
		return Output{Outcome: OutcomeUnknown, Error: fmt.Sprintf("%d %s: %s", code, r.Code, r.Message)}, false
	case code == http.StatusBadRequest || code == http.StatusUnauthorized || code == http.StatusForbidden ||
		code == http.StatusNotFound || code == http.StatusMethodNotAllowed || code == http.StatusOK:
		pc.w.refusedRequest("%s via %s answered %d: %s", describe(in, Output{Outcome: OutcomeUnknown}), node, code, strings.TrimSpace(string(body)))
		return Output{Outcome: OutcomeFailed, Error: fmt.Sprintf("%d %s", code, r.Code)}, false
	case code == http.StatusMisdirectedRequest || code == http.StatusServiceUnavailable:
		return Output{Outcome: OutcomeUnknown, Error: fmt.Sprintf("%d %s: %s", code, r.Code, r.Message)}, true
	default:
		return Output{Outcome: OutcomeUnknown, Error: fmt.Sprintf("%d %s: %s", code, r.Code, r.Message)}, false
	}
}

// readOutcome classifies a GET's answer: ok (found or not) or not.
func readOutcome(code int, body []byte) (Output, bool) {
	var r kvReply
	if err := json.Unmarshal(body, &r); err != nil {
		return Output{Outcome: OutcomeFailed, Error: fmt.Sprintf("%d, undecodable body: %v", code, err)}, false
	}
	switch {
	case code == http.StatusOK && r.Value != nil:
		return Output{Outcome: OutcomeOK, Found: true, Value: *r.Value, AppliedIndex: r.AppliedIndex}, true
	case code == http.StatusNotFound && r.Code == "NOT_FOUND" && r.Key != nil:
		return Output{Outcome: OutcomeOK, AppliedIndex: r.AppliedIndex}, true
	}
	return Output{Outcome: OutcomeFailed, Error: fmt.Sprintf("%d %s: %s", code, r.Code, r.Message)}, false
}

// read sends a linearizable or lease GET through random nodes until one
// answers, within the deadline. A read changes nothing, so it is one
// operation from its first call to its last return.
func (pc *procClient) read(key, consistency string) {
	deadline := time.Now().Add(pc.timeout())
	op := Op{Client: pc.id, Input: Input{Kind: OpGet, Key: key, Consistency: consistency}, Call: pc.w.rec.now(), Incarnation: -1}
	op.Output = Output{Outcome: OutcomeFailed, Error: "no node up"}
	last := ""
	for range procMaxAttempts {
		if time.Now().After(deadline) {
			break
		}
		n := pc.pick(last)
		if n == nil {
			sleepCtx(context.Background(), 50*time.Millisecond)
			continue
		}
		last = n.id
		base, _ := n.endpoint()
		if base == "" {
			continue
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		code, b, err := httpDo(ctx, http.MethodGet, base+"/kv/"+key+"?consistency="+strings.ToLower(consistency), "")
		cancel()
		op.Node = n.id
		if err != nil {
			op.Output = Output{Outcome: OutcomeFailed, Error: err.Error()}
			if notSent(err) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) {
				continue
			}
			break
		}
		out, ok := readOutcome(code, b)
		op.Output = out
		if ok || (code != http.StatusMisdirectedRequest && code != http.StatusServiceUnavailable) {
			break
		}
	}
	op.Return = pc.w.rec.now()
	pc.w.rec.add(op)
}

// staleRead reads key from one node's own state: the sample answers a
// stale read with its local node.
func (pc *procClient) staleRead(key string) {
	n := pc.pick("")
	if n == nil {
		return
	}
	base, inc := n.endpoint()
	if base == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), procStaleTimeout)
	defer cancel()
	op := Op{Client: pc.id, Input: Input{Kind: OpGet, Key: key, Consistency: "STALE"}, Call: pc.w.rec.now(), Node: n.id, Incarnation: inc}
	code, b, err := httpDo(ctx, http.MethodGet, base+"/kv/"+key+"?consistency=stale", "")
	op.Return = pc.w.rec.now()
	if err != nil {
		op.Output = Output{Outcome: OutcomeFailed, Error: err.Error()}
	} else {
		op.Output, _ = readOutcome(code, b)
	}
	// The base URL names one incarnation (its HTTP port is new on every
	// start), but a port can be reused: if the node restarted meanwhile,
	// the read is not held to monotonicity.
	if _, now := n.endpoint(); now != inc {
		op.Incarnation = -1
	}
	pc.w.rec.add(op)
}

// procNemesis applies a schedule to the processes.
type procNemesis struct {
	c   *procCluster
	rec *recorder

	mu         sync.Mutex
	events     []Event
	faults     map[Kind]int
	violations []string
}

func (n *procNemesis) event(step int, k Kind, format string, args ...any) {
	e := Event{At: n.rec.now(), Step: step, Kind: k, Detail: fmt.Sprintf(format, args...)}
	n.mu.Lock()
	n.events = append(n.events, e)
	n.mu.Unlock()
	n.c.logf("step %d %s: %s", step, k, e.Detail)
}

func (n *procNemesis) count(k Kind) {
	n.mu.Lock()
	n.faults[k]++
	n.mu.Unlock()
}

func (n *procNemesis) run(ctx context.Context, steps []Step) {
	for i, s := range steps {
		if ctx.Err() != nil {
			return
		}
		rng := rand.New(rand.NewSource(s.Param))
		var undo []func()
		for _, k := range s.Kinds {
			if u := n.apply(ctx, i, k, rng); u != nil {
				undo = append(undo, u)
			}
		}
		sleepCtx(ctx, s.Hold)
		for j := len(undo) - 1; j >= 0; j-- {
			undo[j]()
		}
		n.heal(ctx, i)
		sleepCtx(ctx, s.Quiet)
	}
}

// apply starts one fault and returns what ends it, or nil.
func (n *procNemesis) apply(ctx context.Context, i int, k Kind, rng *rand.Rand) func() {
	var up []*procNode
	for _, m := range n.c.nodes {
		if m.alive() && !m.isPaused() {
			up = append(up, m)
		}
	}
	if len(up) == 0 {
		n.event(i, k, "skipped: no node up")
		return nil
	}
	random := up[rng.Intn(len(up))]
	leaderOrSkip := func() *procNode {
		lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		l, err := n.c.waitLeader(lctx)
		if err != nil {
			n.event(i, k, "skipped: %v", err)
		}
		return l
	}
	restart := func(m *procNode) func() {
		return func() {
			err := n.c.start(m)
			_, inc := m.endpoint()
			n.event(i, k, "restarted %s from %s (incarnation %d): %s", m.id, m.data, inc, errText(err))
		}
	}
	switch k {
	case KindSigkill, KindSigkillLeader:
		victim := random
		if k == KindSigkillLeader {
			if victim = leaderOrSkip(); victim == nil {
				return nil
			}
		}
		n.c.kill(victim)
		n.count(k)
		n.event(i, k, "SIGKILL %s", victim.id)
		return restart(victim)
	case KindSigstopLeader:
		l := leaderOrSkip()
		if l == nil {
			return nil
		}
		st, _ := n.c.status(ctx, l)
		if err := n.c.signal(l, syscall.SIGSTOP); err != nil {
			n.event(i, k, "SIGSTOP %s: %v", l.id, err)
			return nil
		}
		n.count(k)
		var term uint64
		if st != nil {
			term = st.Term
		}
		n.event(i, k, "SIGSTOP leader %s (term %d)", l.id, term)
		return func() {
			// Say whether the others elected a new leader meanwhile: that
			// is the case the check is about.
			if nl := n.c.leader(ctx); nl != nil {
				if nst, err := n.c.status(ctx, nl); err == nil && nst.Term > term {
					n.event(i, k, "new leader %s at term %d while %s was frozen", nl.id, nst.Term, l.id)
				}
			}
			err := n.c.signal(l, syscall.SIGCONT)
			n.event(i, k, "SIGCONT %s: %s", l.id, errText(err))
		}
	case KindGracefulRestart:
		err := n.c.terminate(random)
		n.count(k)
		n.event(i, k, "SIGTERM %s: %s", random.id, errText(err))
		restart(random)()
		return nil
	}
	n.event(i, k, "unknown nemesis")
	return nil
}

// heal resumes every paused process and starts every stopped one.
func (n *procNemesis) heal(ctx context.Context, i int) {
	for _, m := range n.c.nodes {
		if m.isPaused() {
			err := n.c.signal(m, syscall.SIGCONT)
			n.event(i, "heal", "SIGCONT %s: %s", m.id, errText(err))
		}
		if !m.alive() {
			var err error
			for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
				if err = n.c.start(m); err == nil {
					break
				}
				sleepCtx(ctx, 200*time.Millisecond)
			}
			n.event(i, "heal", "start %s: %s", m.id, errText(err))
		}
	}
}

// RunProcess performs one seeded run of the process mode. An error means
// the harness could not run (the processes did not start or elect a
// leader), not a violation.
// startProcCluster starts every node's process. The Raft ports are picked
// free a moment before the processes bind them, and another process of the
// machine (a test package running in parallel) can take one in between:
// that node exits at once, and a new cluster with new ports and fresh
// directories is tried, three times at most.
func startProcCluster(cfg ProcConfig) (*procCluster, error) {
	var last error
	for attempt := 1; attempt <= 3; attempt++ {
		dir := cfg.Dir
		if attempt > 1 {
			dir = filepath.Join(cfg.Dir, fmt.Sprintf("attempt-%d", attempt))
		}
		c, err := newProcCluster(cfg.Binary, dir, cfg.Nodes, cfg.Link, cfg.Logf)
		if err != nil {
			return nil, err
		}
		if cfg.OnStart != nil {
			cfg.OnStart(c.killAll)
		}
		last = nil
		for _, m := range c.nodes {
			if last = c.start(m); last != nil {
				break
			}
		}
		if last == nil {
			return c, nil
		}
		c.killAll()
		cfg.Logf("starting the processes, attempt %d: %v", attempt, last)
	}
	return nil, last
}

func RunProcess(ctx context.Context, cfg ProcConfig) (*Report, error) {
	began := time.Now()
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Kinds == nil {
		cfg.Kinds = ProcessKinds
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = time.Minute
	}
	rep := &Report{Seed: cfg.Seed, Nodes: cfg.Nodes, Ops: map[Outcome]int{}, Faults: map[Kind]int{}}
	steps := cfg.Steps
	if steps == nil {
		steps = ProcessSchedule(cfg.Seed, cfg.Duration, cfg.Kinds)
	}
	c, err := startProcCluster(cfg)
	if err != nil {
		return nil, err
	}
	defer c.killAll()
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = c.waitLeader(startCtx)
	cancel()
	if err != nil {
		return nil, err
	}

	rec := newRecorder()
	wl := newProcWorkload(c, rec, cfg.Seed, cfg.Clients, cfg.Keys)
	nem := &procNemesis{c: c, rec: rec, faults: map[Kind]int{}}
	wctx, stopWorkload := context.WithCancel(ctx)
	wdone := make(chan struct{})
	go func() {
		wl.run(wctx)
		close(wdone)
	}()
	nctx, cancel := context.WithTimeout(ctx, cfg.Duration*4+time.Minute)
	nem.run(nctx, steps)
	cancel()
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	nem.heal(fctx, len(steps))
	sleepCtx(ctx, 500*time.Millisecond)
	stopWorkload()
	<-wdone

	final, finalViolations := procFinalState(fctx, c, rec, cfg.Keys)
	ops := rec.history()
	for _, op := range ops {
		rep.Ops[op.Output.Outcome]++
	}
	nem.mu.Lock()
	for k, v := range nem.faults {
		rep.Faults[k] = v
	}
	rep.Violations = append(rep.Violations, nem.violations...)
	events := append([]Event(nil), nem.events...)
	nem.mu.Unlock()
	for _, e := range c.exits() {
		rep.Violations = append(rep.Violations, "process died: "+e)
	}
	wl.mu.Lock()
	for _, r := range wl.refused {
		rep.Violations = append(rep.Violations, "the sample refused a request the workload sent: "+r)
	}
	wl.mu.Unlock()
	rep.Violations = append(rep.Violations, finalViolations...)

	result, info := checkLinearizable(ops, cfg.CheckTimeout)
	rep.Linearizable = result
	if result == porcupine.Illegal {
		rep.Violations = append(rep.Violations, "history is not linearizable (see linearizability.html)")
	}
	rep.Violations = append(rep.Violations, checkStaleReads(ops)...)
	if final != nil {
		rep.LostWrites = checkDurability(ops, final)
		for _, l := range rep.LostWrites {
			rep.Violations = append(rep.Violations, "lost write: "+l)
		}
	}
	c.killAll()
	rep.Took = time.Since(began)
	if rep.Failed() || os.Getenv("PROTORAFT_KEEP") != "" {
		acfg := Config{Seed: cfg.Seed, Nodes: cfg.Nodes, Duration: cfg.Duration, Clients: cfg.Clients, Keys: cfg.Keys,
			ResultsDir: cfg.ResultsDir, Replay: cfg.Replay}
		dir, err := saveArtifacts(acfg, rep, steps, events, ops, info)
		if err == nil {
			err = copyLogs(filepath.Join(c.dir, "logs"), filepath.Join(dir, "logs"))
		}
		if err != nil {
			rep.Violations = append(rep.Violations, "could not save artifacts: "+err.Error())
		}
		rep.Artifacts = dir
	}
	return rep, nil
}

// procFinalState waits until every node has applied the same log, checks
// that stale reads of every key agree on every node, and reads every key
// linearizably (those reads join the history). It returns the final state,
// or nil when it could not be read.
func procFinalState(ctx context.Context, c *procCluster, rec *recorder, keys int) (map[string]keyState, []string) {
	var violations []string
	leader, err := c.waitLeader(ctx)
	if err != nil {
		return nil, []string{"no leader after the final heal: " + err.Error()}
	}
	deadline := time.Now().Add(procConvergeWithin)
	for {
		same, detail := procConverged(ctx, c)
		if same {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			violations = append(violations, fmt.Sprintf("nodes did not converge within %v after the final heal: %s", procConvergeWithin, detail))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Every node's own state, key by key, through stale reads.
	for k := range keys {
		key := fmt.Sprintf("k%d", k)
		var ref, refNode string
		for _, n := range c.nodes {
			base, _ := n.endpoint()
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			code, b, err := httpDo(rctx, http.MethodGet, base+"/kv/"+key+"?consistency=stale", "")
			cancel()
			var got string
			if err != nil {
				got = "error: " + err.Error()
			} else if out, ok := readOutcome(code, b); !ok {
				got = "error: " + out.Error
			} else {
				got = fmt.Sprintf("%s @%d", kvModel.DescribeState(keyState{Found: out.Found, Value: out.Value}), out.AppliedIndex)
			}
			if refNode == "" {
				ref, refNode = got, n.id
			} else if got != ref {
				violations = append(violations, fmt.Sprintf("stale reads of %s disagree after convergence: %s has %s, %s has %s", key, refNode, ref, n.id, got))
			}
		}
	}
	final := map[string]keyState{}
	for k := range keys {
		key := fmt.Sprintf("k%d", k)
		var op Op
		for attempt := range 20 {
			n := c.nodes[(attempt+indexOf(c, leader))%len(c.nodes)]
			base, _ := n.endpoint()
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			op = Op{Client: -1, Input: Input{Kind: OpGet, Key: key, Consistency: "LINEARIZABLE"}, Call: rec.now(), Node: n.id, Incarnation: -1}
			code, b, err := httpDo(rctx, http.MethodGet, base+"/kv/"+key+"?consistency=linearizable", "")
			cancel()
			op.Return = rec.now()
			if err != nil {
				op.Output = Output{Outcome: OutcomeFailed, Error: err.Error()}
			} else {
				op.Output, _ = readOutcome(code, b)
			}
			if op.Output.Outcome == OutcomeOK || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if op.Output.Outcome != OutcomeOK {
			return nil, append(violations, fmt.Sprintf("final read of %s: %s", key, op.Output.Error))
		}
		rec.add(op)
		final[key] = keyState{Found: op.Output.Found, Value: op.Output.Value}
	}
	return final, violations
}

func indexOf(c *procCluster, n *procNode) int {
	for i, m := range c.nodes {
		if m == n {
			return i
		}
	}
	return 0
}

// procConverged reports whether every node has the same last, commit and
// applied index, with everything committed.
func procConverged(ctx context.Context, c *procCluster) (bool, string) {
	var parts []string
	var first *procStatus
	same := true
	for _, n := range c.nodes {
		st, err := c.status(ctx, n)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", n.id, err)
		}
		parts = append(parts, fmt.Sprintf("%s %s term=%d last=%d commit=%d applied=%d", n.id, st.State, st.Term, st.LastIndex, st.CommitIndex, st.AppliedIndex))
		if first == nil {
			first = st
		} else if st.LastIndex != first.LastIndex || st.CommitIndex != first.CommitIndex || st.AppliedIndex != first.AppliedIndex {
			same = false
		}
		if st.CommitIndex != st.LastIndex {
			same = false
		}
	}
	return same, strings.Join(parts, "; ")
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
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

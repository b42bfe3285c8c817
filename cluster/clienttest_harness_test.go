package cluster_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// The Client tests build their group from raftactor nodes and minimal front
// doors named as cluster/names.go names them, so they exercise the Client
// against real Raft without depending on Spawn and the rest of the
// composition.

// clientTestTimeouts keep in-process elections quick while leaving headroom
// for the race detector on two busy cores (as raftactor's own tests do).
var clientTestTimeouts = raftactor.Timeouts{
	Heartbeat:   250 * time.Millisecond,
	Election:    250 * time.Millisecond,
	LeaderLease: 150 * time.Millisecond,
	Commit:      5 * time.Millisecond,
}

// clientDoorHook sees every request a test door receives before it is forwarded;
// returning true means the hook dealt with it and the door does nothing.
type clientDoorHook func(ctx actor.Context, door string, node *actor.PID, req actors.Request) bool

// clientSeen is one request a test door received.
type clientSeen struct {
	door string
	at   time.Time
	req  actors.Request
}

// clientHarness is a group in one ActorSystem: node actors and pass-through
// front doors, data under the test's temp dir.
type clientHarness struct {
	t      *testing.T
	group  string
	system *actor.ActorSystem
	faults *faults.Network
	dir    string
	order  []string
	nodes  map[string]*clientHarnessNode

	hook atomic.Pointer[clientDoorHook]
	mu   sync.Mutex
	seen []clientSeen
}

type clientHarnessNode struct {
	id   string
	cfg  raftactor.Config
	node *actor.PID
	door *actor.PID
}

// newClientSystem returns a quiet local ActorSystem and checks, when the
// test ends, that neither it nor the Client left goroutines behind.
func newClientSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	t.Cleanup(system.Shutdown)
	return system
}

// newClientHarness starts n voters bootstrapped together and waits until
// they agree on a leader.
func newClientHarness(t *testing.T, n int) *clientHarness {
	t.Helper()
	h := &clientHarness{
		t:      t,
		group:  "g1",
		system: newClientSystem(t),
		faults: faults.NewNetwork(1),
		dir:    t.TempDir(),
		nodes:  map[string]*clientHarnessNode{},
	}
	var boot []raftactor.Voter
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		boot = append(boot, raftactor.Voter{ID: id, Address: h.raftAddress(id)})
	}
	for i := 1; i <= n; i++ {
		h.add(fmt.Sprintf("n%d", i), boot)
	}
	t.Cleanup(h.shutdown)
	for _, id := range h.order {
		h.start(id)
	}
	return h
}

func (h *clientHarness) peer(id string) cluster.Peer {
	return cluster.Peer{ID: id, Address: actors.LocalSystemAddress}
}

func (h *clientHarness) raftAddress(id string) string {
	return h.peer(id).RaftAddress(h.group)
}

// peers are all defined members, running or not.
func (h *clientHarness) peers() []cluster.Peer {
	var ps []cluster.Peer
	for _, id := range h.order {
		ps = append(ps, h.peer(id))
	}
	return ps
}

// client returns a Client of the whole group with test-friendly backoff.
func (h *clientHarness) client(opts ...cluster.ClientOption) *cluster.Client {
	opts = append([]cluster.ClientOption{cluster.WithBackoff(10*time.Millisecond, 200*time.Millisecond)}, opts...)
	return cluster.NewClient(h.system, h.group, h.peers(), opts...)
}

// add defines a node without starting it; bootstrap is nil for a node that
// joins later.
func (h *clientHarness) add(id string, bootstrap []raftactor.Voter) {
	h.nodes[id] = &clientHarnessNode{
		id: id,
		cfg: raftactor.Config{
			Group:           h.group,
			ID:              id,
			DataDir:         filepath.Join(h.dir, id),
			NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
			Bootstrap:       bootstrap,
			Timeouts:        clientTestTimeouts,
			RequestTimeout:  3 * time.Second,
			RPCTimeout:      500 * time.Millisecond,
			WALSegmentSize:  256 << 10,
			Faults:          h.faults,
		},
	}
	h.order = append(h.order, id)
}

// start spawns a node actor and its front door under the names the Client
// and FrontDoorOf expect.
func (h *clientHarness) start(id string) {
	h.t.Helper()
	hn := h.nodes[id]
	props, err := raftactor.Props(hn.cfg)
	if err != nil {
		h.t.Fatalf("props %s: %v", id, err)
	}
	base := "protoraft/" + h.group + "/" + id
	if hn.node, err = h.system.Root.SpawnNamed(props, base+"/node"); err != nil {
		h.t.Fatalf("spawn node %s: %v", id, err)
	}
	node := hn.node
	doorProps := actor.PropsFromProducer(func() actor.Actor { return &clientTestDoor{h: h, id: id, node: node} })
	if hn.door, err = h.system.Root.SpawnNamed(doorProps, base+"/door"); err != nil {
		h.t.Fatalf("spawn door %s: %v", id, err)
	}
	if got, want := hn.door.String(), h.peer(id).FrontDoor(h.group).String(); got != want {
		h.t.Fatalf("door of %s is %s, the Client expects %s", id, got, want)
	}
}

// stop stops a node's front door and node, as a crash of its process would
// look to a Client in another one.
func (h *clientHarness) stop(id string) {
	h.t.Helper()
	hn := h.nodes[id]
	for _, pid := range []*actor.PID{hn.door, hn.node} {
		if pid == nil {
			continue
		}
		if err := h.system.Root.StopFuture(pid).Wait(); err != nil {
			h.t.Fatalf("stop %s: %v", pid, err)
		}
	}
	hn.door, hn.node = nil, nil
}

func (h *clientHarness) shutdown() {
	for _, id := range h.order {
		hn := h.nodes[id]
		for _, pid := range []*actor.PID{hn.door, hn.node} {
			if pid != nil {
				_ = h.system.Root.StopFuture(pid).Wait()
			}
		}
		hn.door, hn.node = nil, nil
	}
}

// setHook installs hook on every door; nil removes it.
func (h *clientHarness) setHook(hook clientDoorHook) {
	if hook == nil {
		h.hook.Store(nil)
		return
	}
	h.hook.Store(&hook)
}

// requests returns the requests the doors received, and forgets them.
func (h *clientHarness) requests() []clientSeen {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.seen
	h.seen = nil
	return s
}

func (h *clientHarness) record(door string, req actors.Request) {
	h.mu.Lock()
	h.seen = append(h.seen, clientSeen{door: door, at: time.Now(), req: req})
	h.mu.Unlock()
}

// clientTestDoor stands in for a group's front door: it forwards every request
// to its node, so the node answers the Client directly.
type clientTestDoor struct {
	h    *clientHarness
	id   string
	node *actor.PID
}

func (d *clientTestDoor) Receive(ctx actor.Context) {
	req, ok := ctx.Message().(actors.Request)
	if !ok {
		return
	}
	d.h.record(d.id, req)
	if hook := d.h.hook.Load(); hook != nil && (*hook)(ctx, d.id, d.node, req) {
		return
	}
	ctx.Forward(d.node)
}

// clientBlackHole accepts requests and never answers, like a front door on a
// machine that stopped responding.
type clientBlackHole struct {
	id       string
	received chan<- clientSeen
}

func (b *clientBlackHole) Receive(ctx actor.Context) {
	if req, ok := ctx.Message().(actors.Request); ok {
		select {
		case b.received <- clientSeen{door: b.id, at: time.Now(), req: req}:
		default:
		}
	}
}

// clientLeaderID asks the Client who leads.
func clientLeaderID(t *testing.T, c *cluster.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lr, err := c.Leader(ctx)
	if err != nil {
		t.Fatalf("leader: %v", err)
	}
	return lr.GetNode().GetId()
}

// clientMustPut writes key=value and returns the kvstore result and the index.
func clientMustPut(t *testing.T, c *cluster.Client, key, value string) (*kvstore.Result, uint64) {
	t.Helper()
	return clientMustWrite(t, c, kvstore.Put(key, []byte(value)))
}

func clientMustWrite(t *testing.T, c *cluster.Client, cmd []byte) (*kvstore.Result, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.Write(ctx, cmd)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	r, err := kvstore.DecodeResult(resp.Result)
	if err != nil {
		t.Fatalf("decode write result: %v", err)
	}
	return r, resp.Index
}

// get reads key linearizably.
func clientGet(ctx context.Context, c *cluster.Client, key string) (*kvstore.QueryResult, error) {
	resp, err := c.Read(ctx, kvstore.Get(key))
	if err != nil {
		return nil, err
	}
	return kvstore.DecodeQueryResult(resp.Result)
}

func clientMustGet(t *testing.T, c *cluster.Client, key string) *kvstore.QueryResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q, err := clientGet(ctx, c, key)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return q
}

// clientWithin runs f and fails the test if it has not returned after the guard:
// the tests assert outcomes, not latencies, but a call must never hang.
func clientWithin[T any](t *testing.T, guard time.Duration, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case v := <-done:
		return v
	case <-time.After(guard):
		t.Fatalf("call did not return within %v", guard)
		var zero T
		return zero
	}
}

package cluster_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// The Client tests build their group from raftactor nodes and minimal front
// doors (grouptest.Nodes with WithDoor), named as cluster/names.go names
// them, so they exercise the Client against real Raft without depending on
// Spawn and the rest of the composition.

// clientDoorHook sees every request a test door receives before it is forwarded;
// returning true means the hook dealt with it and the door does nothing.
type clientDoorHook func(ctx actor.Context, door string, node *actor.PID, req actors.Request) bool

// clientSeen is one request a test door received.
type clientSeen struct {
	door string
	at   time.Time
	req  actors.Request
}

// clientHarness is a group of node actors with pass-through front doors
// that record every request and let a hook take it over.
type clientHarness struct {
	*grouptest.Nodes

	hook atomic.Pointer[clientDoorHook]
	mu   sync.Mutex
	seen []clientSeen
}

// newClientHarness starts n voters bootstrapped together.
func newClientHarness(t *testing.T, n int) *clientHarness {
	t.Helper()
	return newClientHarnessWith(t, n, nil)
}

// newClientHarnessWith is newClientHarness with configure applied to every
// node's configuration.
func newClientHarnessWith(t *testing.T, n int, configure func(*raftactor.Config)) *clientHarness {
	t.Helper()
	h := &clientHarness{}
	h.Nodes = grouptest.New(t, n, configure, grouptest.WithDoor(func(id string, node *actor.PID) actor.Actor {
		return &clientTestDoor{h: h, id: id, node: node}
	}))
	for _, id := range h.IDs() {
		h.checkDoor(id)
	}
	return h
}

func (h *clientHarness) peer(id string) cluster.Peer {
	return cluster.Peer{ID: id, Address: actors.LocalSystemAddress}
}

// peers are all defined members, running or not.
func (h *clientHarness) peers() []cluster.Peer {
	var ps []cluster.Peer
	for _, id := range h.IDs() {
		ps = append(ps, h.peer(id))
	}
	return ps
}

// client returns a Client of the whole group with test-friendly backoff.
func (h *clientHarness) client(opts ...cluster.ClientOption) *cluster.Client {
	opts = append([]cluster.ClientOption{cluster.WithBackoff(10*time.Millisecond, 200*time.Millisecond)}, opts...)
	return cluster.NewClient(h.System, grouptest.Group, h.peers(), opts...)
}

// start starts node id with its front door and checks that both are where
// the Client and FrontDoorOf look for them.
func (h *clientHarness) start(id string) {
	h.T().Helper()
	h.Start(id)
	h.checkDoor(id)
}

func (h *clientHarness) checkDoor(id string) {
	h.T().Helper()
	nd := h.Node(id)
	if got, want := nd.Door.String(), h.peer(id).FrontDoor(grouptest.Group).String(); got != want {
		h.T().Fatalf("door of %s is %s, the Client expects %s", id, got, want)
	}
	if got, want := h.Address(id), h.peer(id).RaftAddress(grouptest.Group); got != want {
		h.T().Fatalf("raft address of %s is %s, the Client expects %s", id, got, want)
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

package grouptest

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// FastTimeouts keep in-process elections quick while leaving headroom for
// the race detector on two busy cores.
var FastTimeouts = raftactor.Timeouts{
	Heartbeat:   250 * time.Millisecond,
	Election:    250 * time.Millisecond,
	LeaderLease: 150 * time.Millisecond,
	Commit:      5 * time.Millisecond,
}

// Group is the name of the groups this package starts.
const Group = "g1"

// Nodes is a whole group in one ActorSystem: node actors with local PIDs, a
// shared fault injector, data directories under the test's temp dir.
type Nodes struct {
	t      testing.TB
	System *actor.ActorSystem
	Faults *faults.Network
	Dir    string
	nodes  map[string]*Node
	order  []string
	door   DoorFunc
}

// Node is one node of Nodes: its configuration (change it before Start),
// the props options it is spawned with, and its PIDs while it runs.
type Node struct {
	ID      string
	Config  raftactor.Config
	Options []actor.PropsOption
	PID     *actor.PID
	// Door is the node's front door when the group has a DoorFunc.
	Door *actor.PID
}

// DoorFunc makes the front door of node id, which forwards to node; it is
// spawned where package cluster puts a front door.
type DoorFunc func(id string, node *actor.PID) actor.Actor

// Option changes how New builds the group.
type Option func(*Nodes)

// WithDoor gives every node a front door made by door.
func WithDoor(door DoorFunc) Option { return func(n *Nodes) { n.door = door } }

// New defines n voters n1..nN bootstrapped together, applies configure to
// each configuration (when not nil), and starts them. Goroutine leaks are
// checked when the test ends.
func New(t testing.TB, n int, configure func(*raftactor.Config), opts ...Option) *Nodes {
	t.Helper()
	testutil.VerifyNoLeaks(t)
	g := &Nodes{
		t:      t,
		System: testutil.QuietSystem(),
		Faults: faults.NewNetwork(1),
		Dir:    t.TempDir(),
		nodes:  map[string]*Node{},
	}
	for _, o := range opts {
		o(g)
	}
	var ids []string
	for i := 1; i <= n; i++ {
		ids = append(ids, fmt.Sprintf("n%d", i))
	}
	boot := g.Voters(ids...)
	for _, id := range ids {
		nd := g.Add(id, boot)
		if configure != nil {
			configure(&nd.Config)
		}
	}
	t.Cleanup(g.shutdown)
	for _, id := range ids {
		g.Start(id)
	}
	return g
}

// Name is the actor name of node id, as package cluster names a node actor.
func Name(id string) string { return "protoraft/" + Group + "/" + id + "/node" }

// Address is the Raft address of node id.
func (g *Nodes) Address(id string) string { return actors.LocalSystemAddress + "/" + Name(id) }

// Voters is the bootstrap list of the nodes ids.
func (g *Nodes) Voters(ids ...string) []raftactor.Voter {
	var vs []raftactor.Voter
	for _, id := range ids {
		vs = append(vs, raftactor.Voter{ID: id, Address: g.Address(id)})
	}
	return vs
}

// Add defines node id without starting it; bootstrap is nil for a node
// that joins later.
func (g *Nodes) Add(id string, bootstrap []raftactor.Voter) *Node {
	nd := &Node{ID: id, Config: nodeConfig(g.t, Group, id, filepath.Join(g.Dir, id), g.Faults)}
	nd.Config.Bootstrap = bootstrap
	g.nodes[id] = nd
	g.order = append(g.order, id)
	return nd
}

// nodeConfig is what every node of this package's groups runs with: a
// key-value store in dir, FastTimeouts, bounded requests and RPCs, small
// log segments, the shared faults and the test's logger.
func nodeConfig(t testing.TB, group, id, dir string, faults *faults.Network) raftactor.Config {
	return raftactor.Config{
		Group:           group,
		ID:              id,
		DataDir:         dir,
		NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
		Timeouts:        FastTimeouts,
		RequestTimeout:  3 * time.Second,
		RPCTimeout:      500 * time.Millisecond,
		WALSegmentSize:  256 << 10,
		Faults:          faults,
		Logger:          testutil.Logger(t, group+"/"+id),
	}
}

// T is the test the group belongs to.
func (g *Nodes) T() testing.TB { return g.t }

// Node returns node id.
func (g *Nodes) Node(id string) *Node { return g.nodes[id] }

// IDs are the defined nodes, running or not, in the order they were added.
func (g *Nodes) IDs() []string { return append([]string(nil), g.order...) }

// Running are the nodes that run.
func (g *Nodes) Running() []string {
	var ids []string
	for _, id := range g.order {
		if g.nodes[id].PID != nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// Start spawns node id (and its door) and waits until it started; a node
// that could not start fails the test.
func (g *Nodes) Start(id string) {
	g.t.Helper()
	if err := g.TryStart(id); err != nil {
		g.t.Fatalf("start %s: %v", id, err)
	}
}

// TryStart spawns node id (and its door) and waits until its start ended,
// returning why it could not start; the node runs (and refuses requests)
// either way.
func (g *Nodes) TryStart(id string) error {
	g.t.Helper()
	nd := g.nodes[id]
	props, err := raftactor.Props(nd.Config, nd.Options...)
	if err != nil {
		return err
	}
	if nd.PID, err = g.System.Root.SpawnNamed(props, Name(id)); err != nil {
		g.t.Fatalf("spawn %s: %v", id, err)
	}
	if g.door != nil {
		node := nd.PID
		door := actor.PropsFromProducer(func() actor.Actor { return g.door(id, node) })
		if nd.Door, err = g.System.Root.SpawnNamed(door, "protoraft/"+Group+"/"+id+"/door"); err != nil {
			g.t.Fatalf("spawn door %s: %v", id, err)
		}
	}
	res, err := g.System.Root.RequestFuture(nd.PID, raftactor.AwaitStart{}, testutil.WaitFor).Result()
	if err != nil {
		g.t.Fatalf("start %s: %v", id, err)
	}
	return res.(*raftactor.StartResult).Err
}

// Stop stops node id (its door first) and waits until it is gone, its
// files closed.
func (g *Nodes) Stop(id string) {
	g.t.Helper()
	nd := g.nodes[id]
	for _, pid := range []*actor.PID{nd.Door, nd.PID} {
		if pid == nil {
			continue
		}
		if err := g.System.Root.StopFuture(pid).Wait(); err != nil {
			g.t.Fatalf("stop %s: %v", pid, err)
		}
	}
	nd.Door, nd.PID = nil, nil
}

func (g *Nodes) shutdown() {
	for _, id := range g.order {
		nd := g.nodes[id]
		for _, pid := range []*actor.PID{nd.Door, nd.PID} {
			if pid != nil {
				_ = g.System.Root.StopFuture(pid).Wait()
			}
		}
		nd.Door, nd.PID = nil, nil
	}
	g.System.Shutdown()
}

// Ask sends msg to node id and waits for the reply.
func (g *Nodes) Ask(id string, msg any) (any, error) {
	nd := g.nodes[id]
	if nd.PID == nil {
		return nil, errors.New("node stopped")
	}
	return g.System.Root.RequestFuture(nd.PID, msg, 10*time.Second).Result()
}

// MustAsk is Ask that fails the test when no reply comes.
func (g *Nodes) MustAsk(id string, msg any) any {
	g.t.Helper()
	res, err := g.Ask(id, msg)
	if err != nil {
		g.t.Fatalf("ask %s %T: %v", id, msg, err)
	}
	return res
}

// Meta is request metadata with a deadline timeout from now.
func Meta(timeout time.Duration) *actors.RequestMeta { return actors.NewMeta(timeout) }

// LeaderSeenBy asks node id who leads.
func (g *Nodes) LeaderSeenBy(id string) *actors.LeaderResponse {
	g.t.Helper()
	return g.MustAsk(id, &actors.LeaderRequest{}).(*actors.LeaderResponse)
}

// WaitLeader waits until every running node in ids (all running nodes when
// empty) reports the same leader, and that leader says so, and returns its
// ID.
func (g *Nodes) WaitLeader(ids ...string) string {
	g.t.Helper()
	if len(ids) == 0 {
		ids = g.Running()
	}
	deadline := time.Now().Add(testutil.WaitFor)
	for time.Now().Before(deadline) {
		if id := g.agreedLeader(ids); id != "" {
			return id
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.t.Fatalf("no agreed leader among %v", ids)
	return ""
}

func (g *Nodes) agreedLeader(ids []string) string {
	agreed := ""
	for _, id := range ids {
		r, err := g.Ask(id, &actors.LeaderRequest{})
		if err != nil {
			return ""
		}
		lr, ok := r.(*actors.LeaderResponse)
		if !ok || lr.Leader == nil || (agreed != "" && lr.Leader.Id != agreed) {
			return ""
		}
		agreed = lr.Leader.Id
	}
	if agreed == "" || g.nodes[agreed] == nil || g.nodes[agreed].PID == nil {
		return ""
	}
	if r, err := g.Ask(agreed, &actors.LeaderRequest{}); err == nil && r.(*actors.LeaderResponse).IsLeader {
		return agreed
	}
	return ""
}

// Put writes key=value through whoever leads, following NOT_LEADER hints
// and retrying retryable codes, like a client would. It returns the
// response that acknowledged the write.
func (g *Nodes) Put(key, value string) *actors.WriteResponse {
	g.t.Helper()
	resp, err := g.TryPut(key, value, testutil.WaitFor)
	if err != nil {
		g.t.Fatalf("put %s: %v", key, err)
	}
	return resp
}

// TryPut is Put that returns the error instead, after within.
func (g *Nodes) TryPut(key, value string, within time.Duration) (*actors.WriteResponse, error) {
	return g.TryWrite(kvstore.Put(key, []byte(value)), within)
}

// TryWrite writes command as Put does.
func (g *Nodes) TryWrite(command []byte, within time.Duration) (*actors.WriteResponse, error) {
	deadline := time.Now().Add(within)
	target := g.order[0]
	var last error
	for time.Now().Before(deadline) {
		if g.nodes[target].PID == nil {
			target = g.anyRunning()
		}
		r, err := g.Ask(target, &actors.WriteRequest{Meta: Meta(2 * time.Second), Command: command})
		if err != nil {
			last = err
			target = g.anyRunning()
			continue
		}
		wr := r.(*actors.WriteResponse)
		switch actors.CodeOf(wr.Error) {
		case actors.Code_OK:
			return wr, nil
		case actors.Code_NOT_LEADER:
			if l := wr.Error.Leader; l != nil {
				target = g.IDOf(l.Address)
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		case actors.Code_UNAVAILABLE, actors.Code_DEADLINE_EXCEEDED:
			time.Sleep(20 * time.Millisecond)
		default:
			return nil, wr.Error
		}
		last = wr.Error.Err()
	}
	return nil, fmt.Errorf("no acknowledgement within %v: %v", within, last)
}

func (g *Nodes) anyRunning() string {
	if ids := g.Running(); len(ids) > 0 {
		return ids[0]
	}
	g.t.Fatal("no node running")
	return ""
}

// IDOf maps a Raft address back to its node's ID (a running node when none
// has it).
func (g *Nodes) IDOf(addr string) string {
	for id := range g.nodes {
		if g.Address(id) == addr {
			return id
		}
	}
	return g.anyRunning()
}

// Get reads key from node id at the given consistency.
func (g *Nodes) Get(id, key string, consistency actors.Consistency) (*actors.ReadResponse, *kvstore.QueryResult) {
	g.t.Helper()
	rr := g.MustAsk(id, &actors.ReadRequest{Meta: Meta(3 * time.Second), Query: kvstore.Get(key), Consistency: consistency}).(*actors.ReadResponse)
	if rr.Error.Err() != nil {
		return rr, nil
	}
	qr, err := kvstore.DecodeQueryResult(rr.Result)
	if err != nil {
		g.t.Fatalf("decode: %v", err)
	}
	return rr, qr
}

// WaitValue waits until a stale read of key on node id returns want.
func (g *Nodes) WaitValue(id, key, want string) {
	g.t.Helper()
	testutil.Eventually(g.t, fmt.Sprintf("node %s shows %s=%s", id, key, want), func() bool {
		rr, qr := g.Get(id, key, actors.Consistency_STALE)
		return rr.Error.Err() == nil && qr.Found && string(qr.Value) == want
	})
}

// Status asks node id for its status.
func (g *Nodes) Status(id string) *actors.StatusResponse {
	g.t.Helper()
	return g.MustAsk(id, &actors.StatusRequest{}).(*actors.StatusResponse)
}

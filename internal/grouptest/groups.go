package grouptest

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// Groups spawns whole group nodes (cluster.Spawn: supervisor, authorizer,
// limiter, metrics and node) into one ActorSystem, the way a program
// composes them, and stops each when the test ends. Its Caller asks them
// from that same system.
type Groups struct {
	Caller
	// Faults is the fault injector every Config gets, shared by all nodes
	// of all groups (it tells nodes apart by ID only).
	Faults *faults.Network
	// Dir holds the nodes' data directories.
	Dir string
}

// GroupsOption changes how NewGroups builds its Groups.
type GroupsOption func(*groupsOptions)

type groupsOptions struct {
	system *actor.ActorSystem
}

// WithSystem spawns into system (one with a remote endpoint, say) instead
// of a quiet local system of the Groups' own. The caller owns system and
// shuts it down, and checks for goroutine leaks itself if it wants them
// checked: the Groups does not, since a remote's goroutines outlive the
// groups spawned into it.
func WithSystem(system *actor.ActorSystem) GroupsOption {
	return func(o *groupsOptions) { o.system = system }
}

// NewGroups returns an empty Groups. Without WithSystem it makes a quiet
// local ActorSystem, shut down when the test ends, and checks then that
// no goroutine the test started outlives it.
func NewGroups(t testing.TB, opts ...GroupsOption) *Groups {
	t.Helper()
	var o groupsOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.system == nil {
		testutil.VerifyNoLeaks(t)
		o.system = testutil.NewSystem(t)
	}
	return &Groups{Caller: NewCaller(t, o.system), Faults: faults.NewNetwork(1), Dir: t.TempDir()}
}

// Peers are the peers ids in the caller's own ActorSystem
// (actors.LocalSystemAddress), for Bootstrap lists and Clients.
func Peers(ids ...string) []cluster.Peer {
	var ps []cluster.Peer
	for _, id := range ids {
		ps = append(ps, cluster.Peer{ID: id, Address: actors.LocalSystemAddress})
	}
	return ps
}

// Config is the configuration of node id of group: a key-value store in
// Dir/<group>-<id>, FastTimeouts, the shared Faults, bootstrapped with boot
// (nil for a node that joins later). Change it before Spawn.
func (gs *Groups) Config(group, id string, boot []cluster.Peer) cluster.Config {
	return cluster.Config{
		Node:      nodeConfig(gs.t, group, id, filepath.Join(gs.Dir, group+"-"+id), gs.Faults),
		Bootstrap: boot,
	}
}

// Spawn spawns cfg, failing the test when it cannot, and stops the group
// node when the test ends (Stop of a stopped node does nothing).
func (gs *Groups) Spawn(cfg cluster.Config) *cluster.Group {
	gs.t.Helper()
	g, err := cluster.Spawn(gs.System, cfg)
	if err != nil {
		gs.t.Fatalf("spawn %s/%s: %v", cfg.Node.Group, cfg.Node.ID, err)
	}
	gs.t.Cleanup(func() {
		if err := g.Stop(); err != nil {
			gs.t.Errorf("stop %s/%s: %v", cfg.Node.Group, cfg.Node.ID, err)
		}
	})
	return g
}

// SpawnVoters spawns voters n1..nN of group, bootstrapped together, each
// Config changed by configure (when not nil) first. It returns the
// configurations, to spawn a node again, and the group nodes, in order.
func (gs *Groups) SpawnVoters(group string, n int, configure func(*cluster.Config)) ([]cluster.Config, []*cluster.Group) {
	gs.t.Helper()
	var ids []string
	for i := 1; i <= n; i++ {
		ids = append(ids, fmt.Sprintf("n%d", i))
	}
	boot := Peers(ids...)
	var cfgs []cluster.Config
	var groups []*cluster.Group
	for _, id := range ids {
		cfg := gs.Config(group, id, boot)
		if configure != nil {
			configure(&cfg)
		}
		cfgs = append(cfgs, cfg)
		groups = append(groups, gs.Spawn(cfg))
	}
	return cfgs, groups
}

// Caller asks group nodes through their front doors from one ActorSystem,
// as a program holding only their PIDs would. Every wait is bounded by
// testutil.WaitFor.
type Caller struct {
	t testing.TB
	// System is the ActorSystem the requests are sent from.
	System *actor.ActorSystem
}

// NewCaller returns a Caller sending from system.
func NewCaller(t testing.TB, system *actor.ActorSystem) Caller {
	return Caller{t: t, System: system}
}

// T is the test the Caller belongs to.
func (c Caller) T() testing.TB { return c.t }

// meta is the metadata of the Caller's own requests.
func meta() *actors.RequestMeta { return Meta(3 * time.Second) }

// Ask sends req to to and returns the reply; no reply fails the test.
func (c Caller) Ask(to *actor.PID, req actors.Request) actors.Response {
	c.t.Helper()
	res, err := c.System.Root.RequestFuture(to, req, testutil.WaitFor).Result()
	if err != nil {
		c.t.Fatalf("ask %s %T: %v", to, req, err)
	}
	resp, ok := res.(actors.Response)
	if !ok {
		c.t.Fatalf("ask %s %T: reply %T", to, req, res)
	}
	return resp
}

// WaitLeader waits until every group node in groups sees the same leader
// and that leader, one of groups, says it leads; it returns the leader.
func (c Caller) WaitLeader(groups ...*cluster.Group) *cluster.Group {
	c.t.Helper()
	var leader *cluster.Group
	testutil.Eventually(c.t, "a leader all agree on", func() bool {
		leader = c.agreedLeader(groups)
		return leader != nil
	})
	return leader
}

func (c Caller) agreedLeader(groups []*cluster.Group) *cluster.Group {
	agreed := ""
	for _, g := range groups {
		lr, ok := c.leaderSeenBy(g)
		if !ok || lr.GetLeader().GetId() == "" || (agreed != "" && lr.Leader.Id != agreed) {
			return nil
		}
		agreed = lr.Leader.Id
	}
	for _, g := range groups {
		if g.Self().ID != agreed {
			continue
		}
		if lr, ok := c.leaderSeenBy(g); ok && lr.IsLeader {
			return g
		}
	}
	return nil
}

// leaderSeenBy asks g who leads; false when g did not answer.
func (c Caller) leaderSeenBy(g *cluster.Group) (*actors.LeaderResponse, bool) {
	res, err := c.System.Root.RequestFuture(g.FrontDoor(), &actors.LeaderRequest{Meta: meta()}, 5*time.Second).Result()
	lr, ok := res.(*actors.LeaderResponse)
	return lr, err == nil && ok && lr.GetError() == nil
}

// Put writes key=value through the front door start, following NOT_LEADER
// hints to the leader's front door and retrying retryable codes like a
// client would; any other refusal fails the test. It returns the response
// that acknowledged the write.
func (c Caller) Put(start *actor.PID, key, value string) *actors.WriteResponse {
	c.t.Helper()
	door := start
	deadline := time.Now().Add(testutil.WaitFor)
	var last error
	for time.Now().Before(deadline) {
		res, err := c.System.Root.RequestFuture(door, &actors.WriteRequest{Meta: meta(), Command: kvstore.Put(key, []byte(value))}, 5*time.Second).Result()
		if err != nil {
			last, door = err, start
			time.Sleep(20 * time.Millisecond)
			continue
		}
		wr, ok := res.(*actors.WriteResponse)
		if !ok {
			c.t.Fatalf("put %s: reply %T", key, res)
		}
		switch actors.CodeOf(wr.Error) {
		case actors.Code_OK:
			return wr
		case actors.Code_NOT_LEADER:
			if l := wr.Error.GetLeader(); l != nil {
				pid, err := cluster.FrontDoorOf(l.Address)
				if err != nil {
					c.t.Fatalf("put %s: leader hint %v: %v", key, l, err)
				}
				door = pid
				continue
			}
		case actors.Code_UNAVAILABLE, actors.Code_DEADLINE_EXCEEDED:
		default:
			c.t.Fatalf("put %s: %v", key, wr.Error)
		}
		last = wr.Error
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("put %s: not acknowledged within %v: %v", key, testutil.WaitFor, last)
	return nil
}

// Read returns what a stale read of key at door says; a refused read fails
// the test.
func (c Caller) Read(door *actor.PID, key string) (value string, found bool) {
	c.t.Helper()
	value, found, err := c.tryRead(door, key)
	if err != nil {
		c.t.Fatalf("read %s at %s: %v", key, door, err)
	}
	return value, found
}

func (c Caller) tryRead(door *actor.PID, key string) (string, bool, error) {
	res, err := c.System.Root.RequestFuture(door, &actors.ReadRequest{Meta: meta(), Query: kvstore.Get(key), Consistency: actors.Consistency_STALE}, 5*time.Second).Result()
	if err != nil {
		return "", false, err
	}
	rr, ok := res.(*actors.ReadResponse)
	if !ok {
		return "", false, fmt.Errorf("reply %T", res)
	}
	if err := rr.Error.Err(); err != nil {
		return "", false, err
	}
	qr, err := kvstore.DecodeQueryResult(rr.Result)
	if err != nil {
		return "", false, err
	}
	return string(qr.Value), qr.Found, nil
}

// WaitValue waits until a stale read of key at door returns want; reads
// refused meanwhile (a node still starting) count as not yet.
func (c Caller) WaitValue(door *actor.PID, key, want string) {
	c.t.Helper()
	testutil.Eventually(c.t, fmt.Sprintf("%s shows %s=%s", door, key, want), func() bool {
		v, ok, err := c.tryRead(door, key)
		return err == nil && ok && v == want
	})
}

// Status asks g for its status; a refusal fails the test.
func (c Caller) Status(g *cluster.Group) *actors.StatusResponse {
	c.t.Helper()
	st, ok := c.Ask(g.FrontDoor(), &actors.StatusRequest{Meta: meta()}).(*actors.StatusResponse)
	if !ok {
		c.t.Fatalf("status of %s: not a StatusResponse", g.Self().ID)
	}
	if err := st.Error.Err(); err != nil {
		c.t.Fatalf("status of %s: %v", g.Self().ID, err)
	}
	return st
}

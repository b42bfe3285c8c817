package raftactor_test

import (
	"errors"
	"fmt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// fastTimeouts keep in-process elections quick while leaving headroom for
// the race detector on two busy cores.
var fastTimeouts = raftactor.Timeouts{
	Heartbeat:   250 * time.Millisecond,
	Election:    250 * time.Millisecond,
	LeaderLease: 150 * time.Millisecond,
	Commit:      5 * time.Millisecond,
}

// testCluster is a whole group in one ActorSystem: node actors with local
// PIDs, a shared fault injector, data directories under the test's temp dir.
type testCluster struct {
	t      *testing.T
	group  string
	system *actor.ActorSystem
	faults *raftactor.Faults
	dir    string
	nodes  map[string]*testNode
	order  []string
}

type testNode struct {
	id   string
	name string
	cfg  raftactor.Config
	pid  *actor.PID
	opts []actor.PropsOption
}

func nodeName(group, id string) string { return "protoraft/" + group + "/" + id }

// newTestCluster starts n voters, bootstrapped together.
func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	raftactor.VerifyNoLeaks(t)
	c := &testCluster{
		t:      t,
		group:  "g1",
		system: raftactor.NewTestSystem(),
		faults: raftactor.NewFaults(1),
		dir:    t.TempDir(),
		nodes:  map[string]*testNode{},
	}
	var peers []raftactor.Peer
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		peers = append(peers, raftactor.Peer{ID: id, Address: actors.LocalSystemAddress + "/" + nodeName(c.group, id)})
	}
	for i := 1; i <= n; i++ {
		c.add(fmt.Sprintf("n%d", i), peers)
	}
	t.Cleanup(c.shutdown)
	for _, id := range c.order {
		c.start(id)
	}
	return c
}

// add defines a node without starting it.
func (c *testCluster) add(id string, bootstrap []raftactor.Peer) *testNode {
	tn := &testNode{
		id:   id,
		name: nodeName(c.group, id),
		cfg: raftactor.Config{
			Group:           c.group,
			ID:              id,
			DataDir:         filepath.Join(c.dir, id),
			NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
			Bootstrap:       bootstrap,
			Timeouts:        fastTimeouts,
			RequestTimeout:  3 * time.Second,
			RPCTimeout:      500 * time.Millisecond,
			WALSegmentSize:  256 << 10,
			Faults:          c.faults,
			Logger:          testLogger(c.t, id),
		},
	}
	c.nodes[id] = tn
	c.order = append(c.order, id)
	return tn
}

func (c *testCluster) address(id string) string {
	return actors.LocalSystemAddress + "/" + nodeName(c.group, id)
}

func (c *testCluster) start(id string) {
	c.t.Helper()
	tn := c.nodes[id]
	props, err := raftactor.Props(tn.cfg, tn.opts...)
	if err != nil {
		c.t.Fatalf("props %s: %v", id, err)
	}
	pid, err := c.system.Root.SpawnNamed(props, tn.name)
	if err != nil {
		c.t.Fatalf("spawn %s: %v", id, err)
	}
	tn.pid = pid
}

func (c *testCluster) stop(id string) {
	c.t.Helper()
	tn := c.nodes[id]
	if tn.pid == nil {
		return
	}
	if err := c.system.Root.StopFuture(tn.pid).Wait(); err != nil {
		c.t.Fatalf("stop %s: %v", id, err)
	}
	tn.pid = nil
}

func (c *testCluster) shutdown() {
	for _, id := range c.order {
		if tn := c.nodes[id]; tn.pid != nil {
			_ = c.system.Root.StopFuture(tn.pid).Wait()
			tn.pid = nil
		}
	}
	c.system.Shutdown()
}

// ask sends msg to node id and waits for the reply.
func (c *testCluster) ask(id string, msg any) (any, error) {
	tn := c.nodes[id]
	if tn.pid == nil {
		return nil, errors.New("node stopped")
	}
	return c.system.Root.RequestFuture(tn.pid, msg, 10*time.Second).Result()
}

func (c *testCluster) mustAsk(id string, msg any) any {
	c.t.Helper()
	res, err := c.ask(id, msg)
	if err != nil {
		c.t.Fatalf("ask %s %T: %v", id, msg, err)
	}
	return res
}

func meta(timeout time.Duration) *actors.RequestMeta { return actors.NewMeta(timeout) }

// leaderOf asks node id who leads.
func (c *testCluster) leaderSeenBy(id string) *actors.LeaderResponse {
	c.t.Helper()
	return c.mustAsk(id, &actors.LeaderRequest{}).(*actors.LeaderResponse)
}

// waitLeader waits until every running node in ids (all running nodes when
// empty) reports the same leader, and returns its ID.
func (c *testCluster) waitLeader(ids ...string) string {
	c.t.Helper()
	if len(ids) == 0 {
		for _, id := range c.order {
			if c.nodes[id].pid != nil {
				ids = append(ids, id)
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		agreed := ""
		ok := true
		for _, id := range ids {
			r, err := c.ask(id, &actors.LeaderRequest{})
			if err != nil {
				ok = false
				break
			}
			lr := r.(*actors.LeaderResponse)
			if lr.Leader == nil || (agreed != "" && lr.Leader.Id != agreed) {
				ok = false
				break
			}
			agreed = lr.Leader.Id
		}
		if ok && agreed != "" {
			if lr := c.leaderSeenBy(agreed); lr.IsLeader {
				return agreed
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no agreed leader among %v", ids)
	return ""
}

// put writes key=value through whoever leads, following NOT_LEADER hints
// and retrying retryable codes until the deadline, like a client would. It
// returns the response that acknowledged the write.
func (c *testCluster) put(key, value string) *actors.WriteResponse {
	c.t.Helper()
	resp, err := c.tryPut(key, value, 20*time.Second)
	if err != nil {
		c.t.Fatalf("put %s: %v", key, err)
	}
	return resp
}

func (c *testCluster) tryPut(key, value string, within time.Duration) (*actors.WriteResponse, error) {
	deadline := time.Now().Add(within)
	target := c.order[0]
	var last error
	for time.Now().Before(deadline) {
		if c.nodes[target].pid == nil {
			target = c.anyRunning()
		}
		r, err := c.ask(target, &actors.WriteRequest{Meta: meta(2 * time.Second), Command: kvstore.Put(key, []byte(value))})
		if err != nil {
			last = err
			target = c.anyRunning()
			continue
		}
		wr := r.(*actors.WriteResponse)
		switch actors.CodeOf(wr.Error) {
		case actors.Code_OK:
			return wr, nil
		case actors.Code_NOT_LEADER:
			if l := wr.Error.Leader; l != nil {
				target = c.idOf(l.Address)
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

func (c *testCluster) anyRunning() string {
	for _, id := range c.order {
		if c.nodes[id].pid != nil {
			return id
		}
	}
	c.t.Fatal("no node running")
	return ""
}

// idOf maps a Raft address back to the node's ID.
func (c *testCluster) idOf(addr string) string {
	for id := range c.nodes {
		if c.address(id) == addr {
			return id
		}
	}
	return c.anyRunning()
}

// get reads key from node id at the given consistency.
func (c *testCluster) get(id, key string, consistency actors.Consistency) (*actors.ReadResponse, *kvstore.QueryResult) {
	c.t.Helper()
	rr := c.mustAsk(id, &actors.ReadRequest{Meta: meta(3 * time.Second), Query: kvstore.Get(key), Consistency: consistency}).(*actors.ReadResponse)
	if rr.Error.Err() != nil {
		return rr, nil
	}
	qr, err := kvstore.DecodeQueryResult(rr.Result)
	if err != nil {
		c.t.Fatalf("decode: %v", err)
	}
	return rr, qr
}

// waitValue waits until a stale read of key on node id returns want.
func (c *testCluster) waitValue(id, key, want string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if rr, qr := c.get(id, key, actors.Consistency_STALE); rr.Error.Err() == nil && qr.Found && string(qr.Value) == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("node %s never showed %s=%s", id, key, want)
}

func (c *testCluster) status(id string) *actors.StatusResponse {
	c.t.Helper()
	return c.mustAsk(id, &actors.StatusRequest{}).(*actors.StatusResponse)
}

func raftID(id string) raft.ServerID { return raft.ServerID(id) }

// testLogger logs to the test when PROTORAFT_TEST_LOG is set.
func testLogger(t *testing.T, id string) *zap.Logger {
	if os.Getenv("PROTORAFT_TEST_LOG") == "" {
		return nil
	}
	return zaptest.NewLogger(t).With(zap.String("test_node", id))
}

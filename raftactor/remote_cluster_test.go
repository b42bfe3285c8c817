package raftactor_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
	"github.com/protoraft/protoraft/remoteguard"
)

// remoteClusterKey is the cluster key of every remote cluster's nodes:
// nodes that other processes can reach need one (configure may take it
// away again, with InsecureTransport).
var remoteClusterKey = []byte("remote-cluster-key-0123456789abcdef")

// remoteProcess is one "process" of a remote cluster: an ActorSystem of its
// own serving protoactor remote on 127.0.0.1, with one node actor.
type remoteProcess struct {
	id     raft.ServerID
	system *actor.ActorSystem
	remote *remote.Remote
	link   *raftactor.Link // nil unless the cluster runs with links
	PID    *actor.PID
}

// remoteCluster is three nodes that talk only through protoactor remote
// (and their Raft links, when started with them).
type remoteCluster struct {
	t     *testing.T
	procs []*remoteProcess
}

// startRemoteCluster starts three ActorSystems with remote, a Raft link each
// when withLinks, and a bootstrapped node in each; configure, when given,
// changes every node's configuration.
func startRemoteCluster(t *testing.T, group string, withLinks bool, configure ...func(*raftactor.Config)) *remoteCluster {
	t.Helper()
	var links func(int) *raftactor.LinkConfig
	if withLinks {
		links = func(int) *raftactor.LinkConfig { return &raftactor.LinkConfig{Listen: "127.0.0.1:0"} }
	}
	return startRemoteClusterWith(t, group, links, configure...)
}

// startRemoteClusterWith is startRemoteCluster with the link of each
// process given by links (nil, or a nil configuration: no link).
func startRemoteClusterWith(t *testing.T, group string, links func(i int) *raftactor.LinkConfig, configure ...func(*raftactor.Config)) *remoteCluster {
	t.Helper()
	if testutil.RaceEnabled {
		t.Skip("several remotes in one process race inside protoactor (grpclog.SetLoggerV2 on every start); covered without -race")
	}
	c := &remoteCluster{t: t, procs: make([]*remoteProcess, 3)}
	var peers []raftactor.Voter
	for i := range c.procs {
		sys := testutil.QuietSystem()
		r := remote.NewRemote(sys, remoteguard.Config("127.0.0.1", 0))
		r.Start()
		p := &remoteProcess{id: raft.ServerID(fmt.Sprintf("n%d", i+1)), system: sys, remote: r}
		if links != nil {
			if lc := links(i); lc != nil {
				l, err := raftactor.StartLink(sys, *lc)
				if err != nil {
					t.Fatal(err)
				}
				p.link = l
			}
		}
		c.procs[i] = p
		id := fmt.Sprintf("n%d", i+1)
		peers = append(peers, raftactor.Voter{ID: id, Address: sys.Address() + "/" + "protoraft/" + group + "/" + id})
	}
	t.Cleanup(func() {
		for _, p := range c.procs {
			if p.PID != nil {
				_ = p.system.Root.StopFuture(p.PID).Wait()
			}
			if p.link != nil {
				_ = p.link.Close()
			}
			p.remote.Shutdown(false)
			p.system.Shutdown()
		}
	})
	dir := t.TempDir()
	for i, p := range c.procs {
		id := fmt.Sprintf("n%d", i+1)
		cfg := raftactor.Config{
			Group: group, ID: id, DataDir: fmt.Sprintf("%s/%s", dir, id),
			NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
			Bootstrap:       peers,
			Timeouts:        grouptest.FastTimeouts,
			WALSegmentSize:  1 << 20,
			RPCTimeout:      time.Second,
			ClusterKey:      remoteClusterKey,
		}
		for _, f := range configure {
			f(&cfg)
		}
		props, err := raftactor.Props(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := p.system.Root.SpawnNamed(props, "protoraft/"+group+"/"+id)
		if err != nil {
			t.Fatal(err)
		}
		p.PID = pid
	}
	return c
}

// Ask sends msg through remote from the first system, as a client elsewhere
// would.
func (c *remoteCluster) Ask(pid *actor.PID, msg any) any {
	c.t.Helper()
	res, err := c.procs[0].system.Root.RequestFuture(pid, msg, 10*time.Second).Result()
	if err != nil {
		c.t.Fatalf("ask %v: %v", pid, err)
	}
	return res
}

// leader waits for a node other than the ones in not to lead and returns it.
func (c *remoteCluster) leader(not ...*remoteProcess) *remoteProcess {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range c.procs {
			if slices.Contains(not, p) {
				continue
			}
			if lr := c.Ask(p.PID, &actors.LeaderRequest{}).(*actors.LeaderResponse); lr.IsLeader {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("no leader over remote")
	return nil
}

// write puts keys from-to-1 through the leader, each write committed.
func (c *remoteCluster) write(leader *remoteProcess, from, to int) {
	c.t.Helper()
	for i := from; i < to; i++ {
		wr := c.Ask(leader.PID, &actors.WriteRequest{Meta: grouptest.Meta(5 * time.Second), Command: kvstore.Put(fmt.Sprintf("k%d", i), []byte("v"))}).(*actors.WriteResponse)
		if wr.Error.Err() != nil {
			c.t.Fatalf("write k%d: %v", i, wr.Error)
		}
	}
}

// replicated waits until every node applied key.
func (c *remoteCluster) replicated(key string) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range c.procs {
		for {
			rr := c.Ask(p.PID, &actors.ReadRequest{Query: kvstore.Get(key), Consistency: actors.Consistency_STALE}).(*actors.ReadResponse)
			if qr, err := kvstore.DecodeQueryResult(rr.Result); err == nil && qr.Found {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("node %v never applied %s", p.PID, key)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestClusterOverRemote runs three nodes in three ActorSystems that talk
// only through protoactor remote on 127.0.0.1: the same node actor and
// transport, remote PIDs instead of local ones.
func TestClusterOverRemote(t *testing.T) {
	c := startRemoteCluster(t, "rg", false)
	c.write(c.leader(), 0, 20)
	c.replicated("k19")
}

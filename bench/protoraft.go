package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
	"github.com/protoraft/protoraft/remoteguard"
)

const group = "bench"

// protoraft is a three-node group spawned with cluster.Spawn, so every
// request takes the full message path: front door (authorizer) → limiter →
// node → Raft, with outcomes told to the metrics stage.
//
// Writes are sent with RequestFuture to the leader's FrontDoor from the
// leader's own ActorSystem. That is the lighter of the two public paths
// (cluster.Client adds exactly-once session metadata to every write, one
// more entry extension to replicate, and its retry loop); the baseline
// applies bare commands without sessions, so this keeps the work equal.
// Reads carry no session, so they go through a cluster.Client living in
// the leader's ActorSystem, as an application's reads would: it sends the
// reads its callers make while earlier ones are in flight as one request
// (WithReadBatch, -read-batch).
//
// In-process, the three nodes share one ActorSystem. Over remote, each has
// its own ActorSystem serving protoactor remote on 127.0.0.1 (all in this
// process), so Raft RPCs cross gRPC on loopback while clients still reach
// the leader locally, as the baseline's clients call its Raft directly.
// With links, each of those ActorSystems also serves a Raft link, and the
// nodes send their Raft RPCs on it once they found each other's.
type protoraft struct {
	name    string
	faults  *faults.Network
	nodes   []*prNode
	remotes []*remote.Remote
	links   []*raftactor.Link
	leader  atomic.Pointer[prNode]
}

type prNode struct {
	system *actor.ActorSystem
	cfg    cluster.Config
	peer   cluster.Peer
	client *cluster.Client

	mu sync.Mutex
	g  *cluster.Group
}

func (n *prNode) group() *cluster.Group {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.g
}

func (n *prNode) door() *actor.PID { return n.peer.FrontDoor(group) }

// quietSystem is an ActorSystem whose own logs are discarded: protoactor
// logs every connection at info level, which would drown the tables.
func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
}

// The kinds of protoraft system the bench runs.
const (
	kindInProcess = "inproc"
	kindRemote    = "remote"
	kindLink      = "link"
)

// protoraftNames are the systems' names in the table, by kind.
var protoraftNames = map[string]string{
	kindInProcess: "protoraft in-process",
	kindRemote:    "protoraft remote",
	kindLink:      "protoraft link",
}

func startProtoraft(dir, kind string, t raftactor.Timeouts, readBatch int) (*protoraft, error) {
	p := &protoraft{name: protoraftNames[kind], faults: faults.NewNetwork(1)}
	overRemote := kind != kindInProcess
	var shared *actor.ActorSystem
	if !overRemote {
		shared = quietSystem()
	}
	var peers []cluster.Peer
	for _, id := range []string{"n1", "n2", "n3"} {
		sys := shared
		if overRemote {
			// Remote starts before Spawn: the system's address is part of
			// every node's Raft address.
			sys = quietSystem()
			r := remote.NewRemote(sys, remoteguard.Config("127.0.0.1", 0))
			r.Start()
			p.remotes = append(p.remotes, r)
			if kind == kindLink {
				l, err := raftactor.StartLink(sys, raftactor.LinkConfig{Listen: "127.0.0.1:0"})
				if err != nil {
					p.Close()
					return nil, err
				}
				p.links = append(p.links, l)
			}
		}
		n := &prNode{system: sys, peer: cluster.Peer{ID: id, Address: sys.Address()}}
		peers = append(peers, n.peer)
		p.nodes = append(p.nodes, n)
	}
	for _, n := range p.nodes {
		n.cfg = cluster.Config{
			Node: raftactor.Config{
				Group:           group,
				ID:              n.peer.ID,
				DataDir:         filepath.Join(dir, n.peer.ID),
				NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
				Timeouts:        t,
				Faults:          p.faults,
				// As every deployment whose nodes other processes can
				// reach: every RPC carries the key's MAC.
				ClusterKey: benchClusterKey,
			},
			Bootstrap: peers,
		}
		g, err := cluster.Spawn(n.system, n.cfg)
		if err != nil {
			p.Close()
			return nil, err
		}
		n.g = g
		n.client = cluster.NewClient(n.system, group, peers, cluster.WithReadBatch(readBatch), cluster.WithCallTimeout(2*time.Second))
	}
	return p, nil
}

// benchClusterKey is the cluster key of the benchmarked groups.
var benchClusterKey = []byte("bench-cluster-key-0123456789abcdef")

func (p *protoraft) Name() string { return p.name }

func (p *protoraft) Close() {
	for _, n := range p.nodes {
		if g := n.group(); g != nil {
			_ = g.Stop()
		}
	}
	for _, l := range p.links {
		_ = l.Close()
	}
	for _, r := range p.remotes {
		r.Shutdown(true)
	}
	seen := map[*actor.ActorSystem]bool{}
	for _, n := range p.nodes {
		if !seen[n.system] {
			seen[n.system] = true
			n.system.Shutdown()
		}
	}
}

// current returns the node that says it leads; the answer is cached until
// a request fails.
func (p *protoraft) current(ctx context.Context) (*prNode, error) {
	if n := p.leader.Load(); n != nil {
		return n, nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range p.nodes {
			if n.group() == nil {
				continue
			}
			res, err := n.system.Root.RequestFuture(n.door(), &actors.LeaderRequest{}, time.Second).Result()
			if lr, ok := res.(*actors.LeaderResponse); err == nil && ok && lr.IsLeader {
				p.leader.Store(n)
				return n, nil
			}
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("protoraft: no leader within 60s")
}

// write sends one write to n's front door.
func write(n *prNode, key string, value []byte, timeout time.Duration) (*actors.WriteResponse, error) {
	req := &actors.WriteRequest{Meta: actors.NewMeta(timeout), Command: kvstore.Put(key, value)}
	res, err := n.system.Root.RequestFuture(n.door(), req, timeout+250*time.Millisecond).Result()
	if err != nil {
		return nil, err
	}
	wr, ok := res.(*actors.WriteResponse)
	if !ok {
		return nil, fmt.Errorf("protoraft: reply %T", res)
	}
	return wr, wr.GetError().Err()
}

// Write sends a put to the leader's front door.
func (p *protoraft) Write(ctx context.Context, key string, value []byte) error {
	n, err := p.current(ctx)
	if err != nil {
		return err
	}
	if _, err := write(n, key, value, 2*time.Second); err != nil {
		p.leader.CompareAndSwap(n, nil)
		return err
	}
	return nil
}

// Read sends a linearizable get through the Client in the leader's
// ActorSystem.
func (p *protoraft) Read(ctx context.Context, key string) error {
	n, err := p.current(ctx)
	if err != nil {
		return err
	}
	if _, err := n.client.Read(ctx, kvstore.Get(key)); err != nil {
		p.leader.CompareAndSwap(n, nil)
		return err
	}
	return nil
}

// Crash cuts the leader off from its peers with fault injection
// (faults.Network.Isolate): to the others that is a crash, and unlike
// stopping its group it skips the graceful handover. Its heartbeats are
// dropped, so the survivors notice exactly as they would notice a dead
// process; then the network heals and the group converges.
func (p *protoraft) Crash(ctx context.Context) (time.Duration, error) {
	old, err := p.current(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	p.faults.Isolate(raft.ServerID(old.peer.ID))
	took, index, err := p.firstWrite(ctx, old, start)
	p.faults.Heal()
	if err != nil {
		return 0, err
	}
	return took, p.converged(ctx, index)
}

// Planned stops the leader's group gracefully (Group.Stop hands leadership
// over first) and measures until the new leader commits a write; the
// writer starts with the stop, as clients would keep writing. The node is
// then spawned again from its directory.
func (p *protoraft) Planned(ctx context.Context) (time.Duration, error) {
	old, err := p.current(ctx)
	if err != nil {
		return 0, err
	}
	g := old.group()
	start := time.Now()
	var wg sync.WaitGroup
	stopped := make(chan error, 1)
	wg.Go(func() { stopped <- g.Stop() })
	took, index, err := p.firstWrite(ctx, old, start)
	wg.Wait()
	if serr := <-stopped; serr != nil {
		return 0, serr
	}
	old.mu.Lock()
	old.g = nil
	g, serr := cluster.Spawn(old.system, old.cfg)
	old.g = g
	old.mu.Unlock()
	if serr != nil {
		return 0, serr
	}
	if err != nil {
		return 0, err
	}
	return took, p.converged(ctx, index)
}

// firstWrite sends writes to the nodes other than old until one commits;
// it returns the time since start and the write's index.
func (p *protoraft) firstWrite(ctx context.Context, old *prNode, start time.Time) (time.Duration, uint64, error) {
	p.leader.Store(nil)
	deadline := start.Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range p.nodes {
			if n == old {
				continue
			}
			wr, err := write(n, "failover", []byte("x"), time.Second)
			if err == nil {
				took := time.Since(start)
				p.leader.Store(n)
				return took, wr.Index, nil
			}
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return 0, 0, err
		}
	}
	return 0, 0, errors.New("protoraft: no write committed within 60s of the failover")
}

// converged waits until every node agrees on one leader and has applied
// index, so the next trial starts from a healthy group.
func (p *protoraft) converged(ctx context.Context, index uint64) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		leaders := map[string]bool{}
		ok := true
		for _, n := range p.nodes {
			res, err := n.system.Root.RequestFuture(n.door(), &actors.StatusRequest{}, time.Second).Result()
			st, isStatus := res.(*actors.StatusResponse)
			if err != nil || !isStatus || st.GetError().Err() != nil || st.Leader == nil || st.CommandIndex < index {
				ok = false
				break
			}
			leaders[st.Leader.Id] = true
		}
		if ok && len(leaders) == 1 {
			p.leader.Store(nil)
			return nil
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return errors.New("protoraft: group did not converge within 60s")
}

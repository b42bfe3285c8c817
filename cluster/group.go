package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/policies"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/telemetry"
)

// startTimeout bounds how long Spawn waits for the node to open its data
// directory. NewRaft restores the latest snapshot before it returns, so a
// large state machine takes a while; a node that takes longer than this is
// stuck.
const startTimeout = time.Minute

// stopTimeout bounds how long Stop waits for the group's actors to stop:
// a leader hands leadership over first, which takes about an election
// timeout, and Raft's shutdown waits for its goroutines.
const stopTimeout = time.Minute

// Group is one running node of a group: its supervisor, node actor and
// stages, spawned by Spawn.
type Group struct {
	system     *actor.ActorSystem
	cfg        Config
	self       Peer
	supervisor *actor.PID
	kids       children
	shared     *shared
	stopOnce   sync.Once
}

// Spawn validates cfg and starts one node of a group in system: the
// supervisor, the node actor and the stages in front of it. It returns once
// the node has opened its data directory, or an error when the
// configuration is invalid, the data directory cannot be opened by this
// build or is used by another group of this process, or a node of the same
// group and ID already runs in system (it wraps actor.ErrNameExists).
//
// A node with Bootstrap and no state bootstraps the group; with state it
// just starts. A node without Bootstrap waits for a member to add it (Join).
func Spawn(system *actor.ActorSystem, cfg Config) (*Group, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	self := Peer{ID: cfg.Node.ID, Address: system.Address()}
	for i, p := range cfg.Bootstrap {
		// A wrong address here would be written into the group's first
		// configuration, where no restart can correct it.
		if p.ID == self.ID && p.Address != self.Address {
			return nil, actors.InvalidArgument(fmt.Sprintf("bootstrap[%d].address", i),
				"this node runs in the actor system at %q, not %q", self.Address, p.Address)
		}
	}
	if !cfg.Node.InMemory {
		if err := raftactor.CheckDataDir(cfg.Node.DataDir); err != nil {
			return nil, fmt.Errorf("cluster: group %s node %s: %w", cfg.Node.Group, cfg.Node.ID, err)
		}
	}
	nodeCfg := cfg.nodeConfig()
	authz, err := policies.New(cfg.Security, cfg.Node.Group, cfg.Node.ID, cfg.Node.Logger)
	if err != nil {
		return nil, err
	}
	// A committed policy change reaches this node's door from its state
	// machine, so every node enforces the policy of the log.
	nodeCfg.CheckPolicy, nodeCfg.OnPolicy = authz.CheckPolicy, authz.SetPolicy
	if p, _ := authz.Policy(); p != nil {
		nodeCfg.SpawnPolicy = p.Document()
	}
	// Made here, not by the metrics actor, so counters survive its
	// restarts and the node can report FSM and snapshot times to it.
	tel, err := telemetry.NewMetrics(cfg.Telemetry, cfg.Node.Group, cfg.Node.ID, cfg.Node.Logger)
	if err != nil {
		return nil, err
	}
	nodeCfg.Metrics = tel // also its raftactor.StorageObserver: health hears of log store failures
	// The node tells its outcomes to the stages that account for requests:
	// the limiter (to give permits back) and the metrics actor. Their PIDs
	// follow from the fixed names, so the node can be spawned first.
	base := supervisorName(cfg.Node.Group, cfg.Node.ID) + "/"
	nodeCfg.OutcomeObservers = []*actor.PID{
		actor.NewPID(system.Address(), base+limiterChild),
		actor.NewPID(system.Address(), base+metricsChild),
	}
	props, err := raftactor.Props(nodeCfg, cfg.NodeOptions...)
	if err != nil {
		return nil, err
	}
	if cfg.Node.Logger == nil {
		cfg.Node.Logger = zap.NewNop()
	}
	s := &shared{
		cfg:       cfg,
		nodeProps: props,
		authz:     authz,
		tel:       tel,
		log:       cfg.Node.Logger.With(zap.String("group", cfg.Node.Group), zap.String("node", cfg.Node.ID), zap.String("component", "cluster")),
		done:      make(chan struct{}),
	}
	if !cfg.Node.InMemory {
		release, err := claimDataDir(cfg.Node.DataDir, cfg.Node.Group, cfg.Node.ID)
		if err != nil {
			return nil, err
		}
		s.release = release
	}
	name := supervisorName(cfg.Node.Group, cfg.Node.ID)
	sup, err := system.Root.SpawnNamed(supervisorProps(s), name)
	if err != nil {
		s.finish()
		return nil, fmt.Errorf("cluster: group %s node %s already runs in this actor system: %w", cfg.Node.Group, cfg.Node.ID, err)
	}
	g := &Group{system: system, cfg: cfg, self: self, supervisor: sup, shared: s}
	if err := g.awaitStart(); err != nil {
		_ = g.Stop()
		return nil, fmt.Errorf("cluster: group %s node %s: %w", cfg.Node.Group, cfg.Node.ID, err)
	}
	s.log.Info("group node started", zap.String("front_door", g.kids.door.String()))
	return g, nil
}

// awaitStart waits until the supervisor has spawned its children and the
// node's start has ended (raftactor.AwaitStart).
func (g *Group) awaitStart() error {
	res, err := g.system.Root.RequestFuture(g.supervisor, childrenQuery{}, startTimeout).Result()
	if err != nil {
		return fmt.Errorf("waiting for the supervisor: %w", err)
	}
	g.kids = res.(children)
	if g.kids.err != nil {
		return g.kids.err
	}
	res, err = g.system.Root.RequestFuture(g.kids.node, raftactor.AwaitStart{}, startTimeout).Result()
	if err != nil {
		return fmt.Errorf("waiting for the node to start: %w", err)
	}
	started, ok := res.(*raftactor.StartResult)
	if !ok {
		return fmt.Errorf("node answered %T", res)
	}
	return started.Err
}

// FrontDoor is the group's front door: the first stage of the message path
// and the only PID clients should send requests to.
func (g *Group) FrontDoor() *actor.PID { return g.kids.door }

// Node is the node actor itself, behind the stages. Requests sent here skip
// authorization and limits; for tests and advanced use.
func (g *Group) Node() *actor.PID { return g.kids.node }

// Authorizer is the node's authorizer: the policy its front door enforces.
// Its Decide answers, by that policy, whether credentials may do an
// operation served outside the message path, such as the "metrics" and
// "health" endpoints of an HTTP front, so such a front needs no policy
// logic of its own.
func (g *Group) Authorizer() *policies.Authorizer { return g.shared.authz }

// Self is this node as a Peer: its ID and its ActorSystem's address. Give
// it to other nodes' Bootstrap lists or Join calls.
func (g *Group) Self() Peer { return g.self }

// RaftAddress is this node's Raft address: the one stored in the group's
// configuration and carried by NOT_LEADER hints.
func (g *Group) RaftAddress() string { return g.self.RaftAddress(g.cfg.Node.Group) }

// Done is closed once the group's actors have all stopped: after Stop, or
// when a child failed more often than its supervisor restarts it.
func (g *Group) Done() <-chan struct{} { return g.shared.done }

// Stop stops the group's actors and waits until they are gone. A node that
// leads hands leadership to a follower first, so the rest of the group does
// not wait an election timeout. Stop does not remove the node from the
// group (see Leave); a stopped node can be spawned again from its data
// directory. Calling Stop again is harmless.
func (g *Group) Stop() error {
	g.stopOnce.Do(func() { g.system.Root.Stop(g.supervisor) })
	select {
	case <-g.shared.done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("cluster: group %s node %s did not stop within %v", g.cfg.Node.Group, g.cfg.Node.ID, stopTimeout)
	}
}

// WaitLeader waits until this node knows a leader of its group and returns
// it (ID and Raft address), or ctx's error.
func (g *Group) WaitLeader(ctx context.Context) (*actors.Server, error) {
	for {
		res, err := g.system.Root.RequestFuture(g.kids.node, &actors.LeaderRequest{}, g.cfg.attemptTimeout()).Result()
		if err == nil {
			if lr, ok := res.(*actors.LeaderResponse); ok && lr.GetError().Err() == nil && lr.GetLeader().GetId() != "" {
				return lr.Leader, nil
			}
		}
		if err := sleep(ctx, pollInterval); err != nil {
			return nil, fmt.Errorf("cluster: waiting for a leader of %s: %w", g.cfg.Node.Group, err)
		}
	}
}

// dataDirs are the data directories the groups of this process use. Two
// nodes opening one directory would corrupt it, and within one process
// raft-wal's file lock does not fail but waits forever.
var dataDirs = struct {
	sync.Mutex
	owner map[string]string
}{owner: map[string]string{}}

// claimDataDir reserves dir for group/id until release is called.
func claimDataDir(dir, group, id string) (release func(), err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, actors.InvalidArgument("data_dir", "%v", err)
	}
	dataDirs.Lock()
	defer dataDirs.Unlock()
	if owner, ok := dataDirs.owner[abs]; ok {
		return nil, actors.InvalidArgument("data_dir", "%s is in use by %s in this process", abs, owner)
	}
	dataDirs.owner[abs] = supervisorName(group, id)
	return func() {
		dataDirs.Lock()
		delete(dataDirs.owner, abs)
		dataDirs.Unlock()
	}, nil
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Metrics is the node's metrics actor: send it an actors.HealthRequest, or
// give it to telemetry.HealthHandler.
func (g *Group) Metrics() *actor.PID { return g.kids.metrics }

// Telemetry is the node's telemetry: Registry() is where its metrics are
// (the Config's registry, or the node's private one).
func (g *Group) Telemetry() *telemetry.Metrics { return g.shared.tel }

// The node tells its telemetry of log store failures, which health reports.
var _ raftactor.StorageObserver = (*telemetry.Metrics)(nil)

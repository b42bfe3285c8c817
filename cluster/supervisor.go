package cluster

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/limiter"
	"github.com/protoraft/protoraft/policies"
	"github.com/protoraft/protoraft/telemetry"
)

// A child that panics more than maxRestarts times within restartWindow is
// stopped, and with it the group (see supervisor.Receive). A node that
// crashes on every start (a corrupt directory, a full disk) would otherwise
// spin forever, reopening its stores.
const (
	maxRestarts   = 10
	restartWindow = time.Minute
)

// shared is the part of a group that outlives any one incarnation of its
// supervisor actor.
type shared struct {
	cfg       Config
	nodeProps *actor.Props
	log       *zap.Logger
	// authz holds the policy in force; the door is its actor.
	authz *policies.Authorizer
	// tel is the node's telemetry; the metrics actor records into it.
	tel *telemetry.Metrics

	doneOnce sync.Once
	done     chan struct{}
	release  func()
}

// finish marks the group stopped: its actors are gone and its data
// directory is free for the next Spawn.
func (s *shared) finish() {
	s.doneOnce.Do(func() {
		if s.release != nil {
			s.release()
		}
		if s.tel != nil {
			s.tel.Close()
		}
		close(s.done)
	})
}

// childrenQuery asks the supervisor for its children; Spawn uses it to
// return only once they exist. Local only, never crosses remote.
type childrenQuery struct{}

// children are a group's actors, as spawned by its supervisor.
type children struct {
	node, metrics, limiter, door *actor.PID
	err                          error
}

// supervisor owns one node of a group: it spawns the node and the stages in
// front of it, restarts them when they panic, and stops the group when one
// is gone for good.
type supervisor struct {
	s        *shared
	kids     children
	stopping bool
}

func supervisorProps(s *shared) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &supervisor{s: s} },
		actor.WithSupervisor(actor.NewOneForOneStrategy(maxRestarts, restartWindow, actor.DefaultDecider)))
}

// Receive implements actor.Actor.
func (a *supervisor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.kids = a.spawnChildren(ctx)
		if a.kids.err != nil {
			a.s.log.Error("group could not spawn its actors", zap.Error(a.kids.err))
		}
	case *actor.Stopping, *actor.Restarting:
		// The children now stop because this actor asked them to.
		a.stopping = true
	case *actor.Terminated:
		if !a.stopping {
			a.s.log.Error("group actor stopped unexpectedly; stopping the group", zap.String("actor", m.Who.Id))
			a.stopping = true
			ctx.Stop(ctx.Self())
		}
	case *actor.Stopped:
		a.s.finish()
	case childrenQuery:
		ctx.Respond(a.kids)
	}
}

// spawnChildren spawns the node first and each stage after the one it
// forwards to, so no stage ever holds the PID of an actor not yet spawned.
func (a *supervisor) spawnChildren(ctx actor.Context) children {
	var k children
	var err error
	if k.node, err = ctx.SpawnNamed(a.s.nodeProps, nodeChild); err != nil {
		k.err = err
		return k
	}
	if k.metrics, err = ctx.SpawnNamed(telemetry.Props(a.s.tel, k.node), metricsChild); err != nil {
		k.err = err
		return k
	}
	if k.limiter, err = ctx.SpawnNamed(limiter.Props(a.s.cfg.Limits, limiter.Options{Next: k.node, Observers: []*actor.PID{k.metrics}, RequestTimeout: a.s.cfg.attemptTimeout(), Logger: a.s.log}), limiterChild); err != nil {
		k.err = err
		return k
	}
	if k.door, err = ctx.SpawnNamed(a.s.authz.Props(k.limiter, k.metrics), frontDoorChild); err != nil {
		k.err = err
	}
	return k
}

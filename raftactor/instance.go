package raftactor

import (
	"fmt"
	"runtime"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/internal/transport"
)

// instance is one open Raft server of a node: hashicorp/raft, its stores in
// the data directory, the FSM, the transport, and the goroutines that serve
// them (appender, event publisher). Opening and closing it is the node's
// only I/O outside Raft's own goroutines, and both run on goroutines of
// their own (see lifecycle.go), never in the node's Receive.
type instance struct {
	raft      *raft.Raft
	fsm       *fsm
	stores    *stores
	transport *transport.Transport
	events    *eventPublisher
	appender  *appender
	ready     *termReadiness
	clock     *leaderClock
}

// openInstance opens the data directory and starts Raft, bootstrapping a
// new group when cfg says so and the directory holds no state. On error
// everything it opened is closed again: the next start (a supervisor
// restart) opens the same files, and bolt's lock on a meta database left
// open would block it forever.
func openInstance(cfg Config, timeouts Timeouts, system *actor.ActorSystem, addr raft.ServerAddress, log *zap.Logger) (*instance, error) {
	defer slow(log, "start")()
	if err := cfg.checkReachable(system); err != nil {
		return nil, err
	}
	inst := &instance{ready: newTermReadiness(), clock: &leaderClock{mono: cfg.Clock.Monotonic}}
	opened := false
	defer func() {
		// Also when the user's state machine factory panicked.
		if !opened {
			inst.close(false, log)
		}
	}()
	st, err := openStores(cfg)
	if err != nil {
		return nil, err
	}
	inst.stores = st
	inst.fsm = newFSM(cfg.NewStateMachine(), cfg.SessionTTL)
	inst.fsm.system.onPolicy = cfg.OnPolicy
	inst.transport = transport.New(transport.Config{
		System:             system,
		Group:              cfg.Group,
		LocalID:            raft.ServerID(cfg.ID),
		LocalAddr:          addr,
		Faults:             cfg.Faults,
		RPCTimeout:         cfg.RPCTimeout,
		Heartbeat:          timeouts.Heartbeat,
		SnapshotChunkSize:  cfg.SnapshotChunkSize,
		Logger:             log.With(zap.String("component", "transport")),
		ClusterKey:         cfg.ClusterKey,
		MaxAppendsInFlight: cfg.MaxAppendsInFlight,
	})
	rc := cfg.raftConfig(timeouts)
	if err := recoverIfRequested(cfg, rc, st, inst.transport, addr, log); err != nil {
		return nil, err
	}
	if len(cfg.Bootstrap) > 0 {
		has, err := raft.HasExistingState(st.logs, st.stable, st.snaps)
		if err != nil {
			return nil, fmt.Errorf("inspect existing state: %w", err)
		}
		if !has {
			var servers []raft.Server
			for _, v := range cfg.Bootstrap {
				servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(v.ID), Address: raft.ServerAddress(v.Address)})
			}
			if err := raft.BootstrapCluster(rc, st.logs, st.stable, st.snaps, inst.transport, raft.Configuration{Servers: servers}); err != nil {
				return nil, fmt.Errorf("bootstrap: %w", err)
			}
			log.Info("bootstrapped a new group", zap.Int("voters", len(servers)))
		}
	}
	var fsm raft.FSM = inst.fsm
	if cfg.Metrics != nil {
		fsm = &measuredFSM{f: inst.fsm, m: cfg.Metrics}
	}
	r, err := newRaft(rc, fsm, st, inst.transport)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	inst.raft = r
	inst.appender = startAppender(r)
	inst.events = startEventPublisher(system, r, cfg.Group, cfg.ID, log)
	opened = true
	return inst, nil
}

// newRaft is raft.NewRaft with its panics turned into errors: it panics
// when the log store cannot return an entry it holds, and a node whose
// directory is damaged should refuse requests with the reason (INTERNAL),
// not panic in a loop of supervisor restarts. A last entry the log store
// reports but cannot return is ErrDamagedDataDir too, checked before raft
// reads it: raft returns that as an error of its own text, which nothing
// could tell from another failure to start, and the documented recovery
// (remove, wipe, join) applies to ErrDamagedDataDir alone.
func newRaft(rc *raft.Config, fsm raft.FSM, st *stores, trans raft.Transport) (r *raft.Raft, err error) {
	if err := checkLastEntry(st); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: raft could not read its log: %v", ErrDamagedDataDir, p)
		}
	}()
	return raft.NewRaft(rc, fsm, st.logs, st.stable, st.snaps, trans)
}

// checkLastEntry reads the log's last entry, as raft.NewRaft does first.
func checkLastEntry(st *stores) error {
	last, err := st.logs.LastIndex()
	if err != nil {
		return damageError(st.logDir, "the log has no readable last index: %v", err)
	}
	if last == 0 {
		return nil
	}
	var l raft.Log
	if err := st.logs.GetLog(last, &l); err != nil {
		return damageError(st.logDir, "the log reports its last entry at index %d but cannot read it: %v", last, err)
	}
	return nil
}

// close shuts Raft down and closes the stores; a leader that stops on
// purpose (handover) first hands leadership to a follower, so the group
// does not wait an election timeout for a new leader. It closes whatever
// is open, also after an open that failed half way. Each part is detached
// before it is closed, so that a close interrupted by a panic and run again
// never closes one part twice.
func (i *instance) close(handover bool, log *zap.Logger) {
	defer slow(log, "stop")()
	if r := i.raft; r != nil {
		i.raft = nil
		if handover && r.State() == raft.Leader {
			start := time.Now()
			if err := r.LeadershipTransfer().Error(); err != nil {
				log.Warn("leadership transfer before stop failed", zap.Error(err))
			} else {
				log.Info("leadership transferred before stop", zap.Duration("took", time.Since(start)))
			}
		}
		// Closing the transport first fails RPCs stuck on unreachable
		// peers at once; otherwise Shutdown waits for Raft's replication
		// goroutines to time out on them.
		i.transport.Close()
		if err := r.Shutdown().Error(); err != nil {
			log.Warn("raft shutdown", zap.Error(err))
		}
		i.ready.stop()
		log.Info("node stopped")
	}
	if t := i.transport; t != nil {
		i.transport = nil
		t.Close()
	}
	if a := i.appender; a != nil {
		i.appender = nil
		a.stop()
	}
	if e := i.events; e != nil {
		i.events = nil
		e.stop()
	}
	if st := i.stores; st != nil {
		i.stores = nil
		if err := st.close(); err != nil {
			log.Warn("close stores", zap.Error(err))
		}
	}
}

// slow logs, with every goroutine's stack, when the step it is deferred
// around (an open or a close) takes longer than slowLifecycle: a step that
// hangs makes the node look dead, and the stacks say where it hangs.
func slow(log *zap.Logger, step string) func() {
	start := time.Now()
	t := time.AfterFunc(slowLifecycle, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		log.Warn("node "+step+" is taking long", zap.Duration("so_far", time.Since(start)), zap.ByteString("goroutines", buf))
	})
	return func() { t.Stop() }
}

// slowLifecycle is when an open or a close is reported as slow.
const slowLifecycle = 10 * time.Second

package raftactor

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
)

// Node is the node actor: one Raft server of a group. Spawn it from Props;
// its PID's address and ID form its Raft address (AddressOf), so spawn it
// under a name that stays the same across process restarts.
type Node struct {
	cfg  Config
	keep *kept
	log  *zap.Logger

	self *actor.PID
	// inbox is this node's own PID for messages to itself, a copy nobody
	// else holds: a PID caches the process it resolved first, and a PID
	// others use from another ActorSystem of the process caches that
	// system's remote route, where messages to self would be lost.
	inbox  *actor.PID
	system *actor.ActorSystem
	addr   raft.ServerAddress

	raft      *raft.Raft
	fsm       *fsm
	stores    *stores
	transport *Transport
	events    *eventPublisher
	ready     *termReadiness
	readIndex readIndexBatcher
	// batch holds the writes waiting to go into the log as one entry.
	batch writeBatch
	// appender hands closed batches to Raft in order.
	appender *appender
	// reads holds the reads waiting to be served together.
	reads readBatch

	// startErr is why the node could not start; every request is then
	// refused with it.
	startErr error

	// current describes the request Receive is handling, for its outcome.
	current requestInfo
}

// kept is what survives a supervisor restart of the node actor: nothing of
// Raft's state (that comes back from the data directory), only settings
// changed at run time.
type kept struct {
	mu       sync.Mutex
	timeouts Timeouts
}

func (k *kept) get() Timeouts {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.timeouts
}

func (k *kept) set(t Timeouts) {
	k.mu.Lock()
	k.timeouts = t
	k.mu.Unlock()
}

// Props validates cfg and returns the props of a node actor. opts are added
// to the props (a test can add receiver middleware, for instance, to inject
// a panic).
func Props(cfg Config, opts ...actor.PropsOption) (*actor.Props, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	// Every line of the node, Raft's and the stores' included, names it:
	// several nodes often share one process and one logger.
	cfg.Logger = cfg.Logger.With(zap.String("group", cfg.Group), zap.String("node", cfg.ID))
	k := &kept{timeouts: cfg.Timeouts}
	producer := func() actor.Actor { return &Node{cfg: cfg, keep: k} }
	return actor.PropsFromProducer(producer, opts...), nil
}

// Receive implements actor.Actor.
func (n *Node) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		n.start(ctx)
	case *actor.Stopping:
		n.stop(true)
	case *actor.Restarting:
		// A panic: come back fast from the directory; no handover.
		n.stop(false)
	case flushWrites:
		n.flushWrites(true)
	case flushReads:
		n.flushReads()
	case *actors.RaftRPC:
		if n.transport == nil {
			ctx.Respond(&actors.RaftRPCReply{Error: "node not started"})
			return
		}
		n.transport.HandleRPC(ctx, m)
	case actors.Request:
		n.current = n.describe(ctx, m)
		if n.raft == nil {
			n.refuse(ctx, m)
			return
		}
		if err := n.admit(m, n.current.start); err != nil {
			if resp := actors.ErrorReply(m, err); resp != nil {
				n.respond(ctx, resp)
			}
			return
		}
		n.serve(ctx, m)
	}
}

// serve dispatches a protocol request.
func (n *Node) serve(ctx actor.Context, req actors.Request) {
	switch m := req.(type) {
	case *actors.WriteRequest:
		n.write(ctx, m)
	case *actors.ReadRequest:
		n.read(ctx, m)
	case *actors.LeaderRequest:
		n.respond(ctx, n.leader())
	case *actors.MembershipRequest:
		n.changeMembership(ctx, m)
	case *actors.TransferLeadershipRequest:
		n.transferLeadership(ctx, m)
	case *actors.MembersRequest:
		n.members(ctx, m)
	case *actors.UpdateTimeoutsRequest:
		n.updateTimeouts(ctx, m)
	case *actors.GetTimeoutsRequest:
		n.respond(ctx, &actors.TimeoutsResponse{Timeouts: timeoutsToProto(n.currentTimeouts())})
	case *actors.StatusRequest:
		n.status(ctx, m)
	case *actors.SnapshotRequest:
		n.snapshot(ctx, m)
	case *actors.PolicyUpdateRequest:
		n.updatePolicy(ctx, m)
	}
}

// refuse answers a request while the node is not running.
func (n *Node) refuse(ctx actor.Context, req actors.Request) {
	err := actors.Errorf(actors.Code_UNAVAILABLE, "node %s is not running", n.cfg.ID)
	if n.startErr != nil {
		err = actors.Errorf(actors.Code_INTERNAL, "node %s could not start: %v", n.cfg.ID, n.startErr)
	}
	if resp := actors.ErrorReply(req, err); resp != nil {
		n.respond(ctx, resp)
	}
}

// start opens the data directory and starts Raft. It runs in Started, so
// requests that arrive meanwhile wait in the mailbox.
func (n *Node) start(ctx actor.Context) {
	defer n.slow("start")()
	n.self = ctx.Self()
	n.inbox = actor.NewPID(n.self.Address, n.self.Id)
	n.system = ctx.ActorSystem()
	n.addr = AddressOf(n.self)
	n.log = n.cfg.Logger
	if err := n.open(); err != nil {
		n.startErr = err
		n.log.Error("node could not start", zap.Error(err))
		n.closeStores()
		return
	}
	n.log.Info("node started", zap.String("address", string(n.addr)),
		zap.Uint64("last_index", n.raft.LastIndex()), zap.Uint64("applied_index", n.raft.AppliedIndex()))
}

func (n *Node) open() error {
	st, err := openStores(n.cfg)
	if err != nil {
		return err
	}
	n.stores = st
	n.fsm = newFSM(n.cfg.NewStateMachine(), n.cfg.SessionTTL)
	n.fsm.system.onPolicy = n.cfg.OnPolicy
	n.ready = &termReadiness{}
	n.transport = NewTransport(TransportConfig{
		System:             n.system,
		Group:              n.cfg.Group,
		LocalID:            raft.ServerID(n.cfg.ID),
		LocalAddr:          n.addr,
		Faults:             n.cfg.Faults,
		RPCTimeout:         n.cfg.RPCTimeout,
		SnapshotChunkSize:  n.cfg.SnapshotChunkSize,
		Logger:             n.log.With(zap.String("component", "transport")),
		LoggerNamed:        true,
		ClusterKey:         n.cfg.ClusterKey,
		MaxAppendsInFlight: n.cfg.MaxAppendsInFlight,
	})
	rc := n.cfg.raftConfig(n.keep.get())
	if len(n.cfg.Bootstrap) > 0 {
		has, err := raft.HasExistingState(st.logs, st.stable, st.snaps)
		if err != nil {
			n.transport.Close()
			return fmt.Errorf("inspect existing state: %w", err)
		}
		if !has {
			var servers []raft.Server
			for _, p := range n.cfg.Bootstrap {
				servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address)})
			}
			err := raft.BootstrapCluster(rc, st.logs, st.stable, st.snaps, n.transport, raft.Configuration{Servers: servers})
			if err != nil {
				n.transport.Close()
				return fmt.Errorf("bootstrap: %w", err)
			}
			n.log.Info("bootstrapped a new group", zap.Int("voters", len(servers)))
		}
	}
	r, err := newRaft(rc, n.raftFSM(), st, n.transport)
	if err != nil {
		n.transport.Close()
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	n.appender = startAppender(r)
	n.transport.SetReadIndexHandler(n.readPath().leaderReadIndex)
	n.transport.SetProbeHandler(func(from raft.ServerID) *actors.LeadershipProbeAnswer { return answerProbe(r, from) })
	n.events = startEventPublisher(n.system, r, n.cfg.Group, n.cfg.ID, n.log)
	return nil
}

// newRaft is raft.NewRaft with its panics turned into errors: it panics
// when the log store cannot return an entry it holds, and a node whose
// directory is damaged should refuse requests with the reason (INTERNAL),
// not panic in a loop of supervisor restarts.
func newRaft(rc *raft.Config, fsm raft.FSM, st *stores, trans raft.Transport) (r *raft.Raft, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: raft could not read its log: %v", ErrDamagedDataDir, p)
		}
	}()
	return raft.NewRaft(rc, fsm, st.logs, st.stable, st.snaps, trans)
}

// stop shuts Raft down and closes the stores; a leader that stops on
// purpose first hands leadership to a follower, so the group does not wait
// an election timeout for a new leader. It closes whatever is open, also
// after a start that failed or panicked half way: the next start (a
// supervisor restart) opens the same files, and bolt's lock on a meta
// database left open would block it forever.
func (n *Node) stop(handover bool) {
	defer n.slow("stop")()
	stopping := actors.Errorf(actors.Code_UNAVAILABLE, "node %s is stopping", n.cfg.ID)
	n.failBatch(stopping)
	n.failReads(stopping)
	if r := n.raft; r != nil {
		n.raft = nil
		if handover && r.State() == raft.Leader {
			start := time.Now()
			if err := r.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer before stop failed", zap.Error(err))
			} else {
				n.log.Info("leadership transferred before stop", zap.Duration("took", time.Since(start)))
			}
		}
		// Closing the transport first fails RPCs stuck on unreachable
		// peers at once; otherwise Shutdown waits for Raft's replication
		// goroutines to time out on them.
		n.transport.Close()
		if err := r.Shutdown().Error(); err != nil {
			n.log.Warn("raft shutdown", zap.Error(err))
		}
		n.log.Info("node stopped")
	}
	// Each part is detached before it is closed: if closing one panics,
	// the supervisor's next restart runs stop again and closes the rest,
	// never the same part twice.
	if t := n.transport; t != nil {
		t.Close()
	}
	if a := n.appender; a != nil {
		n.appender = nil
		a.stop()
	}
	if e := n.events; e != nil {
		n.events = nil
		e.stop()
	}
	n.closeStores()
}

// slow logs, with every goroutine's stack, when the step it is deferred
// around (start or stop) takes longer than slowLifecycle: the node's
// mailbox waits for it, so a step that hangs makes the node look dead, and
// the stacks say where it hangs.
func (n *Node) slow(step string) func() {
	start := time.Now()
	t := time.AfterFunc(slowLifecycle, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		n.cfg.Logger.Warn("node "+step+" is taking long", zap.Duration("so_far", time.Since(start)), zap.ByteString("goroutines", buf))
	})
	return func() { t.Stop() }
}

// slowLifecycle is when a start or stop is reported as slow.
const slowLifecycle = 10 * time.Second

func (n *Node) closeStores() {
	st := n.stores
	if st == nil {
		return
	}
	n.stores = nil
	if err := st.close(); err != nil {
		n.cfg.Logger.Warn("close stores", zap.Error(err))
	}
}

// leader answers from Raft's own state.
func (n *Node) leader() *actors.LeaderResponse {
	r := n.raft
	return &actors.LeaderResponse{
		Leader:   leaderOf(r),
		IsLeader: r.State() == raft.Leader,
		Term:     r.CurrentTerm(),
		Node:     &actors.Server{Id: n.cfg.ID, Address: string(n.addr)},
	}
}

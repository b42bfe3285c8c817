package raftactor

import (
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/transport"
	"github.com/protoraft/protoraft/internal/wire"
)

// Node is the node actor: one Raft server of a group. Spawn it from Props;
// its PID's address and ID form its Raft address (AddressOf), so spawn it
// under a name that stays the same across process restarts.
//
// It answers the protocol of package actors: writes, reads at three
// consistencies, leadership, membership, timeouts, status, snapshots and
// policy updates, each with its typed response; and AwaitStart. Peers'
// Raft RPCs reach it as messages too.
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

	// inc is this incarnation's start (lifecycle.go); run is its instance
	// once it opened, nil while the node starts, could not start, or stops.
	inc      *incarnation
	run      *instance
	closer   *closerWait
	stopping bool
	// startErr is why the node could not start; every request is then
	// refused with it.
	startErr error
	// startRetries counts the starts in a row that failed for lack of
	// space; retryTimer tries the next one.
	startRetries int
	retryTimer   *time.Timer

	readIndex readIndexBatcher
	// batch holds the writes waiting to go into the log as one entry.
	batch writeBatch
	// reads holds the reads waiting to be served together.
	reads readBatch

	// current describes the request Receive is handling, for its outcome.
	current requestInfo
}

// errNodeStopping answers AwaitStart on a node that stops.
var errNodeStopping = errors.New("node is stopping")

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
		n.self = ctx.Self()
		n.inbox = actor.NewPID(n.self.Address, n.self.Id)
		n.system = ctx.ActorSystem()
		n.addr = AddressOf(n.self)
		n.log = n.cfg.Logger
		n.begin(ctx)
	case started:
		n.opened(m.inc)
	case *actor.Stopping:
		n.fail(actors.Errorf(actors.Code_UNAVAILABLE, "node %s is stopping", n.cfg.ID))
		n.end(true)
	case *actor.Restarting:
		// A panic: come back fast from the directory; no handover.
		n.fail(actors.Errorf(actors.Code_UNAVAILABLE, "node %s is restarting", n.cfg.ID))
		n.end(false)
	case AwaitStart:
		if ctx.Sender() == nil {
			return // told, not asked: no one to answer
		}
		if n.run == nil && n.startErr == nil && !n.stopping {
			n.keep.await(ctx.Sender())
			return
		}
		ctx.Respond(n.startResult())
	case reopenLog:
		if m.inc == n.inc && n.run != nil && !n.stopping {
			n.log.Error("the log cannot go on after a failed segment rotation or truncation; reopening the data directory")
			n.reopen("the log could not start a new segment file")
		}
	case retryStart:
		if m.inc == n.inc && n.startErr != nil && !n.stopping {
			n.reopen("trying the start again: " + n.startErr.Error())
		}
	case flushWrites:
		n.flushWrites(true)
	case flushReads:
		n.flushReads()
	case *wire.RaftRPC:
		if n.run == nil {
			err := transport.ErrNotReady
			if n.stopping {
				err = transport.ErrTransportClosed
			}
			ctx.Respond(transport.ErrorReply(err))
			return
		}
		n.run.transport.HandleRPC(ctx.Sender(), m)
	case actors.Request:
		n.current = n.describe(ctx, m)
		if n.run == nil {
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

// opened takes the result of the incarnation's open: the node runs, or
// refuses every request with the reason it could not start.
func (n *Node) opened(inc *incarnation) {
	if inc != n.inc || n.stopping {
		return // end closes it
	}
	if inc.panicked != nil {
		panic(inc.panicked)
	}
	if inc.err != nil {
		n.startErr = inc.err
		if errors.Is(inc.err, ErrDamagedDataDir) {
			n.log.Error("node could not start: its data directory is damaged; remove the node from the group, delete the directory and add it again",
				zap.String("data_dir", n.cfg.DataDir), zap.Error(inc.err))
		} else {
			n.log.Error("node could not start", zap.Error(inc.err))
		}
		n.answerAwaiting()
		if noSpace(inc.err) {
			n.retryStartLater(inc)
		}
		return
	}
	n.startRetries = 0
	n.run = inc.inst
	n.run.transport.SetPeerHandler(n.peerHandler())
	n.log.Info("node started", zap.String("address", string(n.addr)),
		zap.Uint64("last_index", n.run.raft.LastIndex()), zap.Uint64("applied_index", n.run.raft.AppliedIndex()))
	n.answerAwaiting()
}

// fail answers every write and read waiting to be batched with err.
func (n *Node) fail(err *actors.Error) {
	n.failBatch(err)
	n.failReads(err)
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
	case *actors.SnapshotReadRequest:
		n.readSnapshot(ctx, m)
	case *actors.PolicyUpdateRequest:
		n.updatePolicy(ctx, m)
	case *actors.PolicyGetRequest:
		n.getPolicy(ctx, m)
	}
}

// refuse answers a request while the node is not running: UNAVAILABLE
// while it starts or stops (or tries its start again for lack of space),
// INTERNAL when it could not start.
func (n *Node) refuse(ctx actor.Context, req actors.Request) {
	var err *actors.Error
	switch {
	case n.startErr != nil && noSpace(n.startErr):
		err = actors.Errorf(actors.Code_UNAVAILABLE, "node %s could not start and tries again: %v", n.cfg.ID, n.startErr)
	case n.startErr != nil:
		err = actors.Errorf(actors.Code_INTERNAL, "node %s could not start: %v", n.cfg.ID, n.startErr)
	case n.stopping:
		err = actors.Errorf(actors.Code_UNAVAILABLE, "node %s is stopping", n.cfg.ID)
	default:
		err = actors.Errorf(actors.Code_UNAVAILABLE, "node %s is starting", n.cfg.ID)
	}
	if resp := actors.ErrorReply(req, err); resp != nil {
		n.respond(ctx, resp)
	}
}

// leader answers from Raft's own state.
func (n *Node) leader() *actors.LeaderResponse {
	r := n.run.raft
	return &actors.LeaderResponse{
		Leader:   leaderOf(r),
		IsLeader: r.State() == raft.Leader,
		Term:     r.CurrentTerm(),
		Node:     &actors.Server{Id: n.cfg.ID, Address: string(n.addr)},
	}
}

// AddressOf returns the Raft address of a node actor: pid.Address + "/" +
// pid.Id. Raft stores peer addresses in its replicated configuration, so
// the address names the node actor itself, not just its host, for any
// member to reach it after a restart or a leader change.
func AddressOf(pid *actor.PID) raft.ServerAddress { return wire.AddressOf(pid) }

// PIDOf parses a Raft address made by AddressOf back into the node actor's
// PID.
func PIDOf(addr raft.ServerAddress) (*actor.PID, error) { return wire.PIDOf(addr) }

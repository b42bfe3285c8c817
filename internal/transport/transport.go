package transport

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/inbox"
	"github.com/protoraft/protoraft/internal/link"
	"github.com/protoraft/protoraft/internal/wire"
)

// Defaults applied by New to zero fields of Config.
const (
	// DefaultRPCTimeout bounds every RPC: raft sets no timeouts of its own,
	// so without one a lost message would stall a replication goroutine.
	DefaultRPCTimeout = 2 * time.Second
	// DefaultSnapshotChunkSize keeps each snapshot message far below gRPC's
	// 4 MiB limit, which applies to a whole batch of remote messages.
	DefaultSnapshotChunkSize = 512 * 1024
	// DefaultInboundQueue bounds the RPCs waiting for raft, so a stalled
	// raft turns into error replies instead of unbounded memory.
	DefaultInboundQueue = 256
	// DefaultFailFastThreshold is how many consecutive failures mark a peer
	// as down; after that it gets immediate errors instead of timeouts.
	DefaultFailFastThreshold = 3
	// DefaultFailFastBackoff is how long a down peer gets immediate errors
	// before one probe RPC is let through, unless half the node's
	// heartbeat timeout is shorter (Config.Heartbeat).
	DefaultFailFastBackoff = 500 * time.Millisecond
	// maxDropWait is how long a dropped outbound RPC takes to fail: a lost
	// message is really a timeout, but waiting the whole RPCTimeout would
	// only slow tests down without exercising anything new.
	maxDropWait = 50 * time.Millisecond
)

// Config configures a Transport. Zero values get the defaults above.
type Config struct {
	// System is the actor system the node actor lives in; RPCs and replies
	// are sent through its root context.
	System *actor.ActorSystem
	// Group names the Raft group. It is put in every outbound RPC and inbound
	// RPCs for another group are refused, so two groups sharing an actor
	// system or a host can never mix their logs.
	Group string
	// LocalID is this node's raft server ID; fault rules are keyed by it.
	LocalID raft.ServerID
	// LocalAddr is AddressOf(node actor's own PID).
	LocalAddr raft.ServerAddress
	// Faults injects failures; nil means a perfect network.
	Faults *faults.Network
	// RPCTimeout bounds each RPC and each snapshot chunk.
	RPCTimeout time.Duration
	// SnapshotChunkSize bounds the data in one snapshot message.
	SnapshotChunkSize int
	// InboundQueue bounds RPCs waiting to be handed to raft.
	InboundQueue int
	// FailFastThreshold is the number of consecutive failures that make a
	// peer fail fast.
	FailFastThreshold int
	// FailFastBackoff is how long a peer fails fast before a probe; the
	// transport shortens it to half of Heartbeat when that is less.
	FailFastBackoff time.Duration
	// Heartbeat is the node's Raft heartbeat timeout (SetHeartbeat changes
	// it at run time): a peer that answers again is used again within one
	// heartbeat interval. Zero leaves FailFastBackoff as it is.
	Heartbeat time.Duration
	// Logger receives transport diagnostics, as they are (the caller names
	// the node); nil logs nothing.
	Logger *zap.Logger
	// ClusterKey, when set, signs every outbound RPC and refuses inbound
	// ones without a valid MAC (see rpcauth.go).
	ClusterKey []byte
	// MaxAppendsInFlight bounds the AppendEntries RPCs one replication
	// pipeline keeps in flight to a follower (see pipeline.go);
	// 1 turns pipelining off, so raft sends one AppendEntries at a time and
	// waits for each reply. Keep it below the followers' InboundQueue, or
	// a burst is refused there with ErrQueueFull.
	MaxAppendsInFlight int
}

// Transport carries Raft RPCs as actor messages between the node actors of
// one group. It is a raft.Transport: raft's goroutines call the outbound
// methods and may block in them, while the node actor (and the system's
// link) feed inbound RPCs in through HandleRPC, which never blocks.
type Transport struct {
	cfg      Config
	log      *zap.Logger
	consumer chan raft.RPC
	queue    chan inboundRPC
	shutdown chan struct{}

	closeOnce sync.Once
	wg        sync.WaitGroup
	auth      *rpcAuth

	mu          sync.Mutex // guards everything below
	closed      bool
	heartbeatFn func(raft.RPC)
	peerFn      PeerHandler
	peers       map[raft.ServerAddress]*peerHealth
	transfers   map[transferKey]*inTransfer

	nextTransfer atomic.Uint64
	heartbeat    atomic.Int64 // the node's heartbeat timeout, in nanoseconds
	now          func() time.Time

	link       *link.Link // the system's Raft link; nil when it has none
	linkTarget string     // this node actor's ID, as the link knows it
}

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
	_ link.Handler     = (*Transport)(nil)
)

// PeerHandler answers the RPCs between node actors that are not Raft's own
// (the node's leadership probes and read index requests): every body the
// transport does not hand to Raft itself. It is called from a node actor's
// Receive or a link's reader, so it must not block; it answers with reply,
// exactly once, at once or later from a goroutine of its own.
type PeerHandler func(rpc *wire.RaftRPC, reply Reply)

// Reply answers a peer RPC. to is the asking node's server ID: fault
// injection decides by it whether the answer gets through.
type Reply func(to raft.ServerID, answer *wire.RaftRPCReply)

// inboundRPC is one RPC waiting for the dispatcher. respond is false when
// someone else (a snapshot transfer) waits for raft's response; onFail lets
// that someone know the RPC never reached raft.
type inboundRPC struct {
	rpc     raft.RPC
	respCh  chan raft.RPCResponse
	sender  *actor.PID
	fromID  raft.ServerID
	respond bool
	onFail  func(error)
}

// peerHealth is the fail-fast state of one peer.
type peerHealth struct {
	failures  int
	openUntil time.Time // no RPC goes to the peer before, once it fails fast
	// last is the latest failure's error, which the fail-fast answer
	// carries: a peer down because it stopped on purpose (dead letters,
	// not ready) is routine where one that times out is not, and raft's
	// log records are leveled by the cause (raftactor's raftLogLevel).
	last error
}

// New returns a transport ready to be handed to raft.NewRaft. Its
// dispatcher runs until Close.
func New(cfg Config) *Transport {
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = DefaultRPCTimeout
	}
	if cfg.SnapshotChunkSize <= 0 {
		cfg.SnapshotChunkSize = DefaultSnapshotChunkSize
	}
	if cfg.InboundQueue <= 0 {
		cfg.InboundQueue = DefaultInboundQueue
	}
	if cfg.FailFastThreshold <= 0 {
		cfg.FailFastThreshold = DefaultFailFastThreshold
	}
	if cfg.FailFastBackoff <= 0 {
		cfg.FailFastBackoff = DefaultFailFastBackoff
	}
	if cfg.MaxAppendsInFlight <= 0 {
		cfg.MaxAppendsInFlight = DefaultMaxAppendsInFlight
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	t := &Transport{
		cfg:       cfg,
		log:       log,
		consumer:  make(chan raft.RPC),
		queue:     make(chan inboundRPC, cfg.InboundQueue),
		shutdown:  make(chan struct{}),
		peers:     make(map[raft.ServerAddress]*peerHealth),
		transfers: make(map[transferKey]*inTransfer),
		auth:      newRPCAuth(cfg.ClusterKey),
		now:       time.Now,
	}
	t.heartbeat.Store(int64(cfg.Heartbeat))
	// Transfer IDs start from the clock so a restarted sender does not reuse
	// the ID of a transfer the receiver still has open.
	t.nextTransfer.Store(uint64(time.Now().UnixNano()))
	t.link = link.Of(cfg.System)
	t.serveLink()
	t.wg.Add(1)
	go t.dispatch()
	return t
}

// SetHeartbeat tells the transport the node's heartbeat timeout when Raft's
// timeouts change at run time; it bounds the fail-fast backoff from the
// next failure or probe on.
func (t *Transport) SetHeartbeat(d time.Duration) { t.heartbeat.Store(int64(d)) }

// Consumer implements raft.Transport.
func (t *Transport) Consumer() <-chan raft.RPC { return t.consumer }

// LocalAddr implements raft.Transport.
func (t *Transport) LocalAddr() raft.ServerAddress { return t.cfg.LocalAddr }

// EncodePeer implements raft.Transport: the address bytes as they are, since
// an actor address is already a self-contained string.
func (t *Transport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer implements raft.Transport.
func (t *Transport) DecodePeer(b []byte) raft.ServerAddress { return raft.ServerAddress(b) }

// SetHeartbeatHandler implements raft.Transport. Heartbeats then skip the
// dispatcher queue so a long operation in raft's main loop (a snapshot
// install) does not make followers miss heartbeats and start elections.
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.heartbeatFn = cb
}

// AppendEntries implements raft.Transport.
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	reply, err := t.Call(id, target, appendEntriesRPC(args), t.cfg.RPCTimeout)
	if err != nil {
		return err
	}
	return appendEntriesReply(reply, resp)
}

func appendEntriesRPC(args *raft.AppendEntriesRequest) *wire.RaftRPC {
	return &wire.RaftRPC{Body: &wire.RaftRPC_AppendEntries{AppendEntries: wire.EncodeAppendEntries(args)}}
}

// appendEntriesReply fills resp from reply; resp is left alone when the
// reply is not an AppendEntries answer.
func appendEntriesReply(reply *wire.RaftRPCReply, resp *raft.AppendEntriesResponse) error {
	r := reply.GetAppendEntries()
	if r == nil {
		return unexpectedReply(reply)
	}
	*resp = *r.Decode()
	return nil
}

// RequestVote implements raft.Transport.
func (t *Transport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	reply, err := t.Call(id, target, &wire.RaftRPC{Body: &wire.RaftRPC_RequestVote{RequestVote: wire.EncodeRequestVote(args)}}, t.cfg.RPCTimeout)
	if err != nil {
		return err
	}
	r := reply.GetRequestVote()
	if r == nil {
		return unexpectedReply(reply)
	}
	*resp = *r.Decode()
	return nil
}

// RequestPreVote implements raft.WithPreVote; without it raft silently
// turns pre-vote off and a rejoining partitioned node disrupts the leader.
func (t *Transport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	reply, err := t.Call(id, target, &wire.RaftRPC{Body: &wire.RaftRPC_RequestPreVote{RequestPreVote: wire.EncodeRequestPreVote(args)}}, t.cfg.RPCTimeout)
	if err != nil {
		return err
	}
	r := reply.GetRequestPreVote()
	if r == nil {
		return unexpectedReply(reply)
	}
	*resp = *r.Decode()
	return nil
}

// TimeoutNow implements raft.Transport.
func (t *Transport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	reply, err := t.Call(id, target, &wire.RaftRPC{Body: &wire.RaftRPC_TimeoutNow{TimeoutNow: wire.EncodeTimeoutNow(args)}}, t.cfg.RPCTimeout)
	if err != nil {
		return err
	}
	r := reply.GetTimeoutNow()
	if r == nil {
		return unexpectedReply(reply)
	}
	*resp = *r.Decode()
	return nil
}

// Close implements raft.WithClose; raft calls it at the end of Shutdown. It
// stops the dispatcher, fails RPCs still queued, aborts in-flight outbound
// RPCs and snapshot transfers, and waits for every goroutine the transport
// started. It is safe to call more than once.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.unserveLink()
		t.mu.Lock()
		t.closed = true
		transfers := make([]*inTransfer, 0, len(t.transfers))
		for _, tr := range t.transfers {
			transfers = append(transfers, tr)
		}
		t.mu.Unlock()
		close(t.shutdown)
		for _, tr := range transfers {
			tr.abort(ErrTransportClosed)
		}
		t.wg.Wait()
		for {
			select {
			case in := <-t.queue:
				t.failInbound(in, ErrTransportClosed)
				continue
			default:
			}
			break
		}
	})
	return nil
}

// goTracked runs fn in a goroutine Close waits for; it refuses once the
// transport is closed so no goroutine can start after Close returned.
func (t *Transport) goTracked(fn func()) bool {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return false
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		fn()
	}()
	return true
}

// sleep waits d unless the transport closes first.
func (t *Transport) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-t.shutdown:
		return false
	}
}

// ---- inbound ----

// HandleRPC takes one inbound RPC, from the node actor's Receive or from a
// link's connection reader (it implements link.Handler). It never blocks:
// RPCs go to a bounded queue served by the dispatcher goroutine (arrival
// order preserved), heartbeats to the heartbeat handler in their own
// goroutine, snapshot chunks to their transfer's goroutine, peer RPCs to
// the PeerHandler. The reply goes to sender once answered.
func (t *Transport) HandleRPC(sender *actor.PID, rpc *wire.RaftRPC) {
	if rpc.GetGroup() != t.cfg.Group {
		t.sendReply(sender, "", ErrorReply(fmt.Errorf("%w: rpc for group %q refused by group %q", ErrWrongGroup, rpc.GetGroup(), t.cfg.Group)))
		return
	}
	if err := t.auth.verify(rpc); err != nil {
		t.log.Warn("inbound raft rpc refused: not authenticated by the cluster key", zap.String("from", rpc.GetFrom()))
		t.sendReply(sender, "", ErrorReply(err))
		return
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		t.sendReply(sender, "", ErrorReply(ErrTransportClosed))
		return
	}
	var cmd interface{}
	var fromID raft.ServerID
	switch body := rpc.GetBody().(type) {
	case *wire.RaftRPC_AppendEntries:
		req := body.AppendEntries.Decode()
		fromID = raft.ServerID(req.ID)
		if isHeartbeat(req) && t.handleHeartbeat(sender, fromID, req) {
			return
		}
		cmd = req
	case *wire.RaftRPC_RequestVote:
		req := body.RequestVote.Decode()
		fromID, cmd = raft.ServerID(req.ID), req
	case *wire.RaftRPC_RequestPreVote:
		req := body.RequestPreVote.Decode()
		fromID, cmd = raft.ServerID(req.ID), req
	case *wire.RaftRPC_TimeoutNow:
		req := body.TimeoutNow.Decode()
		fromID, cmd = raft.ServerID(req.ID), req
	case *wire.RaftRPC_SnapshotChunk:
		t.handleChunk(sender, rpc.GetFrom(), body.SnapshotChunk)
		return
	case *wire.RaftRPC_LinkQuery:
		t.answerLinkQuery(sender)
		return
	case nil:
		t.sendReply(sender, "", ErrorReply(fmt.Errorf("%w: an rpc without a body", ErrProtocol)))
		return
	default:
		t.handlePeerRPC(sender, rpc)
		return
	}
	respCh := make(chan raft.RPCResponse, 1)
	t.enqueue(inboundRPC{
		rpc:     raft.RPC{Command: cmd, RespChan: respCh},
		respCh:  respCh,
		sender:  sender,
		fromID:  fromID,
		respond: true,
	})
}

// isHeartbeat is hashicorp NetworkTransport's test, so the fast path takes
// exactly the RPCs raft's processHeartbeat expects.
func isHeartbeat(req *raft.AppendEntriesRequest) bool {
	leaderAddr := req.Addr
	if len(leaderAddr) == 0 {
		//lint:ignore SA1019 a leader on an older raft protocol version sets only Leader
		leaderAddr = req.Leader
	}
	return req.Term != 0 && leaderAddr != nil &&
		req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

// handleHeartbeat runs the heartbeat handler, if one is set, in its own
// goroutine; false means the heartbeat must take the normal path.
func (t *Transport) handleHeartbeat(sender *actor.PID, fromID raft.ServerID, req *raft.AppendEntriesRequest) bool {
	t.mu.Lock()
	fn := t.heartbeatFn
	t.mu.Unlock()
	if fn == nil {
		return false
	}
	started := t.goTracked(func() {
		respCh := make(chan raft.RPCResponse, 1)
		fn(raft.RPC{Command: req, RespChan: respCh})
		select {
		case resp := <-respCh:
			t.sendReply(sender, fromID, responseToReply(resp))
		case <-t.shutdown:
			// raft drops heartbeats once it is shutting down; the sender
			// learns at once rather than after its RPC timeout.
			t.sendReply(sender, fromID, ErrorReply(ErrTransportClosed))
		}
	})
	if !started {
		t.sendReply(sender, fromID, ErrorReply(ErrTransportClosed))
	}
	return true
}

// SetPeerHandler sets what answers peer RPCs; until it is set they are
// answered with ErrNotReady, which a prober counts as no answer.
func (t *Transport) SetPeerHandler(fn PeerHandler) {
	t.mu.Lock()
	t.peerFn = fn
	t.mu.Unlock()
}

// handlePeerRPC hands a peer RPC to the PeerHandler.
func (t *Transport) handlePeerRPC(sender *actor.PID, rpc *wire.RaftRPC) {
	t.mu.Lock()
	fn := t.peerFn
	t.mu.Unlock()
	if fn == nil {
		t.sendReply(sender, "", ErrorReply(fmt.Errorf("%w: %s cannot answer %T yet", ErrNotReady, t.cfg.LocalID, rpc.GetBody())))
		return
	}
	fn(rpc, func(to raft.ServerID, answer *wire.RaftRPCReply) { t.sendReply(sender, to, answer) })
}

// enqueue hands an RPC to the dispatcher, or fails it at once when the
// queue is full: the caller is an actor's Receive and must not wait.
func (t *Transport) enqueue(in inboundRPC) bool {
	select {
	case t.queue <- in:
		return true
	default:
		t.log.Warn("inbound raft rpc refused: queue full", zap.String("from", string(in.fromID)))
		t.failInbound(in, ErrQueueFull)
		return false
	}
}

func (t *Transport) failInbound(in inboundRPC, err error) {
	if in.onFail != nil {
		in.onFail(err)
	}
	if in.respond {
		t.sendReply(in.sender, in.fromID, ErrorReply(err))
	}
}

// dispatch hands queued RPCs to raft one at a time, in arrival order.
// Responses are awaited in separate goroutines so a slow RPC does not hold
// back the next one's hand-over.
func (t *Transport) dispatch() {
	defer t.wg.Done()
	for {
		select {
		case <-t.shutdown:
			return
		case in := <-t.queue:
			select {
			case t.consumer <- in.rpc:
			case <-t.shutdown:
				t.failInbound(in, ErrTransportClosed)
				return
			}
			if !in.respond {
				continue
			}
			t.goTracked(func() {
				select {
				case resp := <-in.respCh:
					t.sendReply(in.sender, in.fromID, responseToReply(resp))
				case <-t.shutdown:
					t.sendReply(in.sender, in.fromID, ErrorReply(ErrTransportClosed))
				}
			})
		}
	}
}

// sendReply sends a reply unless fault injection loses it on its way back
// to fromID; a delayed reply is sent from a goroutine so the caller (maybe
// an actor's Receive) is never held up.
func (t *Transport) sendReply(sender *actor.PID, fromID raft.ServerID, reply *wire.RaftRPCReply) {
	if sender == nil {
		return
	}
	drop, delay := false, time.Duration(0)
	if fromID != "" {
		drop, delay = t.cfg.Faults.Decide(t.cfg.LocalID, fromID)
	}
	if drop {
		return
	}
	if delay > 0 {
		started := t.goTracked(func() {
			if t.sleep(delay) {
				t.cfg.System.Root.Send(sender, reply)
			}
		})
		if started {
			return
		}
		// Closed: what the transport still answers goes out at once.
	}
	t.cfg.System.Root.Send(sender, reply)
}

// responseToReply turns Raft's answer to an inbound RPC into its reply. An
// error Raft returned travels with it, as RPC_ERROR_RAFT.
func responseToReply(resp raft.RPCResponse) *wire.RaftRPCReply {
	reply := &wire.RaftRPCReply{}
	if resp.Error != nil {
		reply = ErrorReply(resp.Error)
	}
	switch r := resp.Response.(type) {
	case *raft.AppendEntriesResponse:
		reply.Body = &wire.RaftRPCReply_AppendEntries{AppendEntries: wire.EncodeAppendEntriesResponse(r)}
	case *raft.RequestVoteResponse:
		reply.Body = &wire.RaftRPCReply_RequestVote{RequestVote: wire.EncodeRequestVoteResponse(r)}
	case *raft.RequestPreVoteResponse:
		reply.Body = &wire.RaftRPCReply_RequestPreVote{RequestPreVote: wire.EncodeRequestPreVoteResponse(r)}
	case *raft.TimeoutNowResponse:
		reply.Body = &wire.RaftRPCReply_TimeoutNow{TimeoutNow: wire.EncodeTimeoutNowResponse(r)}
	case *raft.InstallSnapshotResponse:
		reply.Body = &wire.RaftRPCReply_InstallSnapshot{InstallSnapshot: wire.EncodeInstallSnapshotResponse(r)}
	case nil:
		if resp.Error == nil {
			reply = ErrorReply(errors.New("raft returned no response"))
		}
	default:
		reply = ErrorReply(fmt.Errorf("%w: unexpected raft response %T", ErrProtocol, r))
	}
	return reply
}

// ---- outbound ----

// Call sends one RPC to the node id at target and waits for its reply,
// applying fail-fast, fault injection, the cluster key and timeout: Raft's
// RPCs and the node's peer RPCs (probes, read indexes) alike. A reply
// carrying an error becomes a Go error, the peer's error value where it
// sent its code (ErrQueueFull, ErrRPCAuth, ...).
func (t *Transport) Call(id raft.ServerID, target raft.ServerAddress, msg *wire.RaftRPC, timeout time.Duration) (*wire.RaftRPCReply, error) {
	pid, err := t.prepare(target, msg)
	if err != nil {
		return nil, err
	}
	drop, delay := t.cfg.Faults.Decide(t.cfg.LocalID, id)
	if drop {
		t.sleep(min(timeout, maxDropWait))
		return nil, t.dropped(id, target)
	}
	// A delay is time on the wire: it counts against the timeout, so an
	// RPC held longer fails as a slow link's would, not late.
	if !t.sleep(min(delay, timeout)) {
		return nil, ErrTransportClosed
	}
	if delay >= timeout {
		return t.settle(target, nil, ErrRPCTimeout)
	}
	reply, err := t.request(pid, msg, timeout-delay)
	return t.settle(target, reply, err)
}

// prepare readies msg for target: it refuses once the transport is closed
// or while target fails fast, resolves target's PID, and stamps the group,
// the sender and the cluster-key MAC. Every outbound RPC goes through it,
// pipelined ones included, so none can skip a check.
func (t *Transport) prepare(target raft.ServerAddress, msg *wire.RaftRPC) (*actor.PID, error) {
	select {
	case <-t.shutdown:
		return nil, ErrTransportClosed
	default:
	}
	if ok, last := t.allow(target); !ok {
		if last != nil {
			return nil, fmt.Errorf("%w: %s (last failure: %w)", ErrPeerDown, target, last)
		}
		return nil, fmt.Errorf("%w: %s", ErrPeerDown, target)
	}
	pid, err := wire.PIDOf(target)
	if err != nil {
		t.record(target, err)
		return nil, err
	}
	msg.Group = t.cfg.Group
	msg.From = string(t.cfg.LocalAddr)
	if err := t.auth.sign(msg); err != nil {
		return nil, fmt.Errorf("sign rpc: %w", err)
	}
	return pid, nil
}

// dropped counts an RPC lost by fault injection as a failure of target,
// as a real loss would have been, and returns the error the caller sees.
func (t *Transport) dropped(id raft.ServerID, target raft.ServerAddress) error {
	err := fmt.Errorf("%w: %s -> %s", ErrMessageDropped, t.cfg.LocalID, id)
	t.record(target, err)
	return err
}

// settle records the outcome of one sent RPC in target's health and turns
// an error reply into a Go error.
func (t *Transport) settle(target raft.ServerAddress, reply *wire.RaftRPCReply, err error) (*wire.RaftRPCReply, error) {
	if err != nil {
		if !errors.Is(err, ErrTransportClosed) {
			t.record(target, err)
		}
		return nil, fmt.Errorf("%w (%s)", err, target)
	}
	// Any reply, even an error one, proves the peer is reachable.
	t.record(target, nil)
	if err := replyError(reply); err != nil {
		return nil, err
	}
	return reply, nil
}

// request sends msg and waits for its reply, at most timeout.
func (t *Transport) request(pid *actor.PID, msg *wire.RaftRPC, timeout time.Duration) (*wire.RaftRPCReply, error) {
	pr, err := t.newPendingReply()
	if err != nil {
		return nil, err
	}
	defer t.release(pr)
	t.post(pid, msg, pr)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	return t.await(pr, timer.C, nil)
}

// pendingReply is a private reply process registered for one RPC. It is
// used rather than an actor.Future so Close can abort the wait: a Future
// can only end by reply or timeout, which would keep raft.Shutdown waiting
// for a dead peer.
type pendingReply struct {
	rp   *replyProcess
	self *actor.PID
	link link.Call // set when the RPC went on a link
}

// newPendingReply registers a reply process; release must follow.
func (t *Transport) newPendingReply() (*pendingReply, error) {
	rp := &replyProcess{ch: make(chan interface{}, 1)}
	reg := t.cfg.System.ProcessRegistry
	self, ok := reg.Add(rp, inbox.Name(t.cfg.System, "raftrpc"))
	if !ok {
		return nil, errors.New("could not register reply process")
	}
	return &pendingReply{rp: rp, self: self}, nil
}

// release unregisters pr; a late reply then goes to dead letters.
func (t *Transport) release(pr *pendingReply) {
	pr.link.Forget()
	t.cfg.System.ProcessRegistry.Remove(pr.self)
}

// post sends msg to pid with pr as the sender, so the reply lands in pr:
// on the Raft link when one is open to pid's process, through the actor
// system (locally or over remote) otherwise. It never blocks: actor sends
// and link sends only enqueue.
func (t *Transport) post(pid *actor.PID, msg *wire.RaftRPC, pr *pendingReply) {
	if t.link != nil && t.postOnLink(pid, msg, pr) {
		return
	}
	t.cfg.System.Root.RequestWithCustomSender(pid, msg, pr.self)
}

// errAborted is what await returns when its abort channel closed; the
// caller knows why it aborted.
var errAborted = errors.New("wait aborted")

// await waits for pr's reply until timeout fires (ErrRPCTimeout), the
// transport closes (ErrTransportClosed) or abort closes (errAborted). A
// reply already there wins over a timeout that fired meanwhile.
func (t *Transport) await(pr *pendingReply, timeout <-chan time.Time, abort <-chan struct{}) (*wire.RaftRPCReply, error) {
	select {
	case m := <-pr.rp.ch:
		return decodeReply(m)
	default:
	}
	select {
	case m := <-pr.rp.ch:
		return decodeReply(m)
	case <-timeout:
		return nil, ErrRPCTimeout
	case <-t.shutdown:
		return nil, ErrTransportClosed
	case <-abort:
		return nil, errAborted
	}
}

func decodeReply(m interface{}) (*wire.RaftRPCReply, error) {
	switch r := m.(type) {
	case *wire.RaftRPCReply:
		return r, nil
	case *actor.DeadLetterResponse:
		return nil, ErrDeadLetter
	case error: // the link the RPC went on closed
		return nil, r
	default:
		return nil, fmt.Errorf("%w: unexpected reply %T", ErrProtocol, m)
	}
}

// replyProcess receives the one reply to an outbound RPC.
type replyProcess struct{ ch chan interface{} }

// SendUserMessage implements actor.Process. Only the first message counts;
// anything after it (a duplicate) is dropped rather than blocking the sender.
func (p *replyProcess) SendUserMessage(_ *actor.PID, message interface{}) {
	_, msg, _ := actor.UnwrapEnvelope(message)
	select {
	case p.ch <- msg:
	default:
	}
}

// SendSystemMessage implements actor.Process; a reply process has no
// lifecycle of its own, so system messages are ignored.
func (p *replyProcess) SendSystemMessage(*actor.PID, interface{}) {}

// Stop implements actor.Process; removal from the registry is all it needs.
func (p *replyProcess) Stop(*actor.PID) {}

// allow reports whether an RPC to target may be sent now: always while the
// peer is healthy; while it is failing fast, one probe per backoff. A probe
// does not wait for the one before it: a probe lost in a blackhole waits
// its whole RPC timeout, and a peer that answers again meanwhile must not
// stay unused until then. A refusal comes with the error of the failure
// before it.
func (t *Transport) allow(target raft.ServerAddress) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[target]
	if p == nil || p.failures < t.cfg.FailFastThreshold {
		return true, nil
	}
	now := t.now()
	if now.Before(p.openUntil) {
		return false, p.last
	}
	p.openUntil = now.Add(t.backoff())
	return true, nil
}

// backoff is how long a peer fails fast before the next probe:
// FailFastBackoff, but at most half the node's heartbeat timeout. raft
// retries a failed heartbeat at most half a heartbeat timeout later, so a
// peer that answers again is used again within one heartbeat interval,
// whatever the timeouts, before the follower's election timer runs out.
func (t *Transport) backoff() time.Duration {
	b := t.cfg.FailFastBackoff
	if hb := time.Duration(t.heartbeat.Load()); hb > 0 && hb/2 < b {
		b = hb / 2
	}
	return b
}

// record updates target's fail-fast state with the outcome of one RPC: its
// error, nil when the peer answered.
func (t *Transport) record(target raft.ServerAddress, failure error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[target]
	if failure == nil {
		if p != nil {
			delete(t.peers, target)
		}
		return
	}
	if p == nil {
		p = &peerHealth{}
		t.peers[target] = p
	}
	p.failures++
	p.last = failure
	if p.failures >= t.cfg.FailFastThreshold {
		if p.failures == t.cfg.FailFastThreshold {
			t.log.Info("raft peer failing fast", zap.String("peer", string(target)), zap.Duration("backoff", t.backoff()))
		}
		p.openUntil = t.now().Add(t.backoff())
	}
}

func unexpectedReply(reply *wire.RaftRPCReply) error {
	return fmt.Errorf("%w: unexpected reply body %T", ErrProtocol, reply.GetBody())
}

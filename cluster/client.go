package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
)

// Defaults of a Client's options.
const (
	// DefaultAttemptTimeout bounds one attempt, so a dead or partitioned
	// member costs at most this long before the Client tries another.
	DefaultAttemptTimeout = 2 * time.Second
	// DefaultBackoffMin is the first pause between rounds of retries:
	// short, so a Client rides out an election with fast timeouts quickly.
	DefaultBackoffMin = 20 * time.Millisecond
	// DefaultBackoffMax caps the pause, so a group that lost its quorum is
	// not hammered yet is noticed within a second once it is back.
	DefaultBackoffMax = time.Second
	// DefaultCallTimeout is the deadline of a call whose context has none:
	// without it a call against a group that lost its quorum would retry
	// forever.
	DefaultCallTimeout = 15 * time.Second
)

const (
	// replyMargin is how much longer than the request's own deadline the
	// Client waits for a reply, so the node's DEADLINE_EXCEEDED answer (sent
	// at that deadline) wins over the local future's timeout.
	replyMargin = 250 * time.Millisecond
	// maxHintHops caps how many NOT_LEADER hints are followed back to back:
	// two nodes with stale views could otherwise bounce a request between
	// them without pause during an election.
	maxHintHops = 3
)

// clientOptions are set by ClientOption.
type clientOptions struct {
	clientID       string
	credentials    string
	attemptTimeout time.Duration
	backoffMin     time.Duration
	backoffMax     time.Duration
	callTimeout    time.Duration
	readBatch      int
}

// ClientOption configures a Client.
type ClientOption func(*clientOptions)

// WithClientID sets the client ID of the Client's write session. The
// default is a random ID, which is what almost every program wants: two
// live Clients with one ID would answer each other's writes with the wrong
// results. Set it only to give a process a recognisable name in logs, and
// never to the ID of another Client that is still running.
func WithClientID(id string) ClientOption {
	return func(o *clientOptions) {
		if id != "" {
			o.clientID = id
		}
	}
}

// WithCredentials sets the token sent with every request, so a group with
// authentication turned on knows who is asking. To present other
// credentials for some calls, use As.
func WithCredentials(token string) ClientOption {
	return func(o *clientOptions) { o.credentials = token }
}

// WithAttemptTimeout bounds one attempt (default DefaultAttemptTimeout). A
// shorter one moves past a dead member faster; one shorter than the group's
// commit latency makes every write time out and retry. Non-positive values
// keep the default.
func WithAttemptTimeout(d time.Duration) ClientOption {
	return func(o *clientOptions) {
		if d > 0 {
			o.attemptTimeout = d
		}
	}
}

// WithBackoff sets the bounds of the jittered exponential pause between
// retries (default DefaultBackoffMin to DefaultBackoffMax). Non-positive
// values keep the defaults; max below min is raised to min.
func WithBackoff(minPause, maxPause time.Duration) ClientOption {
	return func(o *clientOptions) {
		if minPause > 0 {
			o.backoffMin = minPause
		}
		if maxPause > 0 {
			o.backoffMax = maxPause
		}
		if o.backoffMax < o.backoffMin {
			o.backoffMax = o.backoffMin
		}
	}
}

// WithCallTimeout sets the deadline of a call whose context has none
// (default DefaultCallTimeout). A context with a deadline always wins.
func WithCallTimeout(d time.Duration) ClientOption {
	return func(o *clientOptions) {
		if d > 0 {
			o.callTimeout = d
		}
	}
}

// readOptions are set by ReadOption.
type readOptions struct {
	consistency actors.Consistency
}

// ReadOption configures one Read.
type ReadOption func(*readOptions)

// WithConsistency chooses how fresh a read must be. The default is
// LINEARIZABLE because it is the only one that never returns a value older
// than a write acknowledged before the read began; LEASE and STALE trade
// that for latency and availability.
func WithConsistency(c actors.Consistency) ReadOption {
	return func(o *readOptions) { o.consistency = c }
}

// Client talks to one protoraft group from a protoactor program: it finds the
// leader, follows NOT_LEADER hints, retries what is safe to retry with
// backoff across the known members, and makes writes exactly-once with a
// session (client ID and sequence number) that the group's replicated session
// table deduplicates.
//
// Every error a method returns is an *actors.Error, so callers branch with
// errors.As and the code, never on text. A call that runs out of time
// returns DEADLINE_EXCEEDED; for a write that means the outcome is unknown
// (it may still commit), as with any distributed write.
//
// A Client is safe for concurrent use by many goroutines and is cheap to
// share; one per program and group is the intended use. Its methods block
// the calling goroutine until the reply, so do not call them from inside an
// actor's Receive: that would stall the actor's mailbox for as long as a
// failover takes. Call them from a goroutine and send the result to the actor.
//
// A Client presents one set of credentials (WithCredentials); As gives a
// view of the same Client that presents another, for a program that acts
// on behalf of several callers.
type Client struct {
	// core is what every view of the Client shares (As): routing,
	// session, options, read batches.
	*clientCore
	// credentials are what this view presents (WithCredentials, As).
	credentials string
	// relayed is set on the views As returns: their calls are
	// authenticated by credentials alone (RequestMeta.token_only).
	relayed bool
}

// clientCore is the state a Client and the views As returns share.
type clientCore struct {
	system *actor.ActorSystem
	group  string
	opts   clientOptions

	// mu guards the routing state.
	mu      sync.Mutex
	members []*actor.PID
	cursor  int
	leader  *actor.PID

	// session is the write session, shared by pointer so that views of
	// the Client write in one session.
	session *writeSession

	calls atomic.Uint64

	// batchMu guards batchers: the read batchers in use, one per
	// consistency and credentials, so reads batch only with reads that
	// present the same credentials. An entry lives while a read uses it.
	batchMu  sync.Mutex
	batchers map[batchKey]*readBatcher
}

// NewClient returns a Client for group, whose members are reached through
// their front doors (Peer.FrontDoor). members need not be complete or
// current: the Client follows the leader hints the group gives, and
// SetMembers replaces the list later.
func NewClient(system *actor.ActorSystem, group string, members []Peer, opts ...ClientOption) *Client {
	o := clientOptions{
		attemptTimeout: DefaultAttemptTimeout,
		backoffMin:     DefaultBackoffMin,
		backoffMax:     DefaultBackoffMax,
		callTimeout:    DefaultCallTimeout,
		readBatch:      DefaultReadBatch,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.clientID == "" {
		o.clientID = randomClientID()
	}
	c := &Client{clientCore: &clientCore{
		system:   system,
		group:    group,
		opts:     o,
		session:  newWriteSession(),
		batchers: map[batchKey]*readBatcher{},
	}, credentials: o.credentials}
	c.SetMembers(members)
	return c
}

// As returns a Client that presents credentials instead of c's own, and
// shares everything else with c: its members, the leader it knows, its
// write session (client ID and sequence numbers) and its options. It is
// the way to act for several callers through one Client, such as an HTTP
// front that passes each request's bearer token on: the group
// authenticates and authorizes every call by the credentials of the
// Client it was made through. c is unchanged, and a leader learned
// through either is used by both; SetMembers on either changes both.
//
// As is cheap (one small allocation), so a view per request is fine.
// Reads batch only with reads that present the same credentials, through
// any view, so no request ever carries another caller's queries.
//
// A call through the view is authenticated by credentials alone: the TLS
// identity of this process's connections, which a policy may name as a
// principal, never stands in for the caller (RequestMeta.token_only). An
// empty credentials presents none, so under a policy such a call is
// UNAUTHENTICATED.
func (c *Client) As(credentials string) *Client {
	return &Client{clientCore: c.clientCore, credentials: credentials, relayed: true}
}

// randomClientID returns 16 random bytes in hex: enough that two Clients
// never share a session by accident.
func randomClientID() string {
	b := make([]byte, 16)
	// crypto/rand.Read never fails since Go 1.24 (it aborts the program
	// rather than return weak bytes), so there is no error to handle.
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ClientID returns the ID of the Client's write session, as the group's
// session table and logs know it.
func (c *Client) ClientID() string { return c.opts.clientID }

// SetMembers replaces the members the Client tries when it knows no leader.
// The last known leader is kept: it was learned from the group itself and
// is dropped on its first failure anyway.
func (c *Client) SetMembers(members []Peer) {
	doors := make([]*actor.PID, 0, len(members))
	for _, p := range members {
		doors = append(doors, p.FrontDoor(c.group))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members = doors
	// A random starting point spreads many Clients' first attempts over
	// the members instead of all of them asking the first one.
	if len(doors) > 0 {
		c.cursor = mrand.IntN(len(doors))
	}
}

// Write applies command to the group's state machine, exactly once: every
// retry of this call carries the same sequence number, and the group answers
// a sequence it already applied with the first result and index.
//
// The Client opens its session with the group before its first write (one
// round trip, shared by concurrent first writes), and every write says it
// belongs to that session. A group that no longer knows the session (it
// expired after SessionTTL without writes, measured by the group's
// replicated clock) refuses the write with SESSION_EXPIRED rather than
// risk applying a retry twice; each write names the opening it belongs to,
// so a session that a late copy of an open created anew after the expiry
// refuses it too. The write's outcome is then unknown, as with
// DEADLINE_EXCEEDED, and the Client does not retry it. The next Write opens
// the session again, above every sequence used before, so no earlier write
// still in flight can be applied after it.
//
// Exactly-once holds within one call. A call that ends with an error may
// still have been applied (DEADLINE_EXCEEDED and SESSION_EXPIRED say so
// explicitly); calling Write again is a new write. The group remembers a
// bounded number of results per session (about a thousand): a write still
// unanswered after that many later writes of the same Client were applied
// can fail with INVALID_ARGUMENT on field "meta.sequence", its outcome
// unknown.
func (c *Client) Write(ctx context.Context, command []byte) (*actors.WriteResponse, error) {
	// Retries, and attempts still queued at a node after this call gave
	// up, read the command; a private copy keeps the caller free to reuse
	// its buffer as soon as Write returns.
	command = bytes.Clone(command)
	s := c.session
	seq, openIndex, err := s.begin(ctx, c)
	if err != nil {
		return nil, err
	}
	defer s.end(seq)
	resp, err := clientCall[*actors.WriteResponse](ctx, c, callSpec{op: "write", route: routeLeaderOnly}, func(meta *actors.RequestMeta) actors.Request {
		meta.ClientId = c.opts.clientID
		meta.Sequence = seq
		meta.AckedBelow = s.ackedBelow()
		meta.RegisteredSession = true
		// Every attempt names the opening seq was taken in, also after a
		// reopen: a group whose session is another life of it (a late copy
		// of an open created it anew) refuses the write rather than apply
		// a retry twice.
		meta.SessionOpenIndex = openIndex
		return &actors.WriteRequest{Meta: meta, Command: command}
	}, nil)
	if actors.CodeOf(resp.GetError()) == actors.Code_SESSION_EXPIRED {
		s.expired(seq)
	}
	return resp, err
}

// Read answers query from the state machine at the chosen consistency
// (LINEARIZABLE unless WithConsistency says otherwise). Reads carry no
// session: they change nothing, so retrying them is always safe. Reads
// that callers make while earlier ones are in flight travel together, as
// one request with several queries (WithReadBatch); each is answered on
// its own, as if sent alone.
func (c *Client) Read(ctx context.Context, query []byte, opts ...ReadOption) (*actors.ReadResponse, error) {
	ro := readOptions{consistency: actors.Consistency_LINEARIZABLE}
	for _, opt := range opts {
		opt(&ro)
	}
	query = bytes.Clone(query)
	if c.opts.readBatch > 1 && validConsistency(ro.consistency) {
		b := c.batcher(ro.consistency)
		defer c.releaseBatcher(b)
		return b.read(ctx, query)
	}
	return c.readAlone(ctx, query, ro.consistency)
}

// AddVoter adds a voting member with its Raft address (Peer.RaftAddress).
// The add is guarded: the leader adds a new node as a non-voter, waits
// (within the request's deadline) until the node itself answers that it
// follows the leader and has applied what the leader had committed, and
// only then promotes it. A node that has not caught up by then (it does not
// run, cannot be reached, or is still copying the log) stays a non-voter,
// harmless to the quorum, and the leader answers UNAVAILABLE: the Client
// retries that until ctx ends and then returns DEADLINE_EXCEEDED carrying
// it. Remove takes such a node away again.
// A retry of an add that committed already is harmless: adding a voter
// again at the same address is a no-op.
func (c *Client) AddVoter(ctx context.Context, id, raftAddress string) (*actors.MembershipResponse, error) {
	return c.membership(ctx, actors.MembershipOp_ADD_VOTER, id, raftAddress)
}

// AddNonvoter adds a member that receives the log but does not vote, the
// usual first step before Promote so a new node catches up without
// weakening the quorum.
func (c *Client) AddNonvoter(ctx context.Context, id, raftAddress string) (*actors.MembershipResponse, error) {
	return c.membership(ctx, actors.MembershipOp_ADD_NONVOTER, id, raftAddress)
}

// Promote makes a non-voting member a voter, guarded as AddVoter is: only
// once the member has caught up (UNAVAILABLE until then, and it stays a
// non-voter).
func (c *Client) Promote(ctx context.Context, id string) (*actors.MembershipResponse, error) {
	return c.membership(ctx, actors.MembershipOp_PROMOTE, id, "")
}

// Demote makes a voter a non-voting member.
func (c *Client) Demote(ctx context.Context, id string) (*actors.MembershipResponse, error) {
	return c.membership(ctx, actors.MembershipOp_DEMOTE, id, "")
}

// Remove removes a member. Membership changes carry no session: a Remove
// whose reply was lost and that is retried after it committed fails with
// INVALID_ARGUMENT (field "id", not a member) although the member is gone.
func (c *Client) Remove(ctx context.Context, id string) (*actors.MembershipResponse, error) {
	return c.membership(ctx, actors.MembershipOp_REMOVE, id, "")
}

func (c *Client) membership(ctx context.Context, op actors.MembershipOp, id, addr string) (*actors.MembershipResponse, error) {
	return clientCall[*actors.MembershipResponse](ctx, c, callSpec{op: "membership", route: routeLeaderOnly}, func(meta *actors.RequestMeta) actors.Request {
		return &actors.MembershipRequest{Meta: meta, Op: op, Id: id, Address: addr}
	}, nil)
}

// TransferLeadership asks the leader to hand leadership to id, or to the
// most up-to-date follower when id is empty. A retried transfer may move
// leadership twice; callers that care check Leader afterwards.
func (c *Client) TransferLeadership(ctx context.Context, id string) (*actors.TransferLeadershipResponse, error) {
	resp, err := clientCall[*actors.TransferLeadershipResponse](ctx, c, callSpec{op: "transfer_leadership", route: routeLeaderOnly}, func(meta *actors.RequestMeta) actors.Request {
		return &actors.TransferLeadershipRequest{Meta: meta, Id: id}
	}, nil)
	if err == nil {
		// The node that answered no longer leads; point at its successor
		// so the next call does not start with a NOT_LEADER round trip.
		c.learnFromServer(resp.GetLeader())
	}
	return resp, err
}

// Members returns the group's configuration, from the leader when the
// Client knows it, otherwise from whichever member answers first.
func (c *Client) Members(ctx context.Context) (*actors.MembersResponse, error) {
	return clientCall[*actors.MembersResponse](ctx, c, callSpec{op: "members", route: routeAny}, func(meta *actors.RequestMeta) actors.Request {
		return &actors.MembersRequest{Meta: meta}
	}, nil)
}

// Status returns the leader's status. A follower's answer is not returned:
// the Client follows it to the leader it names, so the indexes and members
// reported are the group's, not a lagging node's. While the group has no
// leader the call retries until its deadline. To see one node's own view,
// send an actors.StatusRequest to that node's front door.
func (c *Client) Status(ctx context.Context) (*actors.StatusResponse, error) {
	return clientCall(ctx, c, callSpec{op: "status", route: routeConfirm}, func(meta *actors.RequestMeta) actors.Request {
		return &actors.StatusRequest{Meta: meta}
	}, func(r *actors.StatusResponse) (bool, *actors.Server) {
		return r.GetState() == "Leader", r.GetLeader()
	})
}

// Leader returns the leader's own answer to "who leads" (IsLeader is true
// in it), so a follower's outdated belief is never reported as the leader.
// While the group has no leader the call retries until its deadline.
func (c *Client) Leader(ctx context.Context) (*actors.LeaderResponse, error) {
	return clientCall(ctx, c, callSpec{op: "leader", route: routeConfirm}, func(meta *actors.RequestMeta) actors.Request {
		return &actors.LeaderRequest{Meta: meta}
	}, func(r *actors.LeaderResponse) (bool, *actors.Server) {
		return r.GetIsLeader(), r.GetLeader()
	})
}

// UpdateTimeouts changes the Raft timeouts of the leader. Timeouts are a
// per-node setting in Raft, not replicated state: to change them on every
// member, send an actors.UpdateTimeoutsRequest to each member's front door.
func (c *Client) UpdateTimeouts(ctx context.Context, t *actors.Timeouts) (*actors.TimeoutsResponse, error) {
	return clientCall[*actors.TimeoutsResponse](ctx, c, callSpec{op: "update_timeouts", route: routeLeaderLocal}, func(meta *actors.RequestMeta) actors.Request {
		return &actors.UpdateTimeoutsRequest{Meta: meta, Timeouts: t}
	}, nil)
}

// Snapshot makes the leader take a snapshot now. Snapshots are per node;
// to snapshot another member, send an actors.SnapshotRequest to its front
// door.
func (c *Client) Snapshot(ctx context.Context) (*actors.SnapshotResponse, error) {
	return clientCall[*actors.SnapshotResponse](ctx, c, callSpec{op: "snapshot", route: routeLeaderLocal}, func(meta *actors.RequestMeta) actors.Request {
		return &actors.SnapshotRequest{Meta: meta}
	}, nil)
}

// UpdatePolicy replaces the group's authorization policy with document
// (YAML or JSON, see package policies) through Raft; every member enforces
// it once it applied. A refused document is INVALID_ARGUMENT naming the
// field; nothing is written. The caller needs policy_update. A retry after
// an attempt whose outcome is unknown commits the same document again,
// which changes nothing.
func (c *Client) UpdatePolicy(ctx context.Context, document []byte) (*actors.PolicyUpdateResponse, error) {
	document = bytes.Clone(document)
	return clientCall[*actors.PolicyUpdateResponse](ctx, c, callSpec{op: "policy_update", route: routeLeaderOnly}, func(meta *actors.RequestMeta) actors.Request {
		return &actors.PolicyUpdateRequest{Meta: meta, Document: document}
	}, nil)
}

// Policy reads the group's authorization policy back (see
// actors.PolicyGetRequest), LINEARIZABLE unless WithConsistency says
// otherwise: the answer then holds every change committed before the call.
// The caller needs policy_read. To see what one member answers, send an
// actors.PolicyGetRequest to its front door (AskMember).
func (c *Client) Policy(ctx context.Context, opts ...ReadOption) (*actors.PolicyGetResponse, error) {
	ro := readOptions{consistency: actors.Consistency_LINEARIZABLE}
	for _, opt := range opts {
		opt(&ro)
	}
	spec := readSpec(ro.consistency)
	spec.op = "policy_read"
	return clientCall[*actors.PolicyGetResponse](ctx, c, spec, func(meta *actors.RequestMeta) actors.Request {
		return &actors.PolicyGetRequest{Meta: meta, Consistency: ro.consistency}
	}, nil)
}

// writeSession is a Client's exactly-once session with the group: its
// sequence numbers, the writes in flight and whether the group has the
// session open.
type writeSession struct {
	// mu guards everything below: sequence numbers are taken and registered
	// as in flight in one step, so no concurrent Write can compute an
	// acked_below that passes a sequence not yet registered; and only while
	// the session is open, so every sequence lies at or above the floor of
	// the open it belongs to.
	mu       sync.Mutex
	lastSeq  uint64
	inflight map[uint64]struct{}
	// open says the group has the session open, since the open with floor.
	open  bool
	floor uint64
	// openIndex names that opening as the group answered it
	// (WriteResponse.session_open_index; 0 from groups that do not name
	// openings). Writes carry it so the group can tell their session from
	// one a late copy of an open created after the session expired.
	openIndex uint64
	// opening is the open in flight, which concurrent first writes share.
	opening *sessionOpen
}

// sessionOpen is one open of the session; done is closed when it ended,
// err says how.
type sessionOpen struct {
	floor uint64
	done  chan struct{}
	err   error
}

func newWriteSession() *writeSession {
	return &writeSession{
		// Sequences start at the wall clock, so a program restarted with the
		// same WithClientID continues above the sequences its earlier run
		// used; its open raises the session's floor above them anyway.
		lastSeq:  uint64(time.Now().UnixNano()),
		inflight: map[uint64]struct{}{},
	}
}

// begin takes the next sequence and marks it in flight, once the session
// is open, and returns it with the open index of that opening: the first
// caller after the session was closed opens it (with the next sequence as
// its floor) and the others wait for that open.
func (s *writeSession) begin(ctx context.Context, c *Client) (uint64, uint64, error) {
	for {
		s.mu.Lock()
		if s.open {
			s.lastSeq++
			s.inflight[s.lastSeq] = struct{}{}
			seq, openIndex := s.lastSeq, s.openIndex
			s.mu.Unlock()
			return seq, openIndex, nil
		}
		op := s.opening
		mine := op == nil
		if mine {
			op = &sessionOpen{floor: s.lastSeq + 1, done: make(chan struct{})}
			s.opening = op
		}
		s.mu.Unlock()
		if mine {
			index, err := c.openSession(ctx, op.floor)
			s.finishOpen(op, index, err)
		}
		select {
		case <-op.done:
		case <-ctx.Done():
			return 0, 0, clientGaveUp("write", ctx.Err(), 0, nil)
		}
		if op.err != nil && (mine || ctx.Err() != nil) {
			// The open failed with this caller's own deadline or error;
			// others waiting for it try again with theirs.
			return 0, 0, op.err
		}
	}
}

// finishOpen records how op ended: with err, or with the group's open
// index for it.
func (s *writeSession) finishOpen(op *sessionOpen, index uint64, err error) {
	s.mu.Lock()
	op.err = err
	if s.opening == op {
		s.opening = nil
		if err == nil {
			s.open, s.floor, s.openIndex = true, op.floor, index
		}
	}
	s.mu.Unlock()
	close(op.done)
}

// expired closes the session after the group refused seq with
// SESSION_EXPIRED, unless it was refused for belonging to an opening
// before the current one: the next write opens the session again.
func (s *writeSession) expired(seq uint64) {
	s.mu.Lock()
	if s.open && seq >= s.floor {
		s.open = false
	}
	s.mu.Unlock()
}

// end marks seq done, whatever its outcome: the Client never sends it
// again, so the group may forget its result.
func (s *writeSession) end(seq uint64) {
	s.mu.Lock()
	delete(s.inflight, seq)
	s.mu.Unlock()
}

// ackedBelow is the lowest sequence still in flight (or the next one when
// none is): every sequence below it has its answer, so the session table
// may drop their results. The scan is linear in the writes in flight, which
// the session table bounds to about a thousand anyway.
func (s *writeSession) ackedBelow() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	low := s.lastSeq + 1
	for seq := range s.inflight {
		low = min(low, seq)
	}
	return low
}

// openSession opens the Client's session in the group with floor and
// returns the group's open index for it: an open applies nothing, so
// retrying it is as safe as retrying a read, and every copy that applies
// while the session lives answers the same open index.
func (c *Client) openSession(ctx context.Context, floor uint64) (uint64, error) {
	resp, err := clientCall[*actors.WriteResponse](ctx, c, callSpec{op: "open_session", route: routeLeaderOnly}, func(meta *actors.RequestMeta) actors.Request {
		meta.ClientId = c.opts.clientID
		meta.Sequence = floor
		meta.OpenSession = true
		return &actors.WriteRequest{Meta: meta}
	}, nil)
	return resp.GetSessionOpenIndex(), err
}

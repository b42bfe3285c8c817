package raftactor

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// read accepts a query at the requested consistency. Reads that wait in
// the mailbox together are served together (flushReads): one wait for the
// read index serves all of them, then each is queried and answered.
//
// LINEARIZABLE on the leader is ReadIndex: note the commit index after the
// read arrived, confirm with a quorum that this node still leads (probes
// sent after that, see confirm), wait until the state machine applied up to
// the noted index, then query. On a follower it asks the leader for such an
// index (a ReadIndexRequest) and waits until it applied that far itself.
// LEASE, on the leader only, skips the quorum round trip while the lease
// the last confirmation established, from the oldest leader contact its
// quorum reported, is younger than the lease (leaseHeld), and otherwise
// takes one: Raft's own step-down when the lease runs out comes too late
// for a leader whose process was paused. A leader serves either only once
// it committed an entry of its own term (termReadiness): before that its
// commit index can lag behind entries an earlier leader acknowledged. STALE
// reads the local state as it is and says which index it reflects. A
// request with several queries (a batch) waits the same way, once, then
// answers each query (queryBatch).
func (n *Node) read(ctx actor.Context, m *actors.ReadRequest) {
	kind, refusal := n.readKindFor(m.GetConsistency())
	if refusal != nil {
		n.respond(ctx, &actors.ReadResponse{Error: refusal})
		return
	}
	deadline := m.GetMeta().Deadline(n.cfg.RequestTimeout)
	if !n.current.start.Before(deadline) {
		n.respond(ctx, &actors.ReadResponse{Error: actors.DeadlineExceeded(actors.Op(m))})
		return
	}
	// No timer per read: serve answers each read by its deadline.
	n.reads.waiting[kind] = append(n.reads.waiting[kind], pendingRead{req: m, reply: n.replyTo(ctx), deadline: deadline})
	if !n.reads.flushQueued {
		n.reads.flushQueued = true
		ctx.Send(n.inbox, flushReads{})
	}
}

// readKind is what a read waits for before it queries.
type readKind int

const (
	readStale        readKind = iota // nothing
	readLinearizable                 // a quorum-confirmed read index, on the leader
	readLease                        // the leader's commit index, under its lease
	readFollower                     // a read index from the leader, on a follower
	readKinds
)

// readBatch is the reads accepted since the last flushReads, by kind.
type readBatch struct {
	waiting     [readKinds][]pendingRead
	flushQueued bool
}

// pendingRead is one accepted read and how to answer it.
type pendingRead struct {
	req      *actors.ReadRequest
	reply    *reply
	deadline time.Time
}

// flushReads is the message the node sends itself to serve the reads
// accepted so far.
type flushReads struct{}

// flushReads serves the waiting reads, each kind on a goroutine of its own.
func (n *Node) flushReads() {
	n.reads.flushQueued = false
	for kind := range readKinds {
		reads := n.reads.waiting[kind]
		n.reads.waiting[kind] = nil
		if len(reads) == 0 {
			continue
		}
		if n.run == nil {
			failReads(reads, actors.Errorf(actors.Code_UNAVAILABLE, "node %s is not running", n.cfg.ID))
			continue
		}
		go n.readPath().serve(kind, reads)
	}
}

// failReads answers every read waiting to be served with err.
func (n *Node) failReads(err *actors.Error) {
	for kind := range readKinds {
		failReads(n.reads.waiting[kind], err)
		n.reads.waiting[kind] = nil
	}
}

func failReads(reads []pendingRead, err *actors.Error) {
	if len(reads) == 0 {
		return
	}
	out := reads[0].reply.n.outcomes(len(reads))
	for _, rd := range reads {
		rd.reply.finishIn(out, &actors.ReadResponse{Error: err})
	}
	out.tell()
}

// readPath is what serving reads needs of the node, taken in Receive so
// the goroutine that serves them touches none of the actor's fields.
type readPath struct {
	r       *raft.Raft
	f       *fsm
	ready   *termReadiness
	batcher *readIndexBatcher
	logs    raft.LogStore
	peers   peers
	// lease is how long a leadership confirmation serves LEASE reads.
	lease time.Duration
	// floor is the highest command index the node's reads answered from
	// (kept across reopens and restarts): STALE reads behind it are
	// refused.
	floor *readFloor
}

func (n *Node) readPath() readPath {
	t := n.currentTimeouts()
	return readPath{r: n.run.raft, f: n.run.fsm, ready: n.run.ready, batcher: &n.readIndex, logs: n.run.stores.logs, peers: n.peers(),
		lease: leaseWindow(t.LeaderLease, t.Heartbeat), floor: &n.keep.floor}
}

// leaseDriftDivisor sets the share of the heartbeat timeout a lease keeps
// back for clock drift: the lease is measured on this leader's monotonic
// clock, the followers' heartbeat timeouts on theirs, and a leader clock
// running slow next to a follower clock running fast would otherwise let
// the lease outlast the follower's refusal to vote. A twentieth covers
// clocks whose rates differ from true time by up to 2.5% each, far beyond
// what NTP slews a monotonic clock (0.05%).
const leaseDriftDivisor = 20

// leaseWindow is how long a leadership confirmation serves LEASE reads:
// the leader lease, but never more than the heartbeat timeout less the
// drift margin (formal/lease.pml checks the rule, and finds a stale read
// without the margin).
func leaseWindow(leaderLease, heartbeat time.Duration) time.Duration {
	return min(leaderLease, heartbeat-heartbeat/leaseDriftDivisor)
}

// serve waits once for what every read of the batch needs, then queries and
// answers each. The wait is bounded by the earliest deadline of the batch:
// when it runs out, the reads due by then are answered DEADLINE_EXCEEDED
// and the others wait again, so each read is answered by its own deadline
// without a timer of its own.
func (p readPath) serve(kind readKind, reads []pendingRead) {
	if len(reads) == 0 {
		return
	}
	out := reads[0].reply.n.outcomes(len(reads))
	defer out.tell()
	for len(reads) > 0 {
		due := reads[0].deadline
		for _, rd := range reads[1:] {
			if rd.deadline.Before(due) {
				due = rd.deadline
			}
		}
		err := p.waitFor(kind, due)
		if err == nil {
			break
		}
		if err.Code != actors.Code_DEADLINE_EXCEEDED {
			for _, rd := range reads {
				rd.reply.finishIn(out, &actors.ReadResponse{Error: err})
			}
			return
		}
		waiting := reads[:0]
		for _, rd := range reads {
			if rd.deadline.After(due) {
				waiting = append(waiting, rd)
				continue
			}
			rd.reply.finishIn(out, &actors.ReadResponse{Error: err})
		}
		reads = waiting
	}
	// Clients learn who leads from the answer: a follower serves
	// LINEARIZABLE reads too, so a success alone does not tell.
	var leader *actors.Server
	if kind != readStale {
		leader = leaderOf(p.r)
	}
	for _, rd := range reads {
		if rd.reply.done.Load() {
			continue
		}
		if qs := rd.req.GetQueries(); len(qs) > 0 {
			resp := p.queryBatch(qs)
			resp.Leader = leader
			rd.reply.finishIn(out, resp)
			continue
		}
		res, applied, err := p.f.query(rd.req.GetQuery())
		p.floor.raise(applied)
		if err != nil {
			rd.reply.finishIn(out, &actors.ReadResponse{Error: actors.InvalidArgument("query", "%v", err), AppliedIndex: applied, Leader: leader})
			continue
		}
		rd.reply.finishIn(out, &actors.ReadResponse{Result: res, AppliedIndex: applied, Leader: leader})
	}
}

// queryBatch answers each query of a batch, once the batch may read. A
// query the state machine refuses fails alone.
func (p readPath) queryBatch(queries [][]byte) *actors.ReadResponse {
	resp := &actors.ReadResponse{Results: make([]*actors.ReadResult, len(queries))}
	for i, q := range queries {
		res, applied, err := p.f.query(q)
		p.floor.raise(applied)
		r := &actors.ReadResult{Result: res, AppliedIndex: applied}
		if err != nil {
			r.Result, r.Error = nil, actors.InvalidArgument("queries", "query %d: %v", i, err)
		}
		resp.Results[i], resp.AppliedIndex = r, applied
	}
	return resp
}

// waitFor returns once reads of kind may query the state machine.
func (p readPath) waitFor(kind readKind, deadline time.Time) *actors.Error {
	var index uint64
	switch kind {
	case readStale:
		return p.floor.admitStale(p.f)
	case readFollower:
		leader := leaderOf(p.r)
		if leader == nil {
			return actors.NotLeader(nil)
		}
		i, err := p.peers.readIndex(raft.ServerID(leader.Id), raft.ServerAddress(leader.Address), deadline)
		if err != nil {
			return err
		}
		index = i
	case readLinearizable:
		i, err := p.leaderReadIndex(deadline)
		if err != nil {
			return err
		}
		index = i
	case readLease:
		if err := p.ready.wait(p.r, deadline); err != nil {
			return err
		}
		if !p.batcher.leaseHeld(p.r.CurrentTerm(), p.lease, monoNow()) {
			// No confirmation within the lease (none yet, or the process
			// was paused): a quorum round renews it and gives the index.
			i, err := p.confirmedIndex(deadline)
			if err != nil {
				return err
			}
			index = i
			break
		}
		index = p.r.CommitIndex()
		if p.r.State() != raft.Leader {
			return actors.NotLeader(leaderOf(p.r))
		}
	}
	return waitApplied(p.r, p.f, p.logs, index, deadline)
}

// leaderReadIndex is a read index confirmed by a quorum after the call
// began, for this leader's own reads and for its followers' (the
// read index requests they send, see peerHandler).
func (p readPath) leaderReadIndex(deadline time.Time) (uint64, *actors.Error) {
	if p.r.State() != raft.Leader {
		return 0, actors.NotLeader(leaderOf(p.r))
	}
	if err := p.ready.wait(p.r, deadline); err != nil {
		return 0, err
	}
	return p.confirmedIndex(deadline)
}

// confirmedIndex is a round's read index, once the leader committed an
// entry in the round's term: a round in a term the node became ready for
// only later (it lost and regained leadership meanwhile) may not serve.
func (p readPath) confirmedIndex(deadline time.Time) (uint64, *actors.Error) {
	index, term, err := p.batcher.readIndex(p.r, p.peers, deadline)
	if err != nil {
		return 0, err
	}
	if p.ready.readyTerm.Load() != term {
		return 0, actors.NotLeader(leaderOf(p.r))
	}
	return index, nil
}

// readIndexBatcher lets one leadership confirmation serve every
// linearizable read waiting for it (batched ReadIndex). Without it each read
// would probe a quorum of its own.
//
// A read joins the round that has not started yet; a round starts by
// noting the commit index and only then probes the voters (confirm). So
// every read of a round arrived before its index was taken and before any
// probe that confirms it was sent, which is what ReadIndex needs: a read
// arriving while a round is confirming waits for the next one, never for an
// index noted before it arrived. Up to maxConfirmationsInFlight rounds run
// at once, so a read that just missed one round waits for at most one round
// trip of its own, not for the rest of that round first. The zero value is
// ready.
type readIndexBatcher struct {
	mu      sync.Mutex
	next    *readRound // the round new reads join; nil until one arrives
	running int        // goroutines running rounds

	// confirmed is the latest lease a round established: from when no
	// other leader can be elected, and in which term. LEASE reads trust it.
	confirmed atomic.Pointer[confirmation]

	// transfers counts leadership transfers in progress, and leaseFloor is
	// the earliest start a confirmation needs to serve LEASE reads (see
	// suspendLease): a transfer's target is voted for by followers that
	// heard from this leader a moment ago, so no lease holds across one.
	transfers  atomic.Int32
	leaseFloor atomic.Int64 // a time.Duration since monoBase

	// latencies orders the voters a round probes first.
	latencies probeLatencies

	// counts are what StatusResponse.read_confirmations reports.
	counts readCounts
}

// readCounts are the cumulative counts of a batcher (see
// actors.ReadConfirmations).
type readCounts struct {
	waits, rounds, roundNanos, probes, hedges atomic.Uint64
}

// proto returns the counts as the status reports them.
func (c *readCounts) proto() *actors.ReadConfirmations {
	return &actors.ReadConfirmations{
		Waits: c.waits.Load(), Rounds: c.rounds.Load(), RoundNanos: c.roundNanos.Load(),
		Probes: c.probes.Load(), Hedges: c.hedges.Load(),
	}
}

// maxConfirmationsInFlight bounds the rounds of leadership probes running at
// once. Probes sent after a round noted its index vouch for that round
// alone, so rounds may overlap; two let a read that just missed a round
// start its own at once, and more would only multiply probes under load.
const maxConfirmationsInFlight = 2

// confirmation is a lease: no other leader can be elected before at + the
// followers' heartbeat timeout, because each follower of a quorum that
// vouched for it heard from this leader at or after at and votes for no one
// else until its heartbeat timeout has passed since.
type confirmation struct {
	term uint64
	at   time.Duration // since monoBase
}

// monoBase anchors monotonic time stamps: Go's monotonic clock keeps
// running while the process is stopped (SIGSTOP), which is what a lease
// must measure.
var monoBase = time.Now()

func monoNow() time.Duration { return time.Since(monoBase) }

// leaseHeld reports whether a lease of term began less than lease ago (now,
// since monoBase), so that a LEASE read may use the commit index without a
// quorum round. A leader that was paused (SIGSTOP, a long GC or VM pause)
// finds its lease too old when it resumes, even though Raft has not yet
// noticed that it lost its leadership.
func (b *readIndexBatcher) leaseHeld(term uint64, lease, now time.Duration) bool {
	c := b.confirmed.Load()
	return c != nil && c.term == term && now-c.at < lease &&
		b.transfers.Load() == 0 && c.at >= time.Duration(b.leaseFloor.Load())
}

// suspendLease stops LEASE reads from trusting any lease until the returned
// resume is called, and then until a lease that began at least grace after
// that: a transfer's TimeoutNow may still be on its way when the transfer
// gives up, and its target then wins votes regardless of leases.
func (b *readIndexBatcher) suspendLease(grace time.Duration) (resume func()) {
	b.transfers.Add(1)
	return func() {
		floor := int64(monoNow() + grace)
		for {
			old := b.leaseFloor.Load()
			if old >= floor || b.leaseFloor.CompareAndSwap(old, floor) {
				break
			}
		}
		b.transfers.Add(-1)
	}
}

// readRound is one leadership confirmation and the index it vouches for.
type readRound struct {
	done  chan struct{}
	term  uint64
	index uint64
	err   *actors.Error
}

// readIndex returns a read index confirmed by a quorum after this call
// began, and the term it was confirmed in: the state machine answers
// linearizably once it applied that index.
func (b *readIndexBatcher) readIndex(r *raft.Raft, probe prober, deadline time.Time) (uint64, uint64, *actors.Error) {
	b.counts.waits.Add(1)
	b.mu.Lock()
	round := b.next
	if round == nil {
		round = &readRound{done: make(chan struct{})}
		b.next = round
		if b.running < maxConfirmationsInFlight {
			b.running++
			go b.run(r, probe)
		}
	}
	b.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-round.done:
		return round.index, round.term, round.err
	case <-timer.C:
		return 0, 0, actors.DeadlineExceeded("waiting for the leader to confirm its leadership")
	}
}

// run confirms rounds one after another while reads keep arriving, and
// exits when none waits, so an idle node keeps no goroutine.
func (b *readIndexBatcher) run(r *raft.Raft, probe prober) {
	for {
		b.mu.Lock()
		round := b.next
		b.next = nil
		if round == nil {
			b.running--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.confirm(r, probe, round)
		close(round.done)
	}
}

// readKindFor is how this node serves a read of consistency c: STALE from
// its own state, LEASE on the leader only, LINEARIZABLE on the leader or,
// on a follower that knows the leader (and LeaderOnlyReads is off), with
// the leader's read index. The refusal is INVALID_ARGUMENT for an unknown
// consistency and NOT_LEADER, naming the leader, otherwise.
func (n *Node) readKindFor(c actors.Consistency) (readKind, *actors.Error) {
	var kind readKind
	switch c {
	case actors.Consistency_STALE:
		return readStale, nil
	case actors.Consistency_LEASE:
		kind = readLease
	case actors.Consistency_LINEARIZABLE:
		kind = readLinearizable
	default:
		return 0, actors.InvalidArgument("consistency", "unknown consistency %d", c)
	}
	r := n.run.raft
	if r.State() == raft.Leader {
		return kind, nil
	}
	leader := leaderOf(r)
	if kind != readLinearizable || n.cfg.LeaderOnlyReads || leader == nil {
		return 0, actors.NotLeader(leader)
	}
	return readFollower, nil
}

// termReadiness tracks whether the leader has committed an entry in its
// current term, by a barrier issued once per term and shared by every read
// that waits for it.
type termReadiness struct {
	readyTerm atomic.Uint64
	// stopped is closed once the instance's Raft has shut down: a wait
	// ends then rather than at its deadline. hashicorp/raft v1.8 never
	// answers a barrier that entered its apply queue just before Shutdown
	// (the future has no shutdown channel), so the goroutine waiting on
	// that barrier stays; the waits for it do not.
	stopped  chan struct{}
	stopOnce sync.Once

	mu       sync.Mutex
	term     uint64
	inflight chan struct{}
	err      *actors.Error
}

// newTermReadiness returns the readiness of a new instance's Raft.
func newTermReadiness() *termReadiness { return &termReadiness{stopped: make(chan struct{})} }

// stop ends every wait, once the instance's Raft has shut down.
func (t *termReadiness) stop() { t.stopOnce.Do(func() { close(t.stopped) }) }

// wait returns once a barrier of the node's current term has committed.
func (t *termReadiness) wait(r *raft.Raft, deadline time.Time) *actors.Error {
	term := r.CurrentTerm()
	if t.readyTerm.Load() == term {
		return nil
	}
	t.mu.Lock()
	if t.inflight == nil || t.term != term {
		done := make(chan struct{})
		t.term, t.inflight, t.err = term, done, nil
		go func() {
			err := r.Barrier(0).Error()
			t.mu.Lock()
			if err != nil {
				t.err = raftError(r, err)
			} else if r.CurrentTerm() == term {
				t.readyTerm.Store(term)
			}
			if t.inflight == done {
				t.inflight = nil
			}
			t.mu.Unlock()
			close(done)
		}()
	}
	done := t.inflight
	t.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
	case <-t.stopped:
		return actors.Errorf(actors.Code_UNAVAILABLE, "the node stopped while waiting for the leader's first commit of its term")
	case <-timer.C:
		return actors.DeadlineExceeded("waiting for the leader's first commit of its term")
	}
	if t.readyTerm.Load() == term {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	return actors.NotLeader(leaderOf(r))
}

// waitApplied returns once the state machine reflects every entry up to
// index. Raft hands no-ops and barriers to no state machine, so when the
// state machine is behind index but Raft has dispatched everything up to it,
// the entries in between are looked up: if none of them is a command or a
// configuration, the state already reflects index.
//
// f.reflected remembers the highest index found that way: entries at or
// below a committed index never change, so the answer stays true for that
// state machine.
func waitApplied(r *raft.Raft, f *fsm, logs raft.LogStore, index uint64, deadline time.Time) *actors.Error {
	reflected := &f.reflected
	// Under steady load the index is almost always reflected already:
	// answer before paying for a timer.
	if f.applied.Load() >= index || reflected.Load() >= index {
		return nil
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	poll := 200 * time.Microsecond
	for {
		changed := f.changed()
		applied := f.applied.Load()
		if applied >= index {
			return nil
		}
		if r.AppliedIndex() >= index {
			invisible, err := onlyInvisible(logs, applied+1, index)
			if err != nil {
				return err
			}
			if invisible {
				for {
					known := reflected.Load()
					if known >= index || reflected.CompareAndSwap(known, index) {
						return nil
					}
				}
			}
		}
		select {
		case <-changed:
		case <-time.After(poll):
			poll = min(2*poll, 10*time.Millisecond)
		case <-timer.C:
			return actors.DeadlineExceeded("waiting for the state machine to apply the read index")
		}
	}
}

// onlyInvisible reports whether no entry in [from, to] reaches the state
// machine. Entries already compacted away (raft.ErrLogNotFound) are covered
// by a snapshot the state machine restored, so they count as invisible; any
// other error of the log store means the node cannot tell, and the read
// fails with INTERNAL rather than be served from a state that might miss a
// write.
func onlyInvisible(logs raft.LogStore, from, to uint64) (bool, *actors.Error) {
	if to-from > 64 {
		return false, nil
	}
	var l raft.Log
	for i := from; i <= to; i++ {
		err := logs.GetLog(i, &l)
		switch {
		case errors.Is(err, raft.ErrLogNotFound):
			continue
		case err != nil:
			return false, actors.Errorf(actors.Code_INTERNAL, "reading log entry %d to check a read index: %v", i, err)
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false, nil
		}
	}
	return true, nil
}

package limiter

import (
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/protoraft/protoraft/actors"
)

// Anonymous is the principal of a request that carries none (no
// actors.HeaderPrincipal): all such requests share one per-principal budget.
const Anonymous = "anonymous"

// Class is a request's budget: reads, writes and administrative operations
// each spend their own.
type Class uint8

// The classes of requests; see ClassOf.
const (
	ClassRead Class = iota
	ClassWrite
	ClassAdmin
	numClasses
)

// String names the class as limit names and configuration fields do.
func (c Class) String() string {
	switch c {
	case ClassRead:
		return "read"
	case ClassWrite:
		return "write"
	case ClassAdmin:
		return "admin"
	default:
		return "class" + strconv.Itoa(int(c))
	}
}

// Cost is how many requests req counts as against rate limits: the
// queries of a read batch, otherwise one.
func Cost(req any) int {
	if r, ok := req.(*actors.ReadRequest); ok && len(r.GetQueries()) > 0 {
		return len(r.GetQueries())
	}
	return 1
}

// ClassOf returns the class of a request the node serves, and false for any
// other message. Reads and writes are client traffic; everything else
// (leader lookups, status, members, membership, leadership transfer,
// timeouts, snapshots, policy read-backs) is administrative, so a client flood never keeps an
// operator or a Client's leader lookup out.
func ClassOf(req any) (Class, bool) {
	switch req.(type) {
	case *actors.WriteRequest:
		return ClassWrite, true
	case *actors.ReadRequest:
		return ClassRead, true
	case *actors.LeaderRequest, *actors.MembershipRequest, *actors.TransferLeadershipRequest,
		*actors.MembersRequest, *actors.UpdateTimeoutsRequest, *actors.GetTimeoutsRequest,
		*actors.StatusRequest, *actors.SnapshotRequest, *actors.SnapshotReadRequest, *actors.PolicyGetRequest:
		return ClassAdmin, true
	default:
		return 0, false
	}
}

// The limits a refusal names, per class ("write_rps_per_principal"), built
// once so the refusal path does not concatenate.
const (
	kindRPS = iota
	kindPrincipalRPS
	kindConcurrency
	kindPrincipalConcurrency
	kindBytes
	kindPrincipalBytes
	kindRequestBytes
	numKinds
)

var kindNames = [numKinds]string{"rps", "rps_per_principal", "concurrency", "concurrency_per_principal",
	"bytes_in_flight", "bytes_in_flight_per_principal", "request_bytes"}

var limitNames = func() (n [numClasses][numKinds]string) {
	for c := Class(0); c < numClasses; c++ {
		for k := range numKinds {
			n[c][k] = c.String() + "_" + kindNames[k]
		}
	}
	return n
}()

// LimitRaftBacklog is the limit a write refused for Raft's backlog names.
const LimitRaftBacklog = "raft_backlog"

// Bounds of the retry-after hint of a refusal for concurrency or bytes in
// flight, which is the recent time a permit was held: below the lower bound
// a client would just spin, above the upper one it would sit idle long
// after room was made.
const (
	minBusyRetry     = 5 * time.Millisecond
	maxBusyRetry     = time.Second
	initialBusyRetry = 10 * time.Millisecond
)

// Permit is an admitted request's claim on the limiter's budgets. Give it
// back with Release when the request ends; the zero Permit is no permit.
// It is a small value (slot and generation), so admitting allocates
// nothing, and a stale copy can never release a later request's permit.
type Permit struct{ id uint64 }

// ID is the permit's number, never 0 for a real permit.
func (p Permit) ID() uint64 { return p.id }

// String is the permit as carried in the actors.HeaderPermit header.
func (p Permit) String() string { return strconv.FormatUint(p.id, 10) }

// ParsePermit reads a permit from its String form.
func ParsePermit(s string) (Permit, bool) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return Permit{}, false
	}
	return Permit{id}, true
}

func (p Permit) slot() uint32 { return uint32(p.id >> 32) }
func (p Permit) gen() uint32  { return uint32(p.id) }

// slot holds one permit in flight.
type slot struct {
	gen       uint32
	used      bool
	class     Class
	principal *principal
	bytes     int64
	acquired  int64 // unix nano
	deadline  int64 // unix nano
}

// usage is what a class or a principal holds in flight.
type usage struct {
	inFlight int
	bytes    int64
}

// classState is one class's budget.
type classState struct {
	lim    ClassLimits
	bucket *rate.Limiter // nil: unlimited
	usage
	admitted, refused uint64
	// hold is a moving average of how long permits are held: the hint for
	// a refusal that waits for room rather than for a token.
	hold time.Duration
}

// principal is one principal's budgets; it exists only while one of its
// classes has a per-principal limit, and is dropped when idle.
type principal struct {
	name    string
	buckets [numClasses]*rate.Limiter
	usage   [numClasses]usage
}

// Limiter admits or refuses requests and accounts for the ones in flight.
// It is safe for concurrent use; the limiter actor is its only user in a
// group. It holds no goroutine and no timer: permits past their deadline
// come back when the owner calls Sweep.
type Limiter struct {
	mu         sync.Mutex
	cfg        Config
	classes    [numClasses]classState
	principals map[string]*principal
	slots      []slot
	free       []uint32

	backlog       uint64
	backlogLeader bool
	backlogRetry  time.Duration

	admitted, refused, reclaimed uint64
	refusedBy                    map[string]uint64

	now func() time.Time
}

// New returns a limiter enforcing cfg, which must be valid (Validate).
func New(cfg Config) *Limiter {
	l := &Limiter{
		principals: map[string]*principal{},
		refusedBy:  map[string]uint64{},
		now:        time.Now,
	}
	for c := range l.classes {
		l.classes[c].hold = initialBusyRetry
	}
	l.setConfig(cfg)
	return l
}

// Config returns the limits in force.
func (l *Limiter) Config() Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// SetConfig replaces the limits, which must be valid (Validate). Requests
// in flight keep their permits; token buckets keep their tokens (up to a
// smaller burst), so a change never hands out a fresh burst.
func (l *Limiter) SetConfig(cfg Config) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setConfig(cfg)
}

func (l *Limiter) setConfig(cfg Config) {
	now := l.now()
	l.cfg = cfg
	l.backlogRetry = cfg.PollInterval
	if l.backlogRetry == 0 {
		l.backlogRetry = DefaultPollInterval
	}
	for c := Class(0); c < numClasses; c++ {
		cs := &l.classes[c]
		cs.lim = *cfg.Class(c)
		cs.bucket = retune(cs.bucket, cs.lim.RPS, cs.lim.Burst, now)
		for _, p := range l.principals {
			p.buckets[c] = retune(p.buckets[c], cs.lim.PrincipalRPS, cs.lim.PrincipalBurst, now)
		}
	}
}

// retune returns b set to rps and burst: nil when unlimited, a new full
// bucket when there was none.
func retune(b *rate.Limiter, rps float64, bst int, now time.Time) *rate.Limiter {
	if rps == 0 {
		return nil
	}
	if b == nil {
		return rate.NewLimiter(rate.Limit(rps), burst(rps, bst))
	}
	b.SetLimitAt(now, rate.Limit(rps))
	b.SetBurstAt(now, burst(rps, bst))
	return b
}

// SetRaftBacklog tells the limiter the node's latest backlog (entries
// appended and not yet applied) and whether it leads. Only a leader's
// backlog refuses writes: a follower answers writes with NOT_LEADER, which
// sends the client to the leader, and a refusal here would hide that.
func (l *Limiter) SetRaftBacklog(backlog uint64, leader bool) {
	l.mu.Lock()
	l.backlog, l.backlogLeader = backlog, leader
	l.mu.Unlock()
}

// needsPrincipal reports whether class c has a per-principal limit.
func (cs *classState) needsPrincipal() bool {
	return cs.lim.PrincipalRPS > 0 || cs.lim.PrincipalConcurrency > 0 || cs.lim.PrincipalBytesInFlight > 0
}

// Acquire admits a request of class c from principal ("" is Anonymous)
// whose encoded size is size, and returns its permit; or refuses it with
// RESOURCE_EXHAUSTED naming the limit hit and when to retry. A request that
// could never fit (larger than request_bytes or than bytes_in_flight) is
// refused with INVALID_ARGUMENT instead, so no client retries it until its
// deadline; the error names the limit too. deadline is when Sweep takes
// the permit back if Release has not.
//
// No budget is spent on a refusal: every limit is checked before any is
// charged.
func (l *Limiter) Acquire(principalName string, c Class, size int, deadline time.Time) (Permit, *actors.Error) {
	return l.AcquireN(principalName, c, size, 1, deadline)
}

// AcquireN is Acquire for a message that carries n requests (a read batch of
// n queries, see Cost): rate limits charge n tokens, while concurrency and
// bytes count the message as what it is, one message of size bytes. A batch
// larger than a bucket's burst could never pass and is refused with
// INVALID_ARGUMENT.
func (l *Limiter) AcquireN(principalName string, c Class, size, n int, deadline time.Time) (Permit, *actors.Error) {
	n = max(n, 1)
	if principalName == "" {
		principalName = Anonymous
	}
	sz := int64(size)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	cs := &l.classes[c]
	lim := &cs.lim
	if lim.RequestBytes > 0 && sz > lim.RequestBytes {
		return Permit{}, l.tooLarge(c, kindRequestBytes, sz, lim.RequestBytes)
	}
	if lim.BytesInFlight > 0 && sz > lim.BytesInFlight {
		return Permit{}, l.tooLarge(c, kindBytes, sz, lim.BytesInFlight)
	}
	if lim.PrincipalBytesInFlight > 0 && sz > lim.PrincipalBytesInFlight {
		return Permit{}, l.tooLarge(c, kindPrincipalBytes, sz, lim.PrincipalBytesInFlight)
	}
	if c == ClassWrite && l.cfg.RaftBacklog > 0 && l.backlogLeader && l.backlog > l.cfg.RaftBacklog {
		return Permit{}, l.refuse(c, LimitRaftBacklog, l.backlogRetry,
			"the leader's Raft backlog of %d entries is over %d", l.backlog, l.cfg.RaftBacklog)
	}
	if lim.Concurrency > 0 && cs.inFlight >= lim.Concurrency {
		return Permit{}, l.busy(c, kindConcurrency, "%d %s requests in flight", cs.inFlight, c)
	}
	if lim.BytesInFlight > 0 && cs.bytes+sz > lim.BytesInFlight {
		return Permit{}, l.busy(c, kindBytes, "%d bytes of %s requests in flight", cs.bytes, c)
	}
	var p *principal
	if cs.needsPrincipal() {
		p = l.principalFor(principalName, now)
		u := &p.usage[c]
		if lim.PrincipalConcurrency > 0 && u.inFlight >= lim.PrincipalConcurrency {
			return Permit{}, l.busy(c, kindPrincipalConcurrency, "%d %s requests of %s in flight", u.inFlight, c, principalName)
		}
		if lim.PrincipalBytesInFlight > 0 && u.bytes+sz > lim.PrincipalBytesInFlight {
			return Permit{}, l.busy(c, kindPrincipalBytes, "%d bytes of %s requests of %s in flight", u.bytes, c, principalName)
		}
		if b := p.buckets[c]; b != nil {
			if n > b.Burst() {
				return Permit{}, l.overBurst(c, kindPrincipalRPS, n, b.Burst())
			}
			if wait := tokenWait(b, now, n); wait > 0 {
				return Permit{}, l.refuse(c, limitNames[c][kindPrincipalRPS], wait,
					"%s over %v %s requests per second", principalName, b.Limit(), c)
			}
		}
	}
	if b := cs.bucket; b != nil {
		if n > b.Burst() {
			return Permit{}, l.overBurst(c, kindRPS, n, b.Burst())
		}
		if wait := tokenWait(b, now, n); wait > 0 {
			return Permit{}, l.refuse(c, limitNames[c][kindRPS], wait, "over %v %s requests per second", b.Limit(), c)
		}
		b.AllowN(now, n)
	}
	if p != nil {
		if b := p.buckets[c]; b != nil {
			b.AllowN(now, n)
		}
		p.usage[c].inFlight++
		p.usage[c].bytes += sz
	}
	cs.inFlight++
	cs.bytes += sz
	cs.admitted++
	l.admitted++
	return l.take(slot{class: c, principal: p, bytes: sz, acquired: now.UnixNano(), deadline: deadline.UnixNano()}), nil
}

// tokenWait is how long until b has n tokens at now; 0 when it has them.
func tokenWait(b *rate.Limiter, now time.Time, n int) time.Duration {
	tokens := b.TokensAt(now)
	if tokens >= float64(n) {
		return 0
	}
	return max(time.Duration((float64(n)-tokens)/float64(b.Limit())*float64(time.Second)), time.Millisecond)
}

// principalFor returns the state of principal name, creating it.
func (l *Limiter) principalFor(name string, now time.Time) *principal {
	if p, ok := l.principals[name]; ok {
		return p
	}
	p := &principal{name: name}
	for c := Class(0); c < numClasses; c++ {
		lim := &l.classes[c].lim
		p.buckets[c] = retune(nil, lim.PrincipalRPS, lim.PrincipalBurst, now)
	}
	l.principals[name] = p
	return p
}

// take stores s in a free slot and returns its permit.
func (l *Limiter) take(s slot) Permit {
	var i uint32
	if n := len(l.free); n > 0 {
		i = l.free[n-1]
		l.free = l.free[:n-1]
		s.gen = l.slots[i].gen
	} else {
		i = uint32(len(l.slots))
		s.gen = 1
		l.slots = append(l.slots, slot{})
	}
	s.used = true
	l.slots[i] = s
	return Permit{uint64(i)<<32 | uint64(s.gen)}
}

func (l *Limiter) countRefusal(c Class, limit string) {
	l.refused++
	l.classes[c].refused++
	l.refusedBy[limit]++
}

func (l *Limiter) refuse(c Class, limit string, retry time.Duration, format string, args ...any) *actors.Error {
	l.countRefusal(c, limit)
	return actors.ResourceExhausted(limit, retry, format, args...)
}

// busy refuses for lack of room in flight; room comes back as permits do,
// so the hint is how long permits of the class are held lately.
func (l *Limiter) busy(c Class, kind int, format string, args ...any) *actors.Error {
	return l.refuse(c, limitNames[c][kind], min(max(l.classes[c].hold, minBusyRetry), maxBusyRetry), format, args...)
}

// tooLarge refuses a request that no wait would let in.
// overBurst refuses a batch of n requests that a bucket of burst tokens
// can never hold.
func (l *Limiter) overBurst(c Class, kind, n, burst int) *actors.Error {
	limit := limitNames[c][kind]
	l.countRefusal(c, limit)
	e := actors.InvalidArgument("queries", "a batch of %d %s requests is over the %s burst of %d", n, c, limit, burst)
	e.Limit = limit
	return e
}

func (l *Limiter) tooLarge(c Class, kind int, size, bound int64) *actors.Error {
	limit := limitNames[c][kind]
	l.countRefusal(c, limit)
	field := "request"
	switch c {
	case ClassWrite:
		field = "command"
	case ClassRead:
		field = "query"
	}
	e := actors.InvalidArgument(field, "the %s request is %d bytes, over the %s limit of %d", c, size, limit, bound)
	e.Limit = limit
	return e
}

// Release gives a permit back. It reports false, and does nothing, for a
// permit already given back or reclaimed, or not issued by this limiter.
func (l *Limiter) Release(p Permit) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.release(p, l.now().UnixNano())
}

func (l *Limiter) release(p Permit, now int64) bool {
	i := p.slot()
	if p.id == 0 || int(i) >= len(l.slots) {
		return false
	}
	s := &l.slots[i]
	if !s.used || s.gen != p.gen() {
		return false
	}
	cs := &l.classes[s.class]
	cs.inFlight--
	cs.bytes -= s.bytes
	if s.principal != nil {
		u := &s.principal.usage[s.class]
		u.inFlight--
		u.bytes -= s.bytes
	}
	if held := time.Duration(now - s.acquired); held > 0 {
		cs.hold += (held - cs.hold) / 8
	}
	s.used = false
	s.principal = nil
	s.gen++
	if s.gen == 0 {
		s.gen = 1
	}
	l.free = append(l.free, i)
	return true
}

// Sweep takes back every permit whose deadline passed before now, and
// returns how many. The owner calls it periodically: it is what returns the
// permits of requests whose end nobody reported (a node that panicked
// drops the message it was handling without a reply).
func (l *Limiter) Sweep(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := now.UnixNano()
	n := 0
	for i := range l.slots {
		s := &l.slots[i]
		if s.used && s.deadline < t {
			l.release(Permit{uint64(i)<<32 | uint64(s.gen)}, t)
			n++
		}
	}
	l.reclaimed += uint64(n)
	return n
}

// ReleaseAll takes back every permit in flight, and returns how many: for
// when the node is gone and will report no more ends.
func (l *Limiter) ReleaseAll() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.now().UnixNano()
	n := 0
	for i := range l.slots {
		if s := &l.slots[i]; s.used {
			l.release(Permit{uint64(i)<<32 | uint64(s.gen)}, t)
			n++
		}
	}
	l.reclaimed += uint64(n)
	return n
}

// ForgetIdle drops the state of principals with nothing in flight whose
// buckets are full again: recreating it later is the same, and keeping it
// would let a stream of one-off principals grow memory without bound.
func (l *Limiter) ForgetIdle(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for name, p := range l.principals {
		if p.idle(now) {
			delete(l.principals, name)
			n++
		}
	}
	return n
}

func (p *principal) idle(now time.Time) bool {
	for c := range p.usage {
		if p.usage[c].inFlight > 0 {
			return false
		}
		if b := p.buckets[c]; b != nil && b.TokensAt(now) < float64(b.Burst()) {
			return false
		}
	}
	return true
}

// Stats returns the limiter's counters.
func (l *Limiter) Stats() *actors.LimiterStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := &actors.LimiterStats{
		Admitted:       l.admitted,
		Refused:        l.refused,
		RefusedByLimit: make(map[string]uint64, len(l.refusedBy)),
		Reclaimed:      l.reclaimed,
		Principals:     uint64(len(l.principals)),
	}
	if l.backlogLeader {
		st.RaftBacklog = l.backlog
	}
	for k, v := range l.refusedBy {
		st.RefusedByLimit[k] = v
	}
	for c := Class(0); c < numClasses; c++ {
		cs := &l.classes[c]
		s := &actors.ClassStats{Admitted: cs.admitted, Refused: cs.refused, InFlight: uint64(cs.inFlight), BytesInFlight: uint64(cs.bytes)}
		st.InFlight += s.InFlight
		st.BytesInFlight += s.BytesInFlight
		switch c {
		case ClassRead:
			st.Read = s
		case ClassWrite:
			st.Write = s
		case ClassAdmin:
			st.Admin = s
		}
	}
	return st
}

package limiter

import (
	"fmt"
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
)

// clock is a manual clock for the core, so token buckets and deadlines are
// tested without sleeping.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLimiter(t *testing.T, cfg Config) (*Limiter, *clock) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("invalid test config: %v", err)
	}
	c := &clock{t: time.Unix(1_000_000, 0)}
	l := New(Config{})
	l.now = c.now
	l.SetConfig(cfg)
	return l, c
}

// far is a deadline no test reaches.
func far(c *clock) time.Time { return c.t.Add(time.Hour) }

func mustAdmit(t *testing.T, l *Limiter, c *clock, who string, class Class, size int) Permit {
	t.Helper()
	p, err := l.Acquire(who, class, size, far(c))
	if err != nil {
		t.Fatalf("%s %s of %d bytes refused: %v", who, class, size, err)
	}
	return p
}

func mustRefuse(t *testing.T, l *Limiter, c *clock, who string, class Class, size int, code actors.Code, limit string) *actors.Error {
	t.Helper()
	p, err := l.Acquire(who, class, size, far(c))
	if err == nil {
		t.Fatalf("%s %s of %d bytes admitted (permit %v), want refused by %s", who, class, size, p, limit)
	}
	if err.Code != code || err.Limit != limit {
		t.Fatalf("%s %s refused with %v, want %v naming %s", who, class, err, code, limit)
	}
	return err
}

// assertIdle checks that nothing is held in flight.
func assertIdle(t *testing.T, l *Limiter) {
	t.Helper()
	st := l.Stats()
	if st.InFlight != 0 || st.BytesInFlight != 0 {
		t.Fatalf("in flight %d requests, %d bytes; want 0", st.InFlight, st.BytesInFlight)
	}
	for _, cs := range []*actors.ClassStats{st.Read, st.Write, st.Admin} {
		if cs.InFlight != 0 || cs.BytesInFlight != 0 {
			t.Fatalf("class stats %v; want nothing in flight", cs)
		}
	}
	for name, p := range l.principals {
		for c, u := range p.usage {
			if u != (usage{}) {
				t.Fatalf("principal %s holds %+v of %s", name, u, Class(c))
			}
		}
	}
}

func TestEachLimitTripsAtItsBoundAndNotBefore(t *testing.T) {
	const n = 4
	cases := []struct {
		name  string
		class Class
		cfg   ClassLimits
		size  int
		limit string
		// refill makes room again after the refusal (releasing ps[0] is
		// harmless to repeat: a permit is released once).
		refill func(*clock, []Permit, *Limiter)
	}{
		{"rps", ClassWrite, ClassLimits{RPS: 10, Burst: n}, 10, "write_rps",
			func(c *clock, _ []Permit, _ *Limiter) { c.advance(100 * time.Millisecond) }},
		{"rps_per_principal", ClassRead, ClassLimits{PrincipalRPS: 10, PrincipalBurst: n}, 10, "read_rps_per_principal",
			func(c *clock, _ []Permit, _ *Limiter) { c.advance(100 * time.Millisecond) }},
		{"concurrency", ClassRead, ClassLimits{Concurrency: n}, 10, "read_concurrency",
			func(_ *clock, ps []Permit, l *Limiter) { l.Release(ps[0]) }},
		{"concurrency_per_principal", ClassWrite, ClassLimits{PrincipalConcurrency: n}, 10, "write_concurrency_per_principal",
			func(_ *clock, ps []Permit, l *Limiter) { l.Release(ps[0]) }},
		{"bytes_in_flight", ClassWrite, ClassLimits{BytesInFlight: n * 100}, 100, "write_bytes_in_flight",
			func(_ *clock, ps []Permit, l *Limiter) { l.Release(ps[0]) }},
		{"bytes_in_flight_per_principal", ClassAdmin, ClassLimits{PrincipalBytesInFlight: n * 100}, 100, "admin_bytes_in_flight_per_principal",
			func(_ *clock, ps []Permit, l *Limiter) { l.Release(ps[0]) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cfg Config
			*cfg.Class(tc.class) = tc.cfg
			l, c := newTestLimiter(t, cfg)
			var ps []Permit
			for range n {
				ps = append(ps, mustAdmit(t, l, c, "alice", tc.class, tc.size))
			}
			e := mustRefuse(t, l, c, "alice", tc.class, tc.size, actors.Code_RESOURCE_EXHAUSTED, tc.limit)
			if e.GetRetryAfter().AsDuration() <= 0 {
				t.Fatalf("refusal %v has no retry-after hint", e)
			}
			// Other classes have their own budgets.
			for other := Class(0); other < numClasses; other++ {
				if other != tc.class {
					l.Release(mustAdmit(t, l, c, "alice", other, tc.size))
				}
			}
			tc.refill(c, ps, l)
			ps = append(ps, mustAdmit(t, l, c, "alice", tc.class, tc.size))
			for _, p := range ps {
				l.Release(p)
			}
			assertIdle(t, l)
			st := l.Stats()
			if st.RefusedByLimit[tc.limit] != 1 || st.Refused != 1 {
				t.Fatalf("refused %d, by limit %v; want 1 by %s", st.Refused, st.RefusedByLimit, tc.limit)
			}
		})
	}
}

func TestRequestBytes(t *testing.T) {
	l, c := newTestLimiter(t, Config{Write: ClassLimits{RequestBytes: 1000}, Read: ClassLimits{BytesInFlight: 500}})
	l.Release(mustAdmit(t, l, c, "", ClassWrite, 1000))
	e := mustRefuse(t, l, c, "", ClassWrite, 1001, actors.Code_INVALID_ARGUMENT, "write_request_bytes")
	if e.Field != "command" {
		t.Fatalf("refusal names field %q, want command", e.Field)
	}
	// Larger than all the room there is: waiting would never help.
	mustRefuse(t, l, c, "", ClassRead, 501, actors.Code_INVALID_ARGUMENT, "read_bytes_in_flight")
	assertIdle(t, l)
}

func TestPrincipalLimitsDoNotAffectAnotherPrincipal(t *testing.T) {
	cfg := Config{Write: ClassLimits{PrincipalRPS: 1, PrincipalBurst: 2, PrincipalConcurrency: 5, PrincipalBytesInFlight: 1 << 20}}
	l, c := newTestLimiter(t, cfg)
	a1 := mustAdmit(t, l, c, "alice", ClassWrite, 10)
	a2 := mustAdmit(t, l, c, "alice", ClassWrite, 10)
	mustRefuse(t, l, c, "alice", ClassWrite, 10, actors.Code_RESOURCE_EXHAUSTED, "write_rps_per_principal")
	b1 := mustAdmit(t, l, c, "bob", ClassWrite, 10)
	b2 := mustAdmit(t, l, c, "bob", ClassWrite, 10)
	// Requests without a principal share the anonymous budget.
	n1 := mustAdmit(t, l, c, "", ClassWrite, 10)
	n2 := mustAdmit(t, l, c, Anonymous, ClassWrite, 10)
	mustRefuse(t, l, c, "", ClassWrite, 10, actors.Code_RESOURCE_EXHAUSTED, "write_rps_per_principal")
	for _, p := range []Permit{a1, a2, b1, b2, n1, n2} {
		l.Release(p)
	}
	assertIdle(t, l)
}

// A refusal by one limit spends nothing of the others: a principal refused
// by the global rate keeps its own tokens.
func TestRefusalSpendsNothing(t *testing.T) {
	cfg := Config{Read: ClassLimits{RPS: 1, Burst: 1, PrincipalRPS: 1, PrincipalBurst: 1}}
	l, c := newTestLimiter(t, cfg)
	l.Release(mustAdmit(t, l, c, "alice", ClassRead, 1))
	mustRefuse(t, l, c, "bob", ClassRead, 1, actors.Code_RESOURCE_EXHAUSTED, "read_rps")
	c.advance(time.Second)
	// bob's bucket is untouched by his refusal: he gets in at once.
	l.Release(mustAdmit(t, l, c, "bob", ClassRead, 1))
}

func TestRaftBacklogRefusesLeaderWritesOnly(t *testing.T) {
	l, c := newTestLimiter(t, Config{RaftBacklog: 10})
	l.SetRaftBacklog(10, true)
	l.Release(mustAdmit(t, l, c, "", ClassWrite, 1))
	l.SetRaftBacklog(11, true)
	e := mustRefuse(t, l, c, "", ClassWrite, 1, actors.Code_RESOURCE_EXHAUSTED, LimitRaftBacklog)
	if e.GetRetryAfter().AsDuration() != DefaultPollInterval {
		t.Fatalf("retry after %v, want the poll interval", e.GetRetryAfter().AsDuration())
	}
	l.Release(mustAdmit(t, l, c, "", ClassRead, 1))
	l.Release(mustAdmit(t, l, c, "", ClassAdmin, 1))
	// A follower's backlog says nothing about writes: the node answers
	// NOT_LEADER and the client goes to the leader.
	l.SetRaftBacklog(1000, false)
	l.Release(mustAdmit(t, l, c, "", ClassWrite, 1))
	assertIdle(t, l)
}

func TestReleaseIsExactlyOnce(t *testing.T) {
	l, c := newTestLimiter(t, Config{Write: ClassLimits{Concurrency: 1}})
	p := mustAdmit(t, l, c, "", ClassWrite, 1)
	if !l.Release(p) {
		t.Fatal("first release refused")
	}
	if l.Release(p) {
		t.Fatal("second release of one permit accepted")
	}
	// The slot is reused; the old permit must not free the new request.
	q := mustAdmit(t, l, c, "", ClassWrite, 1)
	if q.slot() != p.slot() || q == p {
		t.Fatalf("permit %v after %v: want the same slot, another generation", q, p)
	}
	if l.Release(p) {
		t.Fatal("a stale permit released a later request's slot")
	}
	for _, bogus := range []Permit{{}, {id: 99 << 32}} {
		if l.Release(bogus) {
			t.Fatalf("permit %v never issued was released", bogus)
		}
	}
	mustRefuse(t, l, c, "", ClassWrite, 1, actors.Code_RESOURCE_EXHAUSTED, "write_concurrency")
	l.Release(q)
	assertIdle(t, l)
}

func TestSweepReclaimsPermitsPastTheirDeadline(t *testing.T) {
	l, c := newTestLimiter(t, Config{Write: ClassLimits{PrincipalConcurrency: 10}})
	early, _ := l.Acquire("alice", ClassWrite, 100, c.t.Add(time.Second))
	late, _ := l.Acquire("alice", ClassWrite, 100, c.t.Add(time.Minute))
	c.advance(2 * time.Second)
	if n := l.Sweep(c.t); n != 1 {
		t.Fatalf("swept %d permits, want 1", n)
	}
	if l.Release(early) {
		t.Fatal("a reclaimed permit was released again")
	}
	if st := l.Stats(); st.InFlight != 1 || st.BytesInFlight != 100 || st.Reclaimed != 1 {
		t.Fatalf("stats %v, want 1 in flight of 100 bytes, 1 reclaimed", st)
	}
	l.Release(late)
	assertIdle(t, l)
	if n := l.ForgetIdle(c.t); n != 1 || len(l.principals) != 0 {
		t.Fatalf("forgot %d principals, %d left; want alice forgotten", n, len(l.principals))
	}
}

func TestReleaseAll(t *testing.T) {
	l, c := newTestLimiter(t, Config{})
	for i := range 5 {
		mustAdmit(t, l, c, fmt.Sprint(i), Class(i%int(numClasses)), 10)
	}
	if n := l.ReleaseAll(); n != 5 {
		t.Fatalf("released %d, want 5", n)
	}
	assertIdle(t, l)
}

func TestSetConfigTakesEffect(t *testing.T) {
	l, c := newTestLimiter(t, Config{})
	var ps []Permit
	for range 10 {
		ps = append(ps, mustAdmit(t, l, c, "alice", ClassRead, 1))
	}
	l.SetConfig(Config{Read: ClassLimits{Concurrency: 10, PrincipalRPS: 1, PrincipalBurst: 1}})
	mustRefuse(t, l, c, "alice", ClassRead, 1, actors.Code_RESOURCE_EXHAUSTED, "read_concurrency")
	for _, p := range ps {
		l.Release(p)
	}
	l.Release(mustAdmit(t, l, c, "alice", ClassRead, 1))
	mustRefuse(t, l, c, "alice", ClassRead, 1, actors.Code_RESOURCE_EXHAUSTED, "read_rps_per_principal")
	// Raising the rate keeps the empty bucket: no fresh burst.
	l.SetConfig(Config{Read: ClassLimits{PrincipalRPS: 10, PrincipalBurst: 10}})
	mustRefuse(t, l, c, "alice", ClassRead, 1, actors.Code_RESOURCE_EXHAUSTED, "read_rps_per_principal")
	c.advance(100 * time.Millisecond)
	l.Release(mustAdmit(t, l, c, "alice", ClassRead, 1))
	l.SetConfig(Config{})
	for range 100 {
		l.Release(mustAdmit(t, l, c, "alice", ClassRead, 1))
	}
	assertIdle(t, l)
}

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		field string
		cfg   Config
	}{
		{"limits.read.rps", Config{Read: ClassLimits{RPS: -1}}},
		{"limits.write.rps_per_principal", Config{Write: ClassLimits{PrincipalRPS: nan()}}},
		{"limits.write.burst", Config{Write: ClassLimits{Burst: 3}}},
		{"limits.admin.burst_per_principal", Config{Admin: ClassLimits{PrincipalRPS: 1, PrincipalBurst: -1}}},
		{"limits.read.concurrency", Config{Read: ClassLimits{Concurrency: -1}}},
		{"limits.write.concurrency_per_principal", Config{Write: ClassLimits{PrincipalConcurrency: -2}}},
		{"limits.write.bytes_in_flight", Config{Write: ClassLimits{BytesInFlight: -2}}},
		{"limits.read.bytes_in_flight_per_principal", Config{Read: ClassLimits{PrincipalBytesInFlight: -2}}},
		{"limits.write.request_bytes", Config{Write: ClassLimits{RequestBytes: 10, BytesInFlight: 5}}},
		{"limits.poll_interval", Config{PollInterval: time.Microsecond}},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		if err == nil || err.Code != actors.Code_INVALID_ARGUMENT || err.Field != tc.field {
			t.Errorf("Validate(%+v) = %v, want INVALID_ARGUMENT naming %s", tc.cfg, err, tc.field)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config refused: %v", err)
	}
}

func nan() float64 { z := 0.0; return z / z }

func TestApply(t *testing.T) {
	cur := Config{Read: ClassLimits{Concurrency: 5}, Write: ClassLimits{RPS: 10}, RaftBacklog: 100}
	next, err := Apply(cur, &actors.UpdateLimitsRequest{Limits: &actors.Limits{Write: &actors.ClassLimits{Concurrency: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Read: ClassLimits{Concurrency: 5}, Write: ClassLimits{Concurrency: 7}, RaftBacklog: 100}
	if next != want {
		t.Fatalf("Apply = %+v, want %+v (absent classes kept, a present one replaced whole)", next, want)
	}
	next, err = Apply(cur, &actors.UpdateLimitsRequest{Limits: &actors.Limits{}, SetRaftBacklog: true})
	if err != nil || next.RaftBacklog != 0 || next.Read != cur.Read {
		t.Fatalf("Apply clearing raft_backlog = %+v, %v", next, err)
	}
	for _, tc := range []struct {
		field string
		req   *actors.UpdateLimitsRequest
	}{
		{"limits", &actors.UpdateLimitsRequest{}},
		{"limits.admin.rps", &actors.UpdateLimitsRequest{Limits: &actors.Limits{Admin: &actors.ClassLimits{Rps: -3}}}},
		{"limits.raft_backlog", &actors.UpdateLimitsRequest{Limits: &actors.Limits{RaftBacklog: 3}}},
		{"limits.write.request_bytes", &actors.UpdateLimitsRequest{Limits: &actors.Limits{Write: &actors.ClassLimits{RequestBytes: 1 << 63}}}},
	} {
		got, err := Apply(cur, tc.req)
		if err == nil || err.Field != tc.field {
			t.Errorf("Apply(%v) error %v, want one naming %s", tc.req, err, tc.field)
		}
		if got != cur {
			t.Errorf("Apply(%v) refused but changed the limits to %+v", tc.req, got)
		}
	}
	round, err := Apply(Config{}, &actors.UpdateLimitsRequest{Limits: cur.ToProto(), SetRaftBacklog: true})
	if err != nil || round != cur {
		t.Fatalf("limits did not survive the protocol: %+v, %v", round, err)
	}
}

func TestParsePermit(t *testing.T) {
	p := Permit{id: 7<<32 | 3}
	if q, ok := ParsePermit(p.String()); !ok || q != p {
		t.Fatalf("ParsePermit(%q) = %v, %v", p.String(), q, ok)
	}
	for _, s := range []string{"", "0", "x", "-1"} {
		if _, ok := ParsePermit(s); ok {
			t.Errorf("ParsePermit(%q) accepted", s)
		}
	}
}

// A read batch of n queries spends n tokens of the rate limits but holds
// one message's worth of concurrency; a batch over a burst could never pass
// and is refused as invalid rather than retried.
func TestReadBatchChargesRatePerQuery(t *testing.T) {
	cfg := Config{Read: ClassLimits{RPS: 10, Burst: 10, Concurrency: 1, PrincipalRPS: 100, PrincipalBurst: 8}}
	l, c := newTestLimiter(t, cfg)
	p, err := l.AcquireN("alice", ClassRead, 100, 6, far(c))
	if err != nil {
		t.Fatalf("a batch of 6 refused: %v", err)
	}
	l.Release(p)
	// alice has 2 of her 8 tokens left.
	if _, err := l.AcquireN("alice", ClassRead, 100, 3, far(c)); err == nil || err.Limit != "read_rps_per_principal" {
		t.Fatalf("a batch of 3 with 2 tokens left: %v, want refused by read_rps_per_principal", err)
	}
	// The global bucket (4 left) refuses bob's 5 first.
	if _, err := l.AcquireN("bob", ClassRead, 100, 5, far(c)); err == nil || err.Code != actors.Code_RESOURCE_EXHAUSTED || err.Limit != "read_rps" {
		t.Fatalf("a batch of 5 with 4 tokens left: %v, want RESOURCE_EXHAUSTED by read_rps", err)
	}
	p, err = l.AcquireN("bob", ClassRead, 100, 4, far(c))
	if err != nil {
		t.Fatalf("a batch of 4 refused: %v", err)
	}
	// One message in flight is all the concurrency allows.
	mustRefuse(t, l, c, "carol", ClassRead, 1, actors.Code_RESOURCE_EXHAUSTED, "read_concurrency")
	l.Release(p)
	c.advance(time.Hour)
	if _, err := l.AcquireN("bob", ClassRead, 100, 9, far(c)); err == nil || err.Code != actors.Code_INVALID_ARGUMENT || err.Limit != "read_rps_per_principal" {
		t.Fatalf("a batch of 9 over a burst of 8: %v, want INVALID_ARGUMENT naming read_rps_per_principal", err)
	}
	assertIdle(t, l)
}

package telemetry

import (
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
)

// PollRequestID prefixes the request ID of the metrics actor's own status
// polls. The node reports their outcomes like any other request's; the
// metrics actor leaves them out of protoraft_requests_total, so scraping
// never shows up as traffic.
const PollRequestID = "protoraft-telemetry-poll"

// limiterPollPrincipal is the principal on the limiter's own backlog
// polls (limiter.BacklogPollPrincipal; telemetry does not import its
// sibling). Like PollRequestID, it marks traffic that is not a client's.
const limiterPollPrincipal = "protoraft-limiter"

// tick asks the metrics actor to poll. Local only.
type tick struct{}

// pollDone carries a completed round of polls back into the actor.
type pollDone struct {
	poll Poll
	// events is how many LeaderChanged events the actor had seen when the
	// round started.
	events uint64
}

// Props returns the props of the metrics actor of one node: node is its
// node actor. It records what m collects, so a restart of the actor keeps
// every counter; only the leader tracking starts afresh.
func Props(m *Metrics, node *actor.PID) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &metricsActor{m: m, node: node} })
}

// metricsActor is the "metrics" stage of a group. Receive never waits:
// outcomes and events are counted at once, and polls run on a goroutine of
// their own that reports back with a message.
type metricsActor struct {
	m    *Metrics
	node *actor.PID

	system  *actor.ActorSystem
	self    *actor.PID
	sub     *eventstream.Subscription
	quit    chan struct{}
	ticker  sync.WaitGroup
	polling bool
	calls   pollCalls

	leader          string
	term            uint64
	events          uint64
	leaderlessSince time.Time
	last            Poll
	lastStatus      actors.HealthStatus
	// applied is the last applied index seen per follower, so a follower
	// that stops answering still shows a lag that grows with the log.
	applied map[string]uint64
	// series are the request series resolved so far (outcome).
	series map[outcomeKey]outcomeSeries
	// reads are the node's read confirmation counts at the last poll.
	reads *actors.ReadConfirmations
}

// Receive implements actor.Actor.
func (a *metricsActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		a.stop()
	case *actors.Outcome:
		a.outcome(msg)
	case *actors.Outcomes:
		for i := range msg.List {
			a.outcome(&msg.List[i])
		}
	case *actors.LeaderChanged:
		a.events++
		a.leaderChanged(msg.GetLeader().GetId(), msg.GetTerm(), time.Now())
	case tick:
		a.updateLeaderless(time.Now())
		if !a.polling {
			a.polling = true
			go a.poll(a.last.Self, a.events)
		}
	case pollDone:
		a.polling = false
		a.polled(msg.poll, msg.events)
	case *actors.HealthRequest:
		ctx.Respond(a.judge(time.Now()))
	}
}

func (a *metricsActor) start(ctx actor.Context) {
	// A private copy of the PID for messages to self: a PID caches the
	// process it resolved first, and one that others use from another
	// ActorSystem of the process caches a remote route.
	a.system, a.self = ctx.ActorSystem(), actor.NewPID(ctx.Self().Address, ctx.Self().Id)
	a.m.started.Store(true)
	a.applied = map[string]uint64{}
	a.leaderlessSince = time.Now()
	group, id, self, root := a.m.group, a.m.node, a.self, a.system.Root
	// EventStream runs this on the publisher's goroutine (the node's event
	// publisher): hand the event over and return.
	a.sub = a.system.EventStream.Subscribe(func(evt any) {
		if lc, ok := evt.(*actors.LeaderChanged); ok && lc.Group == group && lc.Observer == id {
			root.Send(self, lc)
		}
	})
	a.quit = make(chan struct{})
	a.ticker.Add(1)
	go func(quit chan struct{}, every time.Duration) {
		defer a.ticker.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				root.Send(self, tick{})
			}
		}
	}(a.quit, a.m.cfg.PollInterval)
	root.Send(self, tick{})
}

func (a *metricsActor) stop() {
	a.calls.end(a.system.Root)
	if a.sub != nil {
		a.system.EventStream.Unsubscribe(a.sub)
		a.sub = nil
	}
	if a.quit != nil {
		close(a.quit)
		a.ticker.Wait()
		a.quit = nil
	}
}

// outcomeKey is what the request series of an outcome are labelled with,
// besides the group and the node.
type outcomeKey struct {
	stage, op string
	code      actors.Code
}

// outcomeSeries are the series one kind of outcome moves, resolved once:
// looking them up by label values on every request would hash the labels
// every time. The series live as long as the node's metrics (Close).
type outcomeSeries struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// outcome counts one request's end.
func (a *metricsActor) outcome(o *actors.Outcome) {
	if strings.HasPrefix(o.RequestID, PollRequestID) || o.Principal == limiterPollPrincipal {
		return
	}
	c, g, n := a.m.c, a.m.group, a.m.node
	code := o.Code.String()
	k := outcomeKey{o.Stage, o.Op, o.Code}
	ser, ok := a.series[k]
	if !ok {
		ser = outcomeSeries{c.requests.WithLabelValues(g, n, o.Stage, o.Op, code), c.latency.WithLabelValues(g, n, o.Stage, o.Op)}
		if a.series == nil {
			a.series = map[outcomeKey]outcomeSeries{}
		}
		a.series[k] = ser
	}
	ser.requests.Inc()
	ser.latency.Observe(o.Latency.Seconds())
	switch {
	case o.Stage == "limiter" && o.Code == actors.Code_RESOURCE_EXHAUSTED:
		reason := o.Detail
		if reason == "" {
			reason = "unknown"
		}
		c.refusals.WithLabelValues(g, n, reason).Inc()
	case o.Stage == "authorizer" && (o.Code == actors.Code_PERMISSION_DENIED || o.Code == actors.Code_UNAUTHENTICATED):
		c.denials.WithLabelValues(g, n, o.Op, code).Inc()
	}
}

// leaderChanged follows the node's view of the leader, from its events
// (precise) and from polls (a fallback when events were missed, for
// instance before this actor restarted).
func (a *metricsActor) leaderChanged(leader string, term uint64, at time.Time) {
	c, g, n := a.m.c, a.m.group, a.m.node
	switch {
	case leader == "":
		if a.leader != "" || a.leaderlessSince.IsZero() {
			a.leaderlessSince = at
		}
	case leader != a.leader || term > a.term:
		c.leaderChanges.WithLabelValues(g, n).Inc()
		if !a.leaderlessSince.IsZero() && a.leader == "" && a.term > 0 {
			c.elections.WithLabelValues(g, n).Observe(at.Sub(a.leaderlessSince).Seconds())
		}
		a.leaderlessSince = time.Time{}
	}
	a.leader = leader
	a.term = max(a.term, term)
	a.updateLeaderless(at)
}

func (a *metricsActor) updateLeaderless(now time.Time) {
	d := 0.0
	if a.leader == "" && !a.leaderlessSince.IsZero() {
		d = now.Sub(a.leaderlessSince).Seconds()
	}
	a.m.c.leaderless.WithLabelValues(a.m.group, a.m.node).Set(d)
}

// poll runs on its own goroutine: one status request to the node, then one
// to each other member the node's last status listed, all at once. It
// never touches the actor's state; the result comes back as pollDone.
func (a *metricsActor) poll(prev *actors.StatusResponse, events uint64) {
	root, timeout := a.system.Root, a.m.cfg.PollTimeout
	ask := func(pid *actor.PID) *actor.Future {
		meta := actors.NewMeta(timeout)
		meta.RequestId = PollRequestID
		f := root.RequestFuture(pid, &actors.StatusRequest{Meta: meta}, timeout)
		a.calls.add(root, f)
		return f
	}
	selfF := ask(a.node)
	peers := map[string]*actor.Future{}
	for _, m := range prev.GetMembers() {
		if m.Id == a.m.node {
			continue
		}
		if pid, ok := pidOf(m.Address); ok {
			peers[m.Id] = ask(pid)
		}
	}
	p := Poll{Peers: map[string]*actors.StatusResponse{}}
	res, err := selfF.Result()
	if err == nil {
		if s, ok := res.(*actors.StatusResponse); ok {
			p.Self = s
		}
	}
	p.SelfErr = err
	for id, f := range peers {
		if res, err := f.Result(); err == nil {
			if s, ok := res.(*actors.StatusResponse); ok && s.GetError().Err() == nil {
				p.Peers[id] = s
			}
		}
	}
	p.At = time.Now()
	if ended := a.calls.done(); ended {
		// The actor stopped (or restarted) meanwhile: this poll's answers
		// were cut short and describe nothing.
		return
	}
	root.Send(a.self, pollDone{poll: p, events: events})
}

// pollCalls are the requests of the poll in flight. A node that stops
// while one of them waits (its actor crashed, the group is stopping) may
// never answer; stopping the metrics actor ends them at once rather than
// leave the poll's goroutine waiting out its timeout after the group is
// gone. Such a poll reports nothing: a restarted actor must not take its
// cut-short answers for the node's.
type pollCalls struct {
	mu      sync.Mutex
	ended   bool
	futures []*actor.Future
}

// add records f, or ends it at once when the actor stopped already.
func (c *pollCalls) add(root *actor.RootContext, f *actor.Future) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		root.Stop(f.PID())
		return
	}
	c.futures = append(c.futures, f)
}

// done forgets the requests of a poll that finished, and reports whether
// the actor stopped meanwhile.
func (c *pollCalls) done() (ended bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.futures = nil
	return c.ended
}

// end ends the requests still waiting, and any made later.
func (c *pollCalls) end(root *actor.RootContext) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	for _, f := range c.futures {
		root.Stop(f.PID())
	}
	c.futures = nil
}

// pidOf parses a Raft address into its node actor's PID, by the rule of
// raftactor.PIDOf (which telemetry may not import): the actor system's
// address, "/", the actor's ID.
func pidOf(addr string) (*actor.PID, bool) {
	i := strings.IndexByte(addr, '/')
	if i <= 0 || i == len(addr)-1 {
		return nil, false
	}
	return actor.NewPID(addr[:i], addr[i+1:]), true
}

// polled records a round of polls in the gauges and judges health.
func (a *metricsActor) polled(p Poll, events uint64) {
	a.last = p
	c, g, n := a.m.c, a.m.group, a.m.node
	if s := p.Self; s != nil && s.GetError().Err() == nil {
		// Events are precise; a poll says who leads only when no event
		// arrived while it ran (it may predate them).
		if events == a.events {
			a.leaderChanged(s.GetLeader().GetId(), s.Term, p.At)
		}
		c.term.WithLabelValues(g, n).Set(float64(s.Term))
		c.commitIndex.WithLabelValues(g, n).Set(float64(s.CommitIndex))
		c.appliedIndex.WithLabelValues(g, n).Set(float64(s.AppliedIndex))
		c.lastIndex.WithLabelValues(g, n).Set(float64(s.LastIndex))
		leads := s.State == "Leader"
		c.isLeader.WithLabelValues(g, n).Set(boolGauge(leads))
		a.replicationLag(s, p.Peers, leads)
		a.readConfirmations(s.GetReadConfirmations())
	}
	h := a.judge(p.At)
	c.healthScore.WithLabelValues(g, n).Set(float64(h.Score))
	c.failureTolerance.WithLabelValues(g, n).Set(float64(h.FailureTolerance))
	c.voters.WithLabelValues(g, n).Set(float64(h.Voters))
	c.reachableVoters.WithLabelValues(g, n).Set(float64(h.ReachableVoters))
	for v, name := range actors.HealthStatus_name {
		c.healthStatus.WithLabelValues(g, n, strings.ToLower(strings.TrimPrefix(name, "HEALTH_"))).
			Set(boolGauge(actors.HealthStatus(v) == h.Status))
	}
	if h.Status != a.lastStatus {
		// Only changes are logged: a steady state prints nothing.
		level := zap.InfoLevel
		if h.Status == actors.HealthStatus_UNHEALTHY || h.Status == actors.HealthStatus_DEGRADED {
			level = zap.WarnLevel
		}
		a.m.log.Log(level, "health changed", zap.Stringer("from", a.lastStatus), zap.Stringer("to", h.Status),
			zap.Uint32("score", h.Score), zap.Strings("reasons", h.Reasons), zap.Int32("failure_tolerance", h.FailureTolerance))
		a.lastStatus = h.Status
	}
}

// readConfirmations adds what the node's cumulative read confirmation
// counts grew by since the last poll (see readGrowth).
func (a *metricsActor) readConfirmations(rc *actors.ReadConfirmations) {
	if rc == nil {
		return
	}
	d := readGrowth(a.reads, rc)
	a.reads = rc
	c, g, n := a.m.c, a.m.group, a.m.node
	c.readWaits.WithLabelValues(g, n).Add(float64(d.GetWaits()))
	c.readRounds.WithLabelValues(g, n).Add(float64(d.GetRounds()))
	c.readRoundSeconds.WithLabelValues(g, n).Add(time.Duration(d.GetRoundNanos()).Seconds())
	c.readProbes.WithLabelValues(g, n).Add(float64(d.GetProbes()))
	c.readHedges.WithLabelValues(g, n).Add(float64(d.GetHedges()))
}

// readGrowth is how much the counts grew from prev to cur. Any count lower
// than before means the node actor restarted and counts from zero again:
// all of cur is new then.
func readGrowth(prev, cur *actors.ReadConfirmations) *actors.ReadConfirmations {
	if prev == nil || cur.GetWaits() < prev.GetWaits() || cur.GetRounds() < prev.GetRounds() ||
		cur.GetRoundNanos() < prev.GetRoundNanos() || cur.GetProbes() < prev.GetProbes() || cur.GetHedges() < prev.GetHedges() {
		return cur
	}
	return &actors.ReadConfirmations{
		Waits: cur.GetWaits() - prev.GetWaits(), Rounds: cur.GetRounds() - prev.GetRounds(),
		RoundNanos: cur.GetRoundNanos() - prev.GetRoundNanos(), Probes: cur.GetProbes() - prev.GetProbes(),
		Hedges: cur.GetHedges() - prev.GetHedges(),
	}
}

// replicationLag sets, on the leader, each follower's lag: the leader's
// last index minus the follower's applied index. hashicorp/raft keeps its
// per-follower match index private, so this is the closest public
// approximation; it counts entries not yet applied on the follower, which
// includes those replicated but not yet committed or applied there. A
// follower that stops answering keeps its last known applied index, so its
// lag grows with the log.
func (a *metricsActor) replicationLag(s *actors.StatusResponse, peers map[string]*actors.StatusResponse, leads bool) {
	vec, g, n := a.m.c.replicationLag, a.m.group, a.m.node
	if !leads {
		if len(a.applied) > 0 {
			vec.DeletePartialMatch(prometheus.Labels{labelGroup: g, labelNode: n})
			clear(a.applied)
		}
		return
	}
	members := map[string]bool{}
	for _, m := range s.Members {
		if m.Id == n {
			continue
		}
		members[m.Id] = true
		if ps := peers[m.Id]; ps != nil {
			a.applied[m.Id] = ps.AppliedIndex
		}
		lag := 0.0
		if applied, ok := a.applied[m.Id]; !ok {
			lag = float64(s.LastIndex)
		} else if s.LastIndex > applied {
			lag = float64(s.LastIndex - applied)
		}
		vec.WithLabelValues(g, n, m.Id).Set(lag)
	}
	for id := range a.applied {
		if !members[id] {
			delete(a.applied, id)
			vec.DeleteLabelValues(g, n, id)
		}
	}
}

// judge judges health on the last poll, at now.
func (a *metricsActor) judge(now time.Time) *actors.HealthResponse {
	p := a.last
	if a.leader == "" {
		p.LeaderlessSince = a.leaderlessSince
	}
	if ns := a.m.lastStorageError.Load(); ns != 0 {
		p.LastStorageError = time.Unix(0, ns)
	}
	if f := a.m.logFailure.Load(); f != nil {
		p.LogStoreFailure = *f
	}
	return Judge(a.m.cfg, p, now)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

package limiter_test

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/limiter"
)

// fakeNode stands in for the node actor: it holds the requests it gets
// until the test lets them go, panics on the command "panic", and answers
// the limiter's backlog polls with a backlog the test sets. Like the real
// node, it tells its observers an Outcome carrying the permit of every
// request it answers.
type fakeNode struct {
	mu        sync.Mutex
	observers []*actor.PID
	held      []heldRequest
	backlog   uint64
	arrived   chan heldRequest
}

type heldRequest struct {
	to        *actor.PID
	req       actors.Request
	permit    string
	principal string
	header    map[string]string
}

func newFakeNode() *fakeNode { return &fakeNode{arrived: make(chan heldRequest, 1024)} }

func (f *fakeNode) props() *actor.Props {
	return actor.PropsFromFunc(f.receive)
}

func (f *fakeNode) receive(ctx actor.Context) {
	req, ok := ctx.Message().(actors.Request)
	if !ok {
		return
	}
	h := heldRequest{to: ctx.Sender(), req: req, header: map[string]string{}}
	if hdr := ctx.MessageHeader(); hdr != nil {
		h.permit, h.principal, h.header = hdr.Get(actors.HeaderPermit), hdr.Get(actors.HeaderPrincipal), hdr.ToMap()
	}
	if st, ok := req.(*actors.StatusRequest); ok && h.principal == limiter.BacklogPollPrincipal {
		f.mu.Lock()
		b := f.backlog
		f.mu.Unlock()
		ctx.Respond(&actors.StatusResponse{State: "Leader", LastIndex: 100 + b, AppliedIndex: 100})
		f.report(ctx.ActorSystem(), st, h.permit, nil)
		return
	}
	if w, ok := req.(*actors.WriteRequest); ok && bytes.Equal(w.Command, []byte("panic")) {
		panic("fake node: panic mid-request")
	}
	f.mu.Lock()
	f.held = append(f.held, h)
	f.mu.Unlock()
	f.arrived <- h
}

func (f *fakeNode) setBacklog(b uint64) {
	f.mu.Lock()
	f.backlog = b
	f.mu.Unlock()
}

// answerAll answers every held request with success and, like the node
// answering a batch, tells their outcomes in one actors.Outcomes.
func (f *fakeNode) answerAll(system *actor.ActorSystem) {
	f.mu.Lock()
	held := f.held
	f.held = nil
	f.mu.Unlock()
	batch := &actors.Outcomes{}
	for _, h := range held {
		resp := actors.ErrorReply(h.req, nil)
		system.Root.Send(h.to, resp)
		batch.List = append(batch.List, actors.Outcome{Stage: "node", Op: actors.Op(h.req), Permit: h.permit, Code: actors.CodeOf(resp.GetError())})
	}
	for _, pid := range f.observers {
		system.Root.Send(pid, batch)
	}
}

func (f *fakeNode) report(system *actor.ActorSystem, req actors.Request, permit string, resp actors.Response) {
	o := &actors.Outcome{Stage: "node", Op: actors.Op(req), Permit: permit}
	if resp != nil {
		o.Code = actors.CodeOf(resp.GetError())
	}
	for _, pid := range f.observers {
		system.Root.Send(pid, o)
	}
}

// outcomes collects the Outcomes told to the metrics stand-in.
type outcomes struct {
	mu  sync.Mutex
	all []*actors.Outcome
}

func (o *outcomes) receive(ctx actor.Context) {
	if m, ok := ctx.Message().(*actors.Outcome); ok {
		o.mu.Lock()
		o.all = append(o.all, m)
		o.mu.Unlock()
	}
}

func (o *outcomes) limiterRefusals() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, x := range o.all {
		if x.Stage == "limiter" && x.Code == actors.Code_RESOURCE_EXHAUSTED && x.Detail != "" {
			n++
		}
	}
	return n
}

type stageFixture struct {
	system  *actor.ActorSystem
	node    *fakeNode
	nodePID *actor.PID
	lim     *actor.PID
	metrics *outcomes
}

func newStage(t *testing.T, cfg limiter.Config) *stageFixture {
	t.Helper()
	testutil.VerifyNoLeaks(t)
	f := &stageFixture{system: testutil.NewSystem(t), node: newFakeNode(), metrics: &outcomes{}}
	f.nodePID = f.system.Root.Spawn(f.node.props())
	metrics := f.system.Root.Spawn(actor.PropsFromFunc(f.metrics.receive))
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	f.lim = f.system.Root.Spawn(limiter.Props(cfg, limiter.Options{Next: f.nodePID, Observers: []*actor.PID{metrics}, RequestTimeout: time.Second}))
	f.node.observers = []*actor.PID{f.lim, metrics}
	t.Cleanup(func() { _ = f.system.Root.StopFuture(f.lim).Wait() })
	return f
}

// send sends req to the limiter as the authorizer would (principal in the
// header) and returns the future of its reply.
func (f *stageFixture) send(principal string, req actors.Request) *actor.Future {
	return f.sendWithin(principal, req, testutil.WaitFor)
}

// sendWithin is send with a future that gives up after timeout.
func (f *stageFixture) sendWithin(principal string, req actors.Request, timeout time.Duration) *actor.Future {
	fut := actor.NewFuture(f.system, timeout)
	env := &actor.MessageEnvelope{Message: req, Sender: fut.PID(), Header: map[string]string{"x-trace": "t1"}}
	if principal != "" {
		env.Header[actors.HeaderPrincipal] = principal
	}
	f.system.Root.Send(f.lim, env)
	return fut
}

func (f *stageFixture) ask(t *testing.T, req actors.Request) actors.Response {
	t.Helper()
	res, err := f.send("", req).Result()
	if err != nil {
		t.Fatalf("%T: %v", req, err)
	}
	return res.(actors.Response)
}

func (f *stageFixture) stats(t *testing.T) *actors.LimiterStats {
	t.Helper()
	return f.ask(t, &actors.LimiterStatsRequest{}).(*actors.LimiterStatsResponse).Stats
}

func (f *stageFixture) waitIdle(t *testing.T) *actors.LimiterStats {
	t.Helper()
	var st *actors.LimiterStats
	testutil.Eventually(t, "counters back to zero", func() bool {
		st = f.stats(t)
		return st.InFlight == 0 && st.BytesInFlight == 0
	})
	return st
}

// tryWrite sends a write and returns nil if the node got it (and answered
// it), or the stage's refusal.
func (f *stageFixture) tryWrite(t *testing.T) *actors.Error {
	t.Helper()
	fut := f.send("alice", write("w", time.Minute))
	replied := make(chan actors.Response, 1)
	go func() {
		res, _ := fut.Result()
		r, _ := res.(actors.Response)
		replied <- r
	}()
	select {
	case <-f.node.arrived:
		f.node.answerAll(f.system)
		<-replied
		return nil
	case r := <-replied:
		if r == nil || r.GetError() == nil {
			t.Fatalf("write answered %v without reaching the node", r)
		}
		return r.GetError()
	}
}

func write(cmd string, deadline time.Duration) *actors.WriteRequest {
	return &actors.WriteRequest{Meta: actors.NewMeta(deadline), Command: []byte(cmd)}
}

func refusedBy(t *testing.T, fut *actor.Future, limit string) {
	t.Helper()
	res, err := fut.Result()
	if err != nil {
		t.Fatal(err)
	}
	e := res.(actors.Response).GetError()
	if actors.CodeOf(e) != actors.Code_RESOURCE_EXHAUSTED || e.Limit != limit {
		t.Fatalf("reply %v, want RESOURCE_EXHAUSTED naming %s", e, limit)
	}
}

// An admitted request reaches the node with its headers and a permit and
// is answered by the node straight to its sender; a refused one is answered
// by the stage and reported to the observers; the node's outcome gives the
// permit back.
func TestStageAdmitsRefusesAndReleases(t *testing.T) {
	f := newStage(t, limiter.Config{Write: limiter.ClassLimits{PrincipalConcurrency: 2}})
	a1, a2 := f.send("alice", write("a1", time.Minute)), f.send("alice", write("a2", time.Minute))
	for range 2 {
		h := <-f.node.arrived
		if h.permit == "" || h.principal != "alice" || h.header["x-trace"] != "t1" {
			t.Fatalf("node got headers %v, want the permit, the principal and the caller's headers", h.header)
		}
	}
	refusedBy(t, f.send("alice", write("a3", time.Minute)), "write_concurrency_per_principal")
	// Another principal has its own budget.
	b1 := f.send("bob", write("b1", time.Minute))
	<-f.node.arrived
	testutil.Eventually(t, "the refusal reported to the observers", func() bool { return f.metrics.limiterRefusals() == 1 })
	if st := f.stats(t); st.InFlight != 3 || st.Write.InFlight != 3 || st.RefusedByLimit["write_concurrency_per_principal"] != 1 {
		t.Fatalf("stats %v: want 3 writes in flight, one refusal", st)
	}
	f.node.answerAll(f.system)
	for _, fut := range []*actor.Future{a1, a2, b1} {
		res, err := fut.Result()
		if err != nil || res.(*actors.WriteResponse).GetError() != nil {
			t.Fatalf("write reply %v, %v", res, err)
		}
	}
	st := f.waitIdle(t)
	if st.Admitted < 3 || st.Reclaimed != 0 {
		t.Fatalf("stats %v: want 3 admitted, none reclaimed", st)
	}
	// Room again.
	f.send("alice", write("a4", time.Minute))
	<-f.node.arrived
	f.node.answerAll(f.system)
	f.waitIdle(t)
}

// The node panics mid-request: the message is dropped without a reply or
// an outcome, so the permit comes back once the request's deadline (plus
// ReclaimGrace) has passed.
func TestPermitReclaimedWhenNodePanicsMidRequest(t *testing.T) {
	f := newStage(t, limiter.Config{Write: limiter.ClassLimits{Concurrency: 1}})
	// The caller gives up at the request's deadline, as a Client does.
	fut := f.sendWithin("alice", write("panic", 200*time.Millisecond), 200*time.Millisecond)
	refusedBy(t, f.send("alice", write("next", time.Minute)), "write_concurrency")
	if _, err := fut.Result(); err == nil {
		t.Fatal("a request the node panicked on was answered")
	}
	st := f.waitIdle(t)
	if st.Reclaimed != 1 {
		t.Fatalf("reclaimed %d permits, want 1", st.Reclaimed)
	}
	// The restarted node serves the next request, and the limit admits it.
	f.send("alice", write("after", time.Minute))
	<-f.node.arrived
	f.node.answerAll(f.system)
	f.waitIdle(t)
}

// A node that stops for good reports nothing more: every permit it held
// comes back at once.
func TestPermitsReleasedWhenNodeStops(t *testing.T) {
	f := newStage(t, limiter.Config{})
	for range 5 {
		f.send("alice", write("w", time.Hour))
		<-f.node.arrived
	}
	if st := f.stats(t); st.InFlight != 5 {
		t.Fatalf("in flight %d, want 5", st.InFlight)
	}
	if err := f.system.Root.StopFuture(f.nodePID).Wait(); err != nil {
		t.Fatal(err)
	}
	f.waitIdle(t)
}

// Writes are refused while the node's backlog is over the bound, and
// admitted again once it drains; reads are never refused for it.
func TestRaftBacklogBackpressure(t *testing.T) {
	f := newStage(t, limiter.Config{RaftBacklog: 10})
	f.node.setBacklog(11)
	var refused *actors.Error
	testutil.Eventually(t, "writes refused for the backlog", func() bool {
		refused = f.tryWrite(t)
		return refused != nil
	})
	if refused.Limit != limiter.LimitRaftBacklog || refused.GetRetryAfter().AsDuration() <= 0 {
		t.Fatalf("refusal %v, want raft_backlog with a retry-after", refused)
	}
	f.send("alice", &actors.ReadRequest{Meta: actors.NewMeta(time.Minute)})
	if h := <-f.node.arrived; actors.Op(h.req) != "read_linearizable" {
		t.Fatalf("node got %s, want the read", actors.Op(h.req))
	}
	f.node.answerAll(f.system)
	f.node.setBacklog(10)
	testutil.Eventually(t, "writes admitted once the backlog drained", func() bool { return f.tryWrite(t) == nil })
	f.waitIdle(t)
}

// Limits change at run time and take effect at once; invalid ones are
// refused with the field named and the old ones stay in force.
func TestUpdateLimitsAtRunTime(t *testing.T) {
	f := newStage(t, limiter.Config{})
	for range 3 {
		f.send("alice", write("w", time.Minute))
		<-f.node.arrived
	}
	r := f.ask(t, &actors.UpdateLimitsRequest{Limits: &actors.Limits{Write: &actors.ClassLimits{Concurrency: 3}}}).(*actors.UpdateLimitsResponse)
	if r.Error != nil || r.Limits.Write.Concurrency != 3 {
		t.Fatalf("update: %v", r)
	}
	refusedBy(t, f.send("alice", write("w", time.Minute)), "write_concurrency")
	bad := f.ask(t, &actors.UpdateLimitsRequest{Limits: &actors.Limits{Write: &actors.ClassLimits{Rps: -1}}}).(*actors.UpdateLimitsResponse)
	if e := bad.Error; actors.CodeOf(e) != actors.Code_INVALID_ARGUMENT || e.Field != "limits.write.rps" {
		t.Fatalf("invalid update answered %v, want INVALID_ARGUMENT naming limits.write.rps", e)
	}
	if bad.Limits.Write.Concurrency != 3 {
		t.Fatalf("limits after a refused update: %v", bad.Limits)
	}
	refusedBy(t, f.send("alice", write("w", time.Minute)), "write_concurrency")
	sr := f.ask(t, &actors.LimiterStatsRequest{}).(*actors.LimiterStatsResponse)
	if sr.Limits.Write.Concurrency != 3 || sr.Limits.Write.Rps != 0 {
		t.Fatalf("limits in force %v", sr.Limits)
	}
	f.node.answerAll(f.system)
	f.waitIdle(t)
}

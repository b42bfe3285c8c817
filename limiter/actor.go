package limiter

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
)

// ReclaimGrace is how long after a request's deadline its permit is
// reclaimed when the node has not reported the request's end. The node
// replies DEADLINE_EXCEEDED at the deadline itself, so within the grace the
// ordinary release wins and reclaiming stays a backstop for a node that
// crashed or restarted with the request in flight.
const ReclaimGrace = time.Second

// BacklogPollPrincipal is the principal on the limiter's own StatusRequests
// to the node, so observers of the node's outcomes can tell them from
// client traffic.
const BacklogPollPrincipal = "protoraft-limiter"

// forgetEvery is how many ticks pass between drops of idle principals:
// often enough to bound memory, rarely enough to stay off the hot path.
const forgetEvery = 20

// stalePoll is how many poll intervals a backlog reading stays good: a node
// that stops answering must not freeze writes on its last reading.
const stalePoll = 10

// Options wire a limiter actor into its group.
type Options struct {
	// Next is the node actor: admitted requests go there, and it is the one
	// polled for the Raft backlog and watched for termination.
	Next *actor.PID
	// Observers are told an *actors.Outcome for every request that ends
	// here: refusals, and the limiter's own requests.
	Observers []*actor.PID
	// RequestTimeout is the deadline of a request that carries none; it
	// must match the node's, or permits would be reclaimed while the node
	// still works. Default actors.DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Logger receives limit changes and reclaimed permits. Default none.
	Logger *zap.Logger
}

// kept is what survives a restart of the limiter actor: the limits changed
// at run time. Permits do not survive; the node's reports of requests
// admitted before the restart match no permit and are ignored.
type kept struct {
	mu  sync.Mutex
	cfg Config
}

func (k *kept) get() Config {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cfg
}

func (k *kept) set(c Config) {
	k.mu.Lock()
	k.cfg = c
	k.mu.Unlock()
}

// Props returns the props of a limiter actor enforcing cfg. cfg must be
// valid (Config.Validate); an invalid one is logged and replaced by no
// limits rather than refusing all traffic.
func Props(cfg Config, opts Options) *actor.Props {
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = actors.DefaultRequestTimeout
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	opts.Logger = opts.Logger.With(zap.String("component", "limiter"))
	if err := cfg.Validate(); err != nil {
		opts.Logger.Error("invalid limits; running without limits", zap.Error(err))
		cfg = Config{}
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	k := &kept{cfg: cfg}
	return actor.PropsFromProducer(func() actor.Actor { return &stage{opts: opts, keep: k} })
}

// tick is the stage's clock: told by its ticker goroutine every poll
// interval. Local only.
type tick struct{}

// stage is the limiter actor.
type stage struct {
	opts Options
	keep *kept
	lim  *Limiter
	root *actor.RootContext

	stopTicker chan struct{}
	tickerDone sync.WaitGroup
	ticks      int

	// writesSeen says a write arrived since the last poll; with no writes
	// and no backlog, the node is not asked.
	writesSeen bool
	// polledAt is when the outstanding poll was sent (zero: none), and
	// answeredAt when the last reading came back.
	polledAt, answeredAt time.Time
	backlog              uint64
}

// Receive implements actor.Actor.
func (s *stage) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		s.stop()
	case *actors.Outcome:
		s.release(m)
	case *actors.Outcomes:
		for i := range m.List {
			s.release(&m.List[i])
		}
	case tick:
		s.onTick(ctx)
	case *actors.StatusResponse:
		s.onStatus(m)
	case *actor.Terminated:
		if s.opts.Next != nil && m.Who.Equal(s.opts.Next) {
			if n := s.lim.ReleaseAll(); n > 0 {
				s.opts.Logger.Warn("node stopped with requests in flight; their permits are back", zap.Int("permits", n))
			}
		}
	case *actors.UpdateLimitsRequest:
		s.updateLimits(ctx, m)
	case *actors.LimiterStatsRequest:
		start := time.Now()
		cfg := s.lim.Config()
		s.answer(ctx, m, &actors.LimiterStatsResponse{Stats: s.lim.Stats(), Limits: cfg.ToProto()}, start)
	case actors.Request:
		s.admit(ctx, m)
	}
}

// release gives back the permit of a request the node finished.
func (s *stage) release(o *actors.Outcome) {
	if o.Stage == "node" && o.Permit != "" {
		if p, ok := ParsePermit(o.Permit); ok {
			s.lim.Release(p)
		}
	}
}

func (s *stage) start(ctx actor.Context) {
	s.lim = New(s.keep.get())
	s.root = ctx.ActorSystem().Root
	if s.opts.Next != nil {
		ctx.Watch(s.opts.Next)
	}
	// A goroutine that tells ticks rather than a timer per request: the
	// hot path stays free of timers, and one sweep covers every permit.
	s.stopTicker = make(chan struct{})
	// A private copy of the PID: a PID caches the process it resolved
	// first, and one that others use from another ActorSystem of the
	// process caches a remote route, where ticks would be lost.
	self := actor.NewPID(ctx.Self().Address, ctx.Self().Id)
	root, every, stop := ctx.ActorSystem().Root, s.lim.Config().PollInterval, s.stopTicker
	s.tickerDone.Add(1)
	go func() {
		defer s.tickerDone.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				root.Send(self, tick{})
			}
		}
	}()
}

func (s *stage) stop() {
	if s.stopTicker != nil {
		close(s.stopTicker)
		s.tickerDone.Wait()
		s.stopTicker = nil
	}
}

// admit applies the limits to a request bound for the node.
func (s *stage) admit(ctx actor.Context, req actors.Request) {
	class, ok := ClassOf(req)
	if !ok || s.opts.Next == nil {
		// Not a request the node serves: no budget to charge and no end the
		// node would report, so a permit could only leak.
		if s.opts.Next != nil {
			ctx.Forward(s.opts.Next)
		}
		return
	}
	hdr := ctx.MessageHeader()
	var principal string
	if hdr != nil {
		principal = hdr.Get(actors.HeaderPrincipal)
	}
	if class == ClassWrite {
		s.writesSeen = true
	}
	deadline := req.GetMeta().Deadline(s.opts.RequestTimeout).Add(ReclaimGrace)
	permit, err := s.lim.AcquireN(principal, class, proto.Size(req), Cost(req), deadline)
	if err != nil {
		start := time.Now()
		if resp := actors.ErrorReply(req, err); resp != nil {
			ctx.Respond(resp)
		}
		if principal == "" {
			principal = Anonymous
		}
		s.tell(&actors.Outcome{Stage: "limiter", Op: actors.Op(req), Code: err.Code, Latency: time.Since(start),
			RequestID: req.GetMeta().GetRequestId(), Principal: principal, Detail: err.Limit})
		return
	}
	// A new envelope, not Forward: the node must see the permit, and its
	// reply must still go straight to the original sender.
	var h map[string]string
	if hdr != nil {
		h = hdr.ToMap()
	} else {
		h = make(map[string]string, 1)
	}
	h[actors.HeaderPermit] = permit.String()
	ctx.Send(s.opts.Next, &actor.MessageEnvelope{Header: h, Message: req, Sender: ctx.Sender()})
}

func (s *stage) updateLimits(ctx actor.Context, m *actors.UpdateLimitsRequest) {
	start := time.Now()
	cur := s.lim.Config()
	next, err := Apply(cur, m)
	if err != nil {
		s.answer(ctx, m, &actors.UpdateLimitsResponse{Error: err, Limits: cur.ToProto()}, start)
		return
	}
	s.lim.SetConfig(next)
	s.keep.set(next)
	principal := ""
	if hdr := ctx.MessageHeader(); hdr != nil {
		principal = hdr.Get(actors.HeaderPrincipal)
	}
	s.opts.Logger.Info("limits changed", zap.String("principal", principal),
		zap.String("request_id", m.GetMeta().GetRequestId()), zap.Any("limits", next))
	s.answer(ctx, m, &actors.UpdateLimitsResponse{Limits: next.ToProto()}, start)
}

// answer replies to a request the stage serves itself and reports it.
func (s *stage) answer(ctx actor.Context, req actors.Request, resp actors.Response, start time.Time) {
	ctx.Respond(resp)
	principal := Anonymous
	if hdr := ctx.MessageHeader(); hdr != nil && hdr.Get(actors.HeaderPrincipal) != "" {
		principal = hdr.Get(actors.HeaderPrincipal)
	}
	s.tell(&actors.Outcome{Stage: "limiter", Op: actors.Op(req), Code: actors.CodeOf(resp.GetError()),
		Latency: time.Since(start), RequestID: req.GetMeta().GetRequestId(), Principal: principal})
}

func (s *stage) tell(o *actors.Outcome) {
	for _, pid := range s.opts.Observers {
		if pid != nil {
			s.root.Send(pid, o)
		}
	}
}

func (s *stage) onTick(ctx actor.Context) {
	now := time.Now()
	if n := s.lim.Sweep(now); n > 0 {
		s.opts.Logger.Warn("reclaimed permits of requests past their deadline with no end reported", zap.Int("permits", n))
	}
	s.ticks++
	if s.ticks%forgetEvery == 0 {
		s.lim.ForgetIdle(now)
	}
	s.poll(ctx, now)
}

// poll asks the node for its backlog when it matters: writes are limited by
// it and either writes arrived or the last reading was over zero. One poll
// is outstanding at a time; one unanswered for long is given up.
func (s *stage) poll(ctx actor.Context, now time.Time) {
	cfg := s.lim.Config()
	stale := cfg.PollInterval * stalePoll
	if !s.answeredAt.IsZero() && now.Sub(s.answeredAt) > stale && s.backlog > 0 {
		// The node stopped answering: do not refuse writes on a reading
		// nobody refreshes.
		s.backlog = 0
		s.lim.SetRaftBacklog(0, false)
	}
	if cfg.RaftBacklog == 0 || s.opts.Next == nil || (!s.writesSeen && s.backlog == 0) {
		return
	}
	if !s.polledAt.IsZero() && now.Sub(s.polledAt) < stale {
		return
	}
	s.writesSeen = false
	s.polledAt = now
	req := &actors.StatusRequest{Meta: &actors.RequestMeta{
		RequestId:        "limiter-backlog-poll",
		DeadlineUnixNano: now.Add(stale).UnixNano(),
	}}
	ctx.Send(s.opts.Next, &actor.MessageEnvelope{
		Header:  map[string]string{actors.HeaderPrincipal: BacklogPollPrincipal},
		Message: req,
		Sender:  ctx.Self(),
	})
}

func (s *stage) onStatus(m *actors.StatusResponse) {
	if s.polledAt.IsZero() {
		// Not the answer to a poll of ours (or one given up on): a
		// reading nobody asked for is not trusted.
		return
	}
	s.polledAt = time.Time{}
	if m.GetError().Err() != nil {
		return
	}
	s.answeredAt = time.Now()
	leader := m.GetState() == "Leader"
	var backlog uint64
	if last, applied := m.GetLastIndex(), m.GetAppliedIndex(); last > applied {
		backlog = last - applied
	}
	if !leader {
		backlog = 0
	}
	s.backlog = backlog
	s.lim.SetRaftBacklog(backlog, leader)
}

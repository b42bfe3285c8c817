package protocluster

import (
	"context"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	clustering "github.com/asynkron/protoactor-go/cluster"

	"github.com/protoraft/protoraft/actors"
)

// Activator answers, verified by the table, which activations the member
// runs. It never waits on the group in its mailbox: reads and writes run
// on goroutines that send their outcome back as messages.
type activator struct {
	c *clustering.Cluster
	p *Provider

	// grains are the running activations, by activationKey.
	grains map[string]*grain
	// byID maps a grain's PID ID to its key.
	byID map[string]string
	// pending are the activations being verified, by key.
	pending map[string]*pendingActivation
	// releasing are the tokens whose Release is in flight, by key.
	releasing map[string]uint64
	// stopWaiters are closed once no grain runs.
	stopWaiters []chan struct{}
}

type grain struct {
	kind, identity string
	token          uint64
	pid            *actor.PID
	// quiet: stopped by the member (lease lost, shutdown), not by itself,
	// so no Release follows: the table removes the member's activations.
	quiet bool
}

type pendingActivation struct {
	token   uint64
	waiters []*actor.PID
}

// verified is a verification's outcome, sent to the activator.
type verified struct {
	key   string
	token uint64
	act   *Activation
	err   error
}

// released says a Release finished, whatever its outcome.
type released struct {
	key   string
	token uint64
}

// stopAll stops every grain; done, when set, is closed once none runs.
type stopAll struct{ done chan struct{} }

func newActivator(c *clustering.Cluster, p *Provider) *activator {
	return &activator{
		c: c, p: p,
		grains: map[string]*grain{}, byID: map[string]string{},
		pending: map[string]*pendingActivation{}, releasing: map[string]uint64{},
	}
}

// Receive handles the activator's messages.
func (a *activator) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *ActivateRequest:
		a.onActivate(ctx, msg)
	case *verified:
		a.onVerified(ctx, msg)
	case *actor.Terminated:
		a.onTerminated(ctx, msg)
	case *released:
		if a.releasing[msg.key] == msg.token {
			delete(a.releasing, msg.key)
		}
	case *stopAll:
		for _, g := range a.grains {
			g.quiet = true
			ctx.Stop(g.pid)
		}
		if msg.done != nil {
			a.stopWaiters = append(a.stopWaiters, msg.done)
			a.notifyStopped()
		}
	}
}

func refuse(ctx actor.Context, to *actor.PID, why string) {
	if to != nil {
		ctx.Send(to, &ActivateResponse{Error: why})
	}
}

func (a *activator) onActivate(ctx actor.Context, msg *ActivateRequest) {
	if !a.p.leaseValid() {
		refuse(ctx, ctx.Sender(), "protocluster: this member holds no lease")
		return
	}
	key := activationKey(msg.GetKind(), msg.GetIdentity())
	if g, ok := a.grains[key]; ok {
		if g.token == msg.GetToken() && !g.quiet {
			ctx.Respond(&ActivateResponse{Address: g.pid.Address, Id: g.pid.Id})
			return
		}
		refuse(ctx, ctx.Sender(), "protocluster: another activation runs here")
		return
	}
	if a.releasing[key] == msg.GetToken() {
		refuse(ctx, ctx.Sender(), "protocluster: activation released")
		return
	}
	if _, ok := a.c.TryGetClusterKind(msg.GetKind()); !ok {
		refuse(ctx, ctx.Sender(), "protocluster: kind not hosted here")
		return
	}
	if pa, ok := a.pending[key]; ok {
		if pa.token == msg.GetToken() {
			pa.waiters = append(pa.waiters, ctx.Sender())
			return
		}
		refuse(ctx, ctx.Sender(), "protocluster: another activation is being verified")
		return
	}
	a.pending[key] = &pendingActivation{token: msg.GetToken(), waiters: []*actor.PID{ctx.Sender()}}
	// The claim is read back from the group, linearizably: a requester's
	// token may be older than the table (the identity was released and
	// claimed again, elsewhere), and only the table says it is current.
	self := ctx.Self()
	system := ctx.ActorSystem()
	kind, identity, token := msg.GetKind(), msg.GetIdentity(), msg.GetToken()
	go func() {
		rctx, cancel := context.WithTimeout(context.Background(), a.p.cfg.CallTimeout)
		defer cancel()
		qr, err := a.p.read(rctx, &Query{Q: &Query_Lookup{Lookup: &LookupQuery{Kind: kind, Identity: identity}}}, actors.Consistency_LINEARIZABLE)
		system.Root.Send(self, &verified{key: key, token: token, act: qr.GetActivation(), err: err})
	}()
}

func (a *activator) onVerified(ctx actor.Context, msg *verified) {
	pa, ok := a.pending[msg.key]
	if !ok || pa.token != msg.token {
		return
	}
	delete(a.pending, msg.key)
	why := ""
	switch {
	case msg.err != nil:
		why = "protocluster: verification failed: " + msg.err.Error()
	case msg.act == nil || msg.act.GetMemberId() != a.p.self || msg.act.GetToken() != msg.token:
		why = "protocluster: the table holds another activation"
	case !a.p.leaseValid():
		why = "protocluster: this member holds no lease"
	case a.grains[msg.key] != nil:
		why = "protocluster: another activation runs here"
	}
	if why == "" {
		if pid, err := a.spawn(ctx, msg.key, msg.act); err != nil {
			why = "protocluster: spawn failed: " + err.Error()
		} else {
			for _, w := range pa.waiters {
				if w != nil {
					ctx.Send(w, &ActivateResponse{Address: pid.Address, Id: pid.Id})
				}
			}
			return
		}
	}
	for _, w := range pa.waiters {
		refuse(ctx, w, why)
	}
}

func (a *activator) spawn(ctx actor.Context, key string, act *Activation) (*actor.PID, error) {
	kind := a.c.GetClusterKind(act.GetKind())
	if kind == nil {
		return nil, errNoKind
	}
	ci := clustering.NewClusterIdentity(act.GetIdentity(), act.GetKind())
	props := clustering.WithClusterIdentity(kind.Props, ci).Configure(actor.WithReceiverMiddleware(a.p.fence))
	pid, err := ctx.SpawnNamed(props, grainName(act.GetKind(), act.GetIdentity(), act.GetToken()))
	if err != nil {
		return nil, err
	}
	kind.Inc()
	a.grains[key] = &grain{kind: act.GetKind(), identity: act.GetIdentity(), token: act.GetToken(), pid: pid}
	a.byID[pid.Id] = key
	return pid, nil
}

func (a *activator) onTerminated(ctx actor.Context, msg *actor.Terminated) {
	key, ok := a.byID[msg.GetWho().GetId()]
	if !ok {
		return
	}
	delete(a.byID, msg.GetWho().GetId())
	g := a.grains[key]
	delete(a.grains, key)
	if kind, ok := a.c.TryGetClusterKind(g.kind); ok {
		kind.Dec()
	}
	a.notifyStopped()
	if g.quiet {
		return
	}
	// The grain stopped by itself (passivation, failure): free the
	// identity. Until the Release commits this member refuses the token,
	// so the grain is not started again under it.
	a.releasing[key] = g.token
	self, system := ctx.Self(), ctx.ActorSystem()
	go func() {
		rctx, cancel := context.WithTimeout(context.Background(), a.p.cfg.CallTimeout)
		defer cancel()
		if _, err := a.p.write(rctx, &Command{Op: &Command_Release{Release: &Release{Kind: g.kind, Identity: g.identity, Token: g.token}}}); err != nil {
			a.p.log.Debug("protocluster: release failed; the member's expiry will free the identity", slog.Any("error", err))
		}
		system.Root.Send(self, &released{key: key, token: g.token})
	}()
}

func (a *activator) notifyStopped() {
	if len(a.grains) > 0 {
		return
	}
	for _, w := range a.stopWaiters {
		close(w)
	}
	a.stopWaiters = nil
}

// fence is every grain's receiver middleware: once the member's lease is
// over, a grain handles no more messages (a request gets a dead letter
// answer, so protoactor looks the identity up again), even before the
// lease watchdog's stop reaches it.
func (p *Provider) fence(next actor.ReceiverFunc) actor.ReceiverFunc {
	return func(ctx actor.ReceiverContext, env *actor.MessageEnvelope) {
		switch env.Message.(type) {
		case actor.SystemMessage, actor.AutoReceiveMessage:
			next(ctx, env)
			return
		}
		if p.leaseValid() {
			next(ctx, env)
			return
		}
		if env.Sender != nil {
			p.c.ActorSystem.Root.Send(env.Sender, &actor.DeadLetterResponse{Target: ctx.Self()})
		}
	}
}

package protocluster

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	clustering "github.com/asynkron/protoactor-go/cluster"

	"github.com/protoraft/protoraft/actors"
)

// ActivatorName is the name of the actor, on every member, that runs the
// member's activations; grains are its children.
const ActivatorName = "protocluster-activator"

// IdentityLookup is a protoactor cluster.IdentityLookup whose identity →
// activation table is replicated in the protoraft group of this package's
// Provider, which the cluster must use too.
type IdentityLookup struct {
	mu        sync.Mutex
	c         *clustering.Cluster
	p         *Provider
	activator *actor.PID
	closed    bool
}

var _ clustering.IdentityLookup = (*IdentityLookup)(nil)

// NewIdentityLookup returns an IdentityLookup; give each member its own.
func NewIdentityLookup() *IdentityLookup { return &IdentityLookup{} }

// Setup ties the lookup to the cluster's Provider and, on a member, spawns
// the activator. protoactor calls it before the provider starts.
func (l *IdentityLookup) Setup(c *clustering.Cluster, _ []string, isClient bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.c = c
	p, ok := c.Config.ClusterProvider.(*Provider)
	if !ok {
		c.Logger().Error("protocluster: the IdentityLookup needs protocluster's Provider; every Get will fail")
		return
	}
	l.p = p
	p.lookup.Store(l)
	if isClient {
		return
	}
	props := actor.PropsFromProducer(func() actor.Actor { return newActivator(c, p) })
	pid, err := c.ActorSystem.Root.SpawnNamed(props, ActivatorName)
	if err != nil {
		c.Logger().Error("protocluster: cannot spawn the activator", slog.Any("error", err))
		return
	}
	l.activator = pid
}

// Get returns the PID of identity's single activation: the table's, if it
// has one on a live member, else one it claims through Raft. The owning
// member spawns the grain only after it read the claim back from the
// group. nil means it did not succeed within the call timeout; protoactor
// retries.
func (l *IdentityLookup) Get(ci *clustering.ClusterIdentity) *actor.PID {
	p := l.p
	if p == nil || !p.started.Load() || ci == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*p.cfg.CallTimeout)
	defer cancel()
	// A read first: an identity already active costs no Raft write. The
	// read may be stale; the owner checks the token, and a claim (a write,
	// never stale) follows whenever the read does not lead to a grain.
	consistency := actors.Consistency_LEASE
	if p.local != nil {
		consistency = actors.Consistency_STALE
	}
	var act *Activation
	if qr, err := p.read(ctx, &Query{Q: &Query_Lookup{Lookup: &LookupQuery{Kind: ci.Kind, Identity: ci.Identity}}}, consistency); err == nil {
		if a := qr.GetActivation(); a != nil && p.hasMember(a.MemberId) {
			act = a
		}
	}
	pause := 10 * time.Millisecond
	for {
		if act == nil {
			res, err := p.write(ctx, &Command{Op: &Command_Claim{Claim: &Claim{Kind: ci.Kind, Identity: ci.Identity}}})
			if err == nil && res.GetOk() {
				act = res.GetActivation()
			}
		}
		if act != nil {
			if pid := l.activate(ctx, act); pid != nil {
				return pid
			}
		}
		act = nil
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// activate asks the activation's member to run it.
func (l *IdentityLookup) activate(ctx context.Context, a *Activation) *actor.PID {
	to := actor.NewPID(a.Address, ActivatorName)
	timeout := l.p.cfg.CallTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if timeout <= 0 {
		return nil
	}
	res, err := l.c.ActorSystem.Root.RequestFuture(to, &ActivateRequest{Kind: a.Kind, Identity: a.Identity, Token: a.Token}, timeout).Result()
	if err != nil {
		return nil
	}
	r, ok := res.(*ActivateResponse)
	if !ok || r.GetError() != "" || r.GetId() == "" {
		return nil
	}
	return actor.NewPID(r.GetAddress(), r.GetId())
}

// RemovePid forgets pid for identity in the cluster's PID cache. The
// activation itself ends when its grain stops: its member releases it.
func (l *IdentityLookup) RemovePid(ci *clustering.ClusterIdentity, pid *actor.PID) {
	if l.c == nil || ci == nil {
		return
	}
	l.c.PidCache.RemoveByValue(ci.Identity, ci.Kind, pid)
}

// Shutdown stops the activator and with it every grain of this member. A
// graceful cluster shutdown has stopped them already, before the member
// deregistered. Calling it again does nothing.
func (l *IdentityLookup) Shutdown() {
	l.mu.Lock()
	pid, closed := l.activator, l.closed
	l.closed = true
	l.mu.Unlock()
	if closed || pid == nil {
		return
	}
	_ = l.c.ActorSystem.Root.StopFuture(pid).Wait()
}

// stopGrains stops every grain of this member and waits for them, at most
// within.
func (l *IdentityLookup) stopGrains(within time.Duration) {
	if l.activator == nil {
		return
	}
	done := make(chan struct{})
	l.c.ActorSystem.Root.Send(l.activator, &stopAll{done: done})
	select {
	case <-done:
	case <-time.After(within):
	}
}

// leaseLost stops every grain of this member without waiting.
func (l *IdentityLookup) leaseLost() {
	if l.activator != nil {
		l.c.ActorSystem.Root.Send(l.activator, &stopAll{})
	}
}

// FencingToken returns the fencing token of the activation ctx runs: the
// log index of the claim that placed it, larger for every later activation
// of the same identity. A grain passes it along with writes to outside
// systems, which refuse a token lower than one they saw. ok is false for
// an actor that is not a protocluster grain.
func FencingToken(ctx actor.Context) (uint64, bool) {
	return tokenOf(ctx.Self())
}

func tokenOf(pid *actor.PID) (uint64, bool) {
	if pid == nil || !strings.HasPrefix(pid.Id, ActivatorName+"/") {
		return 0, false
	}
	i := strings.LastIndexByte(pid.Id, '#')
	if i < 0 {
		return 0, false
	}
	t, err := strconv.ParseUint(pid.Id[i+1:], 10, 64)
	return t, err == nil
}

// grainName is an activation's name under the activator: its kind,
// identity and token, so every activation has a PID of its own and a
// message for an ended one is a dead letter, never a delivery to its
// successor.
func grainName(kind, identity string, token uint64) string {
	return kind + "/" + identity + "#" + strconv.FormatUint(token, 10)
}

package protocluster

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	clustering "github.com/asynkron/protoactor-go/cluster"
)

// SingletonIdentity is the identity a cluster singleton of a kind runs
// under: the singleton of kind K is the activation of (K,
// SingletonIdentity), placed, fenced and moved like any other, so at most
// one runs cluster-wide and each activation's FencingToken is larger than
// the one before.
const SingletonIdentity = "singleton"

// DefaultSingletonInterval is how often a Singleton looks its activation
// up when StartSingleton is given no interval.
const DefaultSingletonInterval = time.Second

// Singleton keeps the cluster singleton of one kind alive from one member
// (or client): every interval it looks the singleton identity up through
// this package's IdentityLookup, which reuses the live activation or, once
// the member that ran it left the table (its lease over, expired or
// deregistered) or the grain stopped and was released, claims a new one on
// a member that hosts the kind. Any number of members may run one for the
// same kind: the claim goes through Raft, so they all reach the same
// activation. The kind itself is an ordinary cluster kind; the singleton
// reads its token with FencingToken and passes it with every write to an
// outside system, which refuses a token lower than one it saw.
type Singleton struct {
	c        *clustering.Cluster
	l        *IdentityLookup
	kind     string
	interval time.Duration
	pid      atomic.Pointer[actor.PID]
	once     sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// ErrNoLookup means the cluster does not use this package's IdentityLookup.
var ErrNoLookup = errors.New("protocluster: the cluster does not use protocluster's IdentityLookup")

// StartSingleton starts keeping kind's singleton alive through c, looking
// it up every interval (DefaultSingletonInterval when 0): the longest a
// singleton stays down after its member failed is that member's expiry
// plus one interval. Call it once the cluster started; Stop ends it.
func StartSingleton(c *clustering.Cluster, kind string, interval time.Duration) (*Singleton, error) {
	l, ok := c.IdentityLookup.(*IdentityLookup)
	if !ok {
		return nil, ErrNoLookup
	}
	if interval <= 0 {
		interval = DefaultSingletonInterval
	}
	s := &Singleton{c: c, l: l, kind: kind, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s, nil
}

func (s *Singleton) loop() {
	defer close(s.done)
	ci := clustering.NewClusterIdentity(SingletonIdentity, s.kind)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		// Get blocks for at most two call timeouts; this goroutine is
		// the singleton's own, so nothing waits behind it.
		s.pid.Store(s.l.Get(ci))
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
	}
}

// PID is the singleton's activation as the last look-up found it, nil if
// that look-up failed (no member hosts the kind, the group is
// unreachable). Its token is FencingTokenOf(PID()).
func (s *Singleton) PID() *actor.PID { return s.pid.Load() }

// Request sends msg to the singleton and waits for its answer, at most
// timeout, through the cluster's own request path (which looks the
// identity up again when its cached activation ended).
func (s *Singleton) Request(msg any, timeout time.Duration) (any, error) {
	return s.c.Request(SingletonIdentity, s.kind, msg, clustering.WithTimeout(timeout))
}

// Stop stops the look-ups and waits for the last one to end. The
// singleton's activation keeps running: it belongs to the cluster, not to
// this Singleton.
func (s *Singleton) Stop() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// FencingTokenOf returns the fencing token of the activation pid names, as
// FencingToken does inside the grain; ok is false for a PID that is no
// protocluster grain's.
func FencingTokenOf(pid *actor.PID) (uint64, bool) { return tokenOf(pid) }

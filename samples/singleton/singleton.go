package main

import (
	"context"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
)

// Job is work that must run on exactly one node of a group: the leader. It
// gets the fencing token of its leadership (the Raft term) and must stop
// when ctx is cancelled, which happens as soon as this node stops leading.
// Every write the job makes must carry the token, so that the state machine
// refuses it once a newer leader's job has written.
type Job func(ctx context.Context, token uint64)

// Singleton runs a Job while its node leads the group. Leadership comes
// from the group's LeaderChanged events, with a periodic check behind them
// because Raft drops observations it cannot deliver at once.
type Singleton struct {
	system *actor.ActorSystem
	group  *cluster.Group
	job    Job

	mu      sync.Mutex
	term    uint64
	cancel  context.CancelFunc
	done    chan struct{}
	wake    chan struct{}
	quit    chan struct{}
	stopped chan struct{}
	sub     *eventstream.Subscription
}

// checkInterval bounds how long a missed leadership event goes unnoticed.
const checkInterval = 100 * time.Millisecond

// StartSingleton begins watching the group's leadership.
func StartSingleton(system *actor.ActorSystem, g *cluster.Group, job Job) *Singleton {
	s := &Singleton{system: system, group: g, job: job, wake: make(chan struct{}, 1), quit: make(chan struct{}), stopped: make(chan struct{})}
	self := g.Self().ID
	s.sub = system.EventStream.Subscribe(func(ev any) {
		if lc, ok := ev.(*actors.LeaderChanged); ok && lc.Observer == self {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	})
	go s.loop()
	return s
}

func (s *Singleton) loop() {
	defer close(s.stopped)
	ticker := time.NewTicker(checkInterval)
	defer ticker.Stop()
	for {
		s.reconcile()
		select {
		case <-s.wake:
		case <-ticker.C:
		case <-s.quit:
			return
		}
	}
}

// reconcile starts the job when this node leads in a new term and stops it
// when it no longer leads.
func (s *Singleton) reconcile() {
	res, err := s.system.Root.RequestFuture(s.group.Node(), &actors.LeaderRequest{}, time.Second).Result()
	leading, term := false, uint64(0)
	if err == nil {
		if lr, ok := res.(*actors.LeaderResponse); ok && lr.Error.Err() == nil {
			leading, term = lr.IsLeader, lr.Term
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil && (!leading || term != s.term) {
		s.cancel()
		<-s.done
		s.cancel = nil
	}
	if leading && s.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		s.term, s.cancel, s.done = term, cancel, make(chan struct{})
		done := s.done
		go func() {
			defer close(done)
			s.job(ctx, term)
		}()
	}
}

// Stop stops watching and stops the job if it runs.
func (s *Singleton) Stop() {
	s.system.EventStream.Unsubscribe(s.sub)
	close(s.quit)
	<-s.stopped
	s.mu.Lock()
	if s.cancel != nil {
		s.cancel()
		<-s.done
		s.cancel = nil
	}
	s.mu.Unlock()
}

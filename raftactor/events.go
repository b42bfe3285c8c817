package raftactor

import (
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
)

// eventPublisher turns Raft's leader observations into LeaderChanged events
// on the ActorSystem's EventStream. EventStream runs subscribers on the
// publisher's goroutine, so publishing happens here, on a goroutine of its
// own: a slow subscriber delays only later events, never Raft or the node's
// mailbox. Raft drops observations rather than block when this goroutine
// lags (a non-blocking observer).
type eventPublisher struct {
	r        *raft.Raft
	observer *raft.Observer
	quit     chan struct{}
	wg       sync.WaitGroup
}

func startEventPublisher(system *actor.ActorSystem, r *raft.Raft, group, id string, log *zap.Logger) *eventPublisher {
	ch := make(chan raft.Observation, 64)
	p := &eventPublisher{
		r: r,
		observer: raft.NewObserver(ch, false, func(o *raft.Observation) bool {
			_, ok := o.Data.(raft.LeaderObservation)
			return ok
		}),
		quit: make(chan struct{}),
	}
	r.RegisterObserver(p.observer)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case <-p.quit:
				return
			case o := <-ch:
				lo := o.Data.(raft.LeaderObservation)
				ev := &actors.LeaderChanged{Group: group, Observer: id, Term: r.CurrentTerm()}
				if lo.LeaderID != "" {
					ev.Leader = &actors.Server{Id: string(lo.LeaderID), Address: string(lo.LeaderAddr)}
				}
				log.Info("leader changed", zap.String("leader", string(lo.LeaderID)), zap.Uint64("term", ev.Term))
				system.EventStream.Publish(ev)
			}
		}
	}()
	return p
}

func (p *eventPublisher) stop() {
	if p == nil {
		return
	}
	p.r.DeregisterObserver(p.observer)
	close(p.quit)
	p.wg.Wait()
}

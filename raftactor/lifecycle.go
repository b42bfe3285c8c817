package raftactor

import (
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
)

// A node's start and stop are lifecycle states, not work done in Receive:
// opening the data directory and NewRaft (which restores the latest
// snapshot) run on a goroutine of their own, and so does closing (a
// leadership handover, Raft's Shutdown, closing the stores). While a node
// starts, every request is answered UNAVAILABLE at once and every Raft RPC
// is refused (not ready); while it stops, the same. No request ever waits
// in the node's mailbox behind that I/O.
//
// Two things make this hold together with protoactor's supervision:
//   - An incarnation's close must end before the next one opens the same
//     files (a supervisor restart). The next start waits for it, on its
//     own goroutine: kept.previous carries the old incarnation across the
//     restart.
//   - A node that stops for good must not report itself stopped (Terminated
//     to its parent, the group's Done) before its files are closed, or a new
//     node spawned on the same directory would open it while the old one
//     still holds it. protoactor finalizes a stop only once every child
//     has stopped, so each incarnation spawns one child, the closer, whose
//     Stopping waits for the close to end. The closer receives no requests:
//     its wait holds back nothing but the stop itself. On a restart (a
//     panic) the closer does not wait, and the restarted node answers
//     UNAVAILABLE until the old close and the new open are done.

// incarnation is one start of a node: the instance it opened, or why it
// could not.
type incarnation struct {
	opened chan struct{} // closed once inst or err is set
	inst   *instance
	err    error
	// panicked is what the open panicked with, if it did: Receive panics
	// with it in turn, so the node's supervisor decides, as for any panic.
	panicked any
	closed   chan struct{} // closed once inst (if any) is closed
}

// started tells the node that its incarnation's open ended.
type started struct{ inc *incarnation }

// AwaitStart asks a node actor to answer once its start has finished, with
// a StartResult. A node that runs answers at once; one that is starting
// answers when its start ends; one that is stopping answers with an error.
// It is a local message: it never crosses remote.
type AwaitStart struct{}

// StartResult answers AwaitStart. Err is nil when the node runs, and says
// why otherwise (a damaged or unknown data directory, a node stopping).
type StartResult struct {
	Err error
}

// kept is what survives a supervisor restart of the node actor: nothing of
// Raft's state (that comes back from the data directory), only the settings
// changed at run time, the incarnation the next start must wait for, the
// AwaitStart requests a restart interrupted, and the read floor: the newest
// state a read answered from, which the new state machine must reach
// before it answers STALE reads (readFloor).
type kept struct {
	mu       sync.Mutex
	timeouts Timeouts
	previous *incarnation
	awaiting []*actor.PID
	floor    readFloor
}

// await records the sender of an AwaitStart until the start ends.
func (k *kept) await(pid *actor.PID) {
	k.mu.Lock()
	k.awaiting = append(k.awaiting, pid)
	k.mu.Unlock()
}

// takeAwaiting returns the senders waiting for the start, and forgets them.
func (k *kept) takeAwaiting() []*actor.PID {
	k.mu.Lock()
	defer k.mu.Unlock()
	a := k.awaiting
	k.awaiting = nil
	return a
}

func (k *kept) getTimeouts() Timeouts {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.timeouts
}

func (k *kept) setTimeouts(t Timeouts) {
	k.mu.Lock()
	k.timeouts = t
	k.mu.Unlock()
}

// handOver records inc as the incarnation the next start waits for, and
// returns the one recorded before.
func (k *kept) handOver(inc *incarnation) *incarnation {
	k.mu.Lock()
	defer k.mu.Unlock()
	prev := k.previous
	k.previous = inc
	return prev
}

// begin starts the node's incarnation: the open runs on its own goroutine,
// after the close of the one before it, and reports back with started.
func (n *Node) begin(ctx actor.Context) {
	inc := &incarnation{opened: make(chan struct{}), closed: make(chan struct{})}
	n.closer = &closerWait{}
	w := n.closer
	if _, err := ctx.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &closer{wait: w} }), "closer"); err != nil {
		n.log.Error("node could not spawn its closer; a stop will not wait for the files to close", zap.Error(err))
	}
	n.open(inc)
}

// open opens inc on a goroutine of its own, once the incarnation before it
// has closed, and reports back with started.
func (n *Node) open(inc *incarnation) {
	n.inc = inc
	prev := n.keep.handOver(inc)
	cfg, timeouts, system, addr, log, inbox := n.cfg, n.keep.getTimeouts(), n.system, n.addr, n.log, n.inbox
	go func() {
		if prev != nil {
			<-prev.closed
		}
		defer func() {
			if p := recover(); p != nil {
				inc.inst, inc.err, inc.panicked = nil, fmt.Errorf("start panicked: %v", p), p
			}
			close(inc.opened)
			system.Root.Send(inbox, started{inc: inc})
		}()
		inc.inst, inc.err = openInstance(cfg, timeouts, system, addr, log)
		if inc.inst != nil && inc.inst.stores.watch != nil {
			obs, _ := cfg.Metrics.(StorageObserver)
			inc.inst.stores.watch.watchWith(obs, func() { system.Root.Send(inbox, reopenLog{inc: inc}) })
		}
	}()
}

// reopen closes the running (or failed) incarnation and opens the data
// directory again, without a supervisor restart: the node's log could not
// take appends until reopened, or its start failed for lack of space. The
// requests waiting to be batched are answered UNAVAILABLE with why.
func (n *Node) reopen(why string) {
	inc := n.inc
	if inc == nil || n.stopping {
		return
	}
	n.fail(actors.Errorf(actors.Code_UNAVAILABLE, "node %s is reopening its data directory: %s", n.cfg.ID, why))
	n.run, n.startErr = nil, nil
	log := n.log
	go func() {
		<-inc.opened
		if inc.inst != nil {
			inc.inst.close(false, log)
		}
		close(inc.closed)
	}()
	n.open(&incarnation{opened: make(chan struct{}), closed: make(chan struct{})})
}

// retryStartLater tries a start that failed for lack of space again after
// a pause that grows with each failure, up to maxStartRetryPause.
func (n *Node) retryStartLater(inc *incarnation) {
	pause := min(minStartRetryPause<<min(n.startRetries, 8), maxStartRetryPause)
	n.startRetries++
	system, inbox := n.system, n.inbox
	n.retryTimer = time.AfterFunc(pause, func() { system.Root.Send(inbox, retryStart{inc: inc}) })
	n.log.Warn("node will try its start again: no space", zap.Duration("in", pause), zap.Int("attempt", n.startRetries))
}

// The pauses between starts tried again for lack of space.
const (
	minStartRetryPause = 200 * time.Millisecond
	maxStartRetryPause = 10 * time.Second
)

// end ends the node's incarnation: requests waiting to be batched are
// failed, the node stops answering, and the instance is closed on a
// goroutine once its open has ended. handover says whether a leader hands
// leadership over first (a planned stop) or not (a restart after a panic,
// which should come back fast). A planned stop makes the closer wait for
// the close; a restart does not (see above).
func (n *Node) end(handover bool) {
	inc := n.inc
	if inc == nil || n.stopping {
		return
	}
	n.stopping = true
	n.run = nil
	if n.retryTimer != nil {
		n.retryTimer.Stop()
	}
	if handover {
		// A stop for good; after a restart, the next incarnation answers.
		n.answerAwaiting()
		n.closer.set(inc.closed)
	}
	log := n.log
	go func() {
		<-inc.opened
		if inc.inst != nil {
			inc.inst.close(handover, log)
		}
		close(inc.closed)
	}()
}

// answerAwaiting answers the AwaitStart requests that wait.
func (n *Node) answerAwaiting() {
	res := n.startResult()
	for _, pid := range n.keep.takeAwaiting() {
		n.system.Root.Send(pid, res)
	}
}

// startResult is the answer to AwaitStart, once the start has ended.
func (n *Node) startResult() *StartResult {
	switch {
	case n.stopping:
		return &StartResult{Err: errNodeStopping}
	case n.startErr != nil:
		return &StartResult{Err: n.startErr}
	}
	return &StartResult{}
}

// closerWait is where the closer finds what to wait for; it is set, at
// most once, before the closer is stopped.
type closerWait struct {
	mu   sync.Mutex
	done <-chan struct{}
}

func (w *closerWait) set(done <-chan struct{}) {
	w.mu.Lock()
	w.done = done
	w.mu.Unlock()
}

func (w *closerWait) get() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

// closer is the child that holds back a planned stop of its node until the
// node's files are closed; see the top of this file.
type closer struct{ wait *closerWait }

// Receive implements actor.Actor.
func (c *closer) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Stopping); ok {
		if done := c.wait.get(); done != nil {
			<-done
		}
	}
}

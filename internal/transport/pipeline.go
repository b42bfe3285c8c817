package transport

import (
	"errors"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/internal/wire"
)

// DefaultMaxAppendsInFlight is the pipeline depth New gives a zero
// Config.MaxAppendsInFlight: the next AppendEntries goes out while
// the previous one waits for the follower's fsync, and entries arriving
// meanwhile wait at the leader and go in one RPC after that. A deeper
// pipeline adds nothing while a follower keeps up, since raft sends one RPC
// per leader disk write either way; once a follower falls behind, RPCs
// queue there, each costing it an fsync that one larger RPC would have
// shared, and commit latency grows with the depth. hashicorp measured the
// same for its own transport (raft PR 541, hence NetworkTransport's default
// of 2); the bench here showed 128 no faster than 2 and slower at 64
// clients. More can pay off on links whose round trip is long compared with
// an fsync.
const DefaultMaxAppendsInFlight = 2

// errPipelineStalled ends a pipeline whose consumer stopped taking replies.
// raft stops reading a pipeline's replies as soon as one fails, and may
// still send into it before it notices; without this, that send would wait
// for a free slot forever and hang raft's replication (and its Shutdown).
var errPipelineStalled = errors.New("append pipeline abandoned: raft stopped taking its replies")

// AppendEntriesPipeline implements raft.Transport. raft switches to it once
// a follower has caught up: AppendEntries RPCs then go out without waiting
// for the previous reply, so a follower's round trip and fsync no longer
// hold back the next batch. It returns raft's own
// ErrPipelineReplicationNotSupported when MaxAppendsInFlight is 1, since
// raft tells that error apart by identity.
func (t *Transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	depth := t.cfg.MaxAppendsInFlight
	if depth < 2 {
		return nil, raft.ErrPipelineReplicationNotSupported
	}
	p := &appendPipeline{
		t:      t,
		id:     id,
		target: target,
		slots:  make(chan struct{}, depth),
		sent:   make(chan *appendFuture, depth),
		done:   make(chan raft.AppendFuture),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	if t.cfg.Faults != nil {
		p.delayed = make(chan *appendFuture, depth)
	}
	if !t.goTracked(p.run) {
		return nil, ErrTransportClosed
	}
	return p, nil
}

// appendPipeline is one raft.AppendPipeline to one follower. raft's
// replication goroutine calls AppendEntries; one receiver goroutine waits
// for the replies in request order and hands the completed futures to
// Consumer in that order, which raft requires. A reply that overtakes an
// earlier one waits in its own reply process until its turn.
//
// A slot is held from AppendEntries until raft took the future from
// Consumer (or the pipeline failed it), so at most cap(slots) RPCs are
// sent and not yet consumed: that bound is the back-pressure raft expects
// from AppendEntries.
type appendPipeline struct {
	t      *Transport
	id     raft.ServerID
	target raft.ServerAddress

	slots   chan struct{}
	sent    chan *appendFuture     // every accepted future, in request order
	delayed chan *appendFuture     // futures fault injection holds back; nil without Faults
	done    chan raft.AppendFuture // unbuffered, so a slot is free only once raft took the future
	stop    chan struct{}          // closed by shut
	exited  chan struct{}          // closed when run returns

	// full, when set (by tests), is called when an AppendEntries finds
	// every slot taken and waits for one.
	full func()

	mu        sync.Mutex // guards below; held while posting, so posts keep request order
	closed    bool
	err       error     // why the pipeline ended; set before stop is closed
	delaying  int       // futures in delayed not yet posted
	lastDelay time.Time // when the last delayed future is to be posted
}

// appendFuture implements raft.AppendFuture for one pipelined RPC.
type appendFuture struct {
	start time.Time
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	done  chan struct{}
	err   error

	reply    *pendingReply // nil when fault injection dropped the RPC
	deadline time.Time     // when the RPC fails if no reply came
	// Set only while fault injection holds the RPC back.
	sendAt time.Time
	pid    *actor.PID
	msg    *wire.RaftRPC
}

// Error implements raft.Future: it blocks until the reply came or the RPC
// failed.
func (f *appendFuture) Error() error {
	<-f.done
	return f.err
}

// Start implements raft.AppendFuture.
func (f *appendFuture) Start() time.Time { return f.start }

// Request implements raft.AppendFuture.
func (f *appendFuture) Request() *raft.AppendEntriesRequest { return f.args }

// Response implements raft.AppendFuture. It is filled only by a successful
// reply, so a failed RPC leaves it zero, which raft reads as unsuccessful
// and aborts the pipeline for.
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }

func (f *appendFuture) complete(err error) {
	f.err = err
	close(f.done)
}

// AppendEntries implements raft.AppendPipeline. It waits only for a free
// slot; the RPC goes through the same checks as a synchronous one
// (prepare) and the same fault injection, and its reply is awaited by the
// receiver.
func (p *appendPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	select {
	case p.slots <- struct{}{}:
	default:
		if p.full != nil {
			p.full()
		}
		select {
		case p.slots <- struct{}{}:
		case <-p.stop:
			return nil, p.err
		case <-p.t.shutdown:
			return nil, ErrTransportClosed
		}
	}
	f, err := p.send(args, resp)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return f, nil
}

// send starts one RPC while holding a slot.
func (p *appendPipeline) send(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (*appendFuture, error) {
	t := p.t
	msg := appendEntriesRPC(args)
	pid, err := t.prepare(p.target, msg)
	if err != nil {
		return nil, err
	}
	f := &appendFuture{start: time.Now(), args: args, resp: resp, done: make(chan struct{})}
	drop, delay := t.cfg.Faults.Decide(t.cfg.LocalID, p.id)
	if drop {
		// As in call: a lost RPC fails soon rather than after RPCTimeout.
		f.deadline = f.start.Add(min(t.cfg.RPCTimeout, maxDropWait))
	} else if f.reply, err = t.newPendingReply(); err != nil {
		return nil, err
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		if f.reply != nil {
			t.release(f.reply)
		}
		return nil, p.err
	}
	switch {
	case drop:
	case delay > 0 || p.delaying > 0:
		// A held-back RPC must not be overtaken by a later one: the
		// follower would refuse the later one for a gap in its log and
		// raft would drop out of pipelining. So a delay is latency on an
		// ordered link: every RPC goes out no earlier than the one before.
		f.sendAt = f.start.Add(delay)
		if f.sendAt.Before(p.lastDelay) {
			f.sendAt = p.lastDelay
		}
		p.lastDelay = f.sendAt
		f.deadline = f.sendAt.Add(t.cfg.RPCTimeout)
		f.pid, f.msg = pid, msg
		p.delaying++
		p.delayed <- f // never blocks: each entry holds a slot
	default:
		f.deadline = f.start.Add(t.cfg.RPCTimeout)
		t.post(pid, msg, f.reply)
	}
	p.sent <- f // never blocks: each entry holds a slot
	return f, nil
}

// Consumer implements raft.AppendPipeline: completed futures, in request
// order.
func (p *appendPipeline) Consumer() <-chan raft.AppendFuture { return p.done }

// Close implements raft.AppendPipeline. Futures still in flight fail with
// raft.ErrPipelineShutdown; it returns once the pipeline's goroutines have
// ended. It is safe to call more than once.
func (p *appendPipeline) Close() error {
	p.shut(raft.ErrPipelineShutdown)
	<-p.exited
	return nil
}

// shut ends the pipeline with err; the first call wins.
func (p *appendPipeline) shut(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed, p.err = true, err
	close(p.stop)
}

func (p *appendPipeline) run() {
	defer close(p.exited)
	var wg sync.WaitGroup
	if p.delayed != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.sendDelayed()
		}()
	}
	p.receive()
	wg.Wait()
}

// sendDelayed posts the RPCs fault injection holds back, each at its time
// and in request order.
func (p *appendPipeline) sendDelayed() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case f := <-p.delayed:
			timer.Reset(time.Until(f.sendAt))
			select {
			case <-timer.C:
			case <-p.stop:
				return
			case <-p.t.shutdown:
				return
			}
			p.mu.Lock()
			if !p.closed {
				p.t.post(f.pid, f.msg, f.reply)
			}
			p.delaying--
			p.mu.Unlock()
		case <-p.stop:
			return
		case <-p.t.shutdown:
			return
		}
	}
}

// receive completes the futures in request order and hands them to raft,
// until the pipeline or the transport closes; then it fails the rest.
func (p *appendPipeline) receive() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer p.failRest()
	for {
		var f *appendFuture
		select {
		case f = <-p.sent:
		case <-p.stop:
			return
		case <-p.t.shutdown:
			p.shut(ErrTransportClosed)
			return
		}
		if !p.complete(f, timer) {
			return
		}
		select {
		case p.done <- f:
		default:
			timer.Reset(p.t.cfg.RPCTimeout)
			select {
			case p.done <- f:
			case <-timer.C:
				p.t.log.Warn("raft stopped taking pipelined append replies; closing the pipeline", zap.String("peer", string(p.target)))
				p.shut(errPipelineStalled)
				return
			case <-p.stop:
				return
			case <-p.t.shutdown:
				p.shut(ErrTransportClosed)
				return
			}
		}
		<-p.slots
	}
}

// complete waits for f's reply, or its deadline, and completes f. false
// means the pipeline or the transport closed first; f is then failed too.
func (p *appendPipeline) complete(f *appendFuture, timer *time.Timer) bool {
	timer.Reset(time.Until(f.deadline))
	if f.reply == nil {
		select {
		case <-timer.C:
			f.complete(p.t.dropped(p.id, p.target))
			return true
		case <-p.stop:
		case <-p.t.shutdown:
			p.shut(ErrTransportClosed)
		}
		f.complete(p.err)
		return false
	}
	reply, err := p.t.await(f.reply, timer.C, p.stop)
	p.t.release(f.reply)
	if errors.Is(err, errAborted) || errors.Is(err, ErrTransportClosed) {
		p.shut(ErrTransportClosed) // no-op unless the transport closed
		f.complete(p.err)
		return false
	}
	if reply, err = p.t.settle(p.target, reply, err); err == nil {
		err = appendEntriesReply(reply, f.resp)
	}
	f.complete(err)
	return true
}

// failRest fails every future not yet completed, once the pipeline is shut.
func (p *appendPipeline) failRest() {
	for {
		select {
		case f := <-p.sent:
			if f.reply != nil {
				p.t.release(f.reply)
			}
			f.complete(p.err)
		default:
			return
		}
	}
}

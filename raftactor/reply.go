package raftactor

import (
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// requestInfo is what the outcome of a request reports.
type requestInfo struct {
	op        string
	start     time.Time
	requestID string
	principal string
	permit    string
}

// describe notes the request Receive is about to handle.
func (n *Node) describe(ctx actor.Context, req actors.Request) requestInfo {
	info := requestInfo{op: actors.Op(req), start: time.Now(), requestID: req.GetMeta().GetRequestId()}
	if h := ctx.MessageHeader(); h != nil {
		info.principal, info.permit = h.Get(actors.HeaderPrincipal), h.Get(actors.HeaderPermit)
	}
	return info
}

// respond answers the request Receive is handling now.
func (n *Node) respond(ctx actor.Context, resp actors.Response) {
	ctx.Respond(resp)
	n.observe(n.current, resp)
}

// observe tells the group's observers how a request ended.
func (n *Node) observe(info requestInfo, resp actors.Response) {
	if len(n.cfg.OutcomeObservers) == 0 {
		return
	}
	o := outcomeOf(info, resp)
	for _, pid := range n.cfg.OutcomeObservers {
		n.system.Root.Send(pid, &o)
	}
}

func outcomeOf(info requestInfo, resp actors.Response) actors.Outcome {
	return actors.Outcome{
		Stage: "node", Op: info.op, Code: actors.CodeOf(resp.GetError()), Latency: time.Since(info.start),
		RequestID: info.requestID, Principal: info.principal, Permit: info.permit,
	}
}

// outcomes gathers the outcomes of requests answered together, so the
// observers get one message per batch (actors.Outcomes): a mailbox hop per
// request would cost as much as the rest of a read.
type outcomes struct {
	n    *Node
	list []actors.Outcome
}

// outcomes starts a batch for about size requests.
func (n *Node) outcomes(size int) *outcomes {
	o := &outcomes{n: n}
	if len(n.cfg.OutcomeObservers) > 0 {
		o.list = make([]actors.Outcome, 0, size)
	}
	return o
}

func (o *outcomes) add(info requestInfo, resp actors.Response) {
	if len(o.n.cfg.OutcomeObservers) > 0 {
		o.list = append(o.list, outcomeOf(info, resp))
	}
}

// tell sends the batch to every observer; the observers share it.
func (o *outcomes) tell() {
	switch len(o.list) {
	case 0:
		return
	case 1:
		for _, pid := range o.n.cfg.OutcomeObservers {
			o.n.system.Root.Send(pid, &o.list[0])
		}
	default:
		batch := &actors.Outcomes{List: o.list}
		for _, pid := range o.n.cfg.OutcomeObservers {
			o.n.system.Root.Send(pid, batch)
		}
	}
	o.list = nil
}

// reply sends exactly one response to a request's original sender, whichever
// comes first: the work's result or the deadline.
type reply struct {
	n     *Node
	info  requestInfo
	to    *actor.PID
	timer *time.Timer
	done  atomic.Bool
}

// later prepares the reply to the request Receive is handling, to be sent
// once its work is done; by itself it answers DEADLINE_EXCEEDED when the
// deadline passes first. nil means the deadline has passed already and the
// caller has been answered.
func (n *Node) later(ctx actor.Context, req actors.Request, deadline time.Time) *reply {
	r := n.replyTo(ctx)
	wait := time.Until(deadline)
	if wait <= 0 {
		r.send(actors.ErrorReply(req, actors.DeadlineExceeded(actors.Op(req))))
		return nil
	}
	r.timer = time.AfterFunc(wait, func() {
		r.send(actors.ErrorReply(req, actors.DeadlineExceeded(actors.Op(req))))
	})
	return r
}

// replyTo prepares the reply to the request Receive is handling, with no
// deadline of its own: for work that answers by the request's deadline
// itself (reads, served in batches that wait once for all of them).
func (n *Node) replyTo(ctx actor.Context) *reply {
	return &reply{n: n, info: n.current, to: ctx.Sender()}
}

// finish sends the work's response, unless the deadline answered first.
func (r *reply) finish(msg actors.Response) { r.finishIn(nil, msg) }

// finishIn is finish with the outcome added to batch (nil: told at once).
func (r *reply) finishIn(batch *outcomes, msg actors.Response) {
	if r.timer != nil {
		r.timer.Stop()
	}
	r.sendIn(batch, msg)
}

func (r *reply) send(msg actors.Response) { r.sendIn(nil, msg) }

func (r *reply) sendIn(batch *outcomes, msg actors.Response) {
	if r.done.Swap(true) {
		return
	}
	if r.to != nil {
		r.n.system.Root.Send(r.to, msg)
	}
	if batch != nil {
		batch.add(r.info, msg)
		return
	}
	r.n.observe(r.info, msg)
}

// async runs work on its own goroutine and replies with its result, or with
// DEADLINE_EXCEEDED if the request's deadline passes first. Receive calls it
// for everything that waits on Raft, so the mailbox never blocks.
func (n *Node) async(ctx actor.Context, req actors.Request, work func(deadline time.Time) actors.Response) {
	deadline := req.GetMeta().Deadline(n.cfg.RequestTimeout)
	r := n.later(ctx, req, deadline)
	if r == nil {
		return
	}
	go func() { r.finish(work(deadline)) }()
}

// raftError turns an error from a Raft future into the protocol's error.
func raftError(r *raft.Raft, err error) *actors.Error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrNotVoter):
		return actors.NotLeader(leaderOf(r))
	case errors.Is(err, raft.ErrLeadershipLost):
		return actors.Errorf(actors.Code_UNAVAILABLE, "leadership lost before the entry committed; it may still commit")
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return actors.Errorf(actors.Code_UNAVAILABLE, "leadership transfer in progress")
	case errors.Is(err, raft.ErrRaftShutdown):
		return actors.Errorf(actors.Code_UNAVAILABLE, "node is shutting down")
	case errors.Is(err, raft.ErrAbortedByRestore):
		return actors.Errorf(actors.Code_UNAVAILABLE, "aborted by a snapshot restore")
	case strings.HasPrefix(err.Error(), "configuration changed since"):
		// hashicorp/raft has no typed error for a membership change that
		// lost a race with another one; nothing was changed, so retrying is
		// safe.
		return actors.Errorf(actors.Code_UNAVAILABLE, "the configuration changed concurrently; retry")
	case isLogStoreFailure(err):
		text, _ := logStoreFailure(err)
		return actors.Errorf(actors.Code_UNAVAILABLE, "%s on this node: the write was not acknowledged and its outcome is unknown; retry", text)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return actors.Errorf(actors.Code_DEADLINE_EXCEEDED, "deadline passed before Raft accepted the request")
	default:
		return actors.Errorf(actors.Code_INTERNAL, "%v", err)
	}
}

// leaderOf returns the leader as Raft knows it, or nil.
func leaderOf(r *raft.Raft) *actors.Server {
	addr, id := r.LeaderWithID()
	if id == "" {
		return nil
	}
	return &actors.Server{Id: string(id), Address: string(addr)}
}

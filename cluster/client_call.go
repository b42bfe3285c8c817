package cluster

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/inbox"
)

// clientRoute says where a call may be answered and what a success tells the
// Client about who leads.
type clientRoute int

const (
	// routeLeaderOnly: the node refuses unless it leads (writes, linearizable
	// and lease reads, membership, transfer), so a success names the leader.
	routeLeaderOnly clientRoute = iota
	// routeAny: any member answers (stale reads, members); the leader is
	// still asked first when known, as its view is the freshest.
	routeAny
	// routeConfirm: any member answers, but only the leader's answer is
	// wanted (status, leader); the call's confirm function tells them apart.
	routeConfirm
	// routeLeaderLocal: any member would act on its own state (snapshot,
	// timeouts), so each attempt first asks the target whether it leads.
	routeLeaderLocal
	// routeLeaderPreferred: any member answers (linearizable reads: a
	// follower asks the leader for a read index), the leader at the least
	// cost; a success names the leader only through the answer's leader
	// field (leaderNamer), which the Client then prefers if it is one of
	// its members.
	routeLeaderPreferred
)

// leaderNamer is an answer that says who leads.
type leaderNamer interface {
	GetLeader() *actors.Server
}

// callSpec describes one kind of call to the retry loop.
type callSpec struct {
	op    string
	route clientRoute
}

// clientCall runs one request to completion: it sends attempts until one
// succeeds, one fails with a code that is not retryable, or ctx ends.
// build makes a fresh request per attempt, because an earlier attempt's
// message may still be read by a node (local PIDs share the message) and
// must not change under it. confirm, when set, rejects a successful answer
// that did not come from the leader, naming the leader to ask instead.
func clientCall[R actors.Response](ctx context.Context, c *Client, spec callSpec,
	build func(*actors.RequestMeta) actors.Request, confirm func(R) (bool, *actors.Server)) (R, error) {
	var zero R
	// The call ends at ctx's deadline, or after the call timeout when ctx
	// has none. A deadline checked here rather than a derived context: a
	// context with a timeout costs a timer per call, as much as the rest of
	// a read's client side.
	end, ok := ctx.Deadline()
	if !ok {
		end = time.Now().Add(c.opts.callTimeout)
	}
	// One ID for all attempts, so the group's logs and audit records show
	// them as one request.
	requestID := c.opts.clientID + "-" + strconv.FormatUint(c.calls.Add(1), 10)
	var (
		target   = c.firstTarget()
		last     *actors.Error
		attempts int
		hops     int
		rounds   int
	)
	for {
		if err := ctx.Err(); err != nil {
			return zero, clientGaveUp(spec.op, err, attempts, last)
		}
		if !time.Now().Before(end) {
			return zero, clientGaveUp(spec.op, context.DeadlineExceeded, attempts, last)
		}
		attempts++
		resp, e := clientAttempt(ctx, c, spec, target, requestID, end, build, confirm)
		if e == nil {
			return resp, nil
		}
		if !actors.Retryable(e.Code) {
			return resp, e
		}
		last = e
		if ctx.Err() != nil || !time.Now().Before(end) {
			continue
		}
		if e.Code == actors.Code_NOT_LEADER && e.Leader != nil && hops < maxHintHops {
			if door, err := FrontDoorOf(e.Leader.Address); err == nil && !door.Equal(target) {
				// The hint is the group's own word on who leads: go there at
				// once, and let concurrent calls use it too.
				hops++
				c.setLeader(door)
				target = door
				continue
			}
		}
		hops = 0
		var atLeast time.Duration
		if e.Code == actors.Code_RESOURCE_EXHAUSTED {
			// The target is fine, only busy: ask it again once it said it
			// would accept, instead of moving to a member that would just
			// point back at it.
			atLeast = e.GetRetryAfter().AsDuration()
		} else {
			c.forgetLeader(target)
			target = c.nextTarget(target)
		}
		c.pause(ctx, end, rounds, atLeast)
		rounds++
	}
}

// clientAttempt sends one request to target and classifies the outcome: the
// response and nil on success, otherwise the error that decides whether and
// where to retry.
func clientAttempt[R actors.Response](ctx context.Context, c *Client, spec callSpec, target *actor.PID, requestID string,
	end time.Time, build func(*actors.RequestMeta) actors.Request, confirm func(R) (bool, *actors.Server)) (R, *actors.Error) {
	var zero R
	if target == nil {
		return zero, actors.Errorf(actors.Code_UNAVAILABLE, "no known members of group %s", c.group)
	}
	// The node stops working on the request at this deadline, so a retry
	// never races an attempt the node still considers live for longer than
	// one attempt timeout, and never outlives the caller.
	deadline := time.Now().Add(c.opts.attemptTimeout)
	if end.Before(deadline) {
		deadline = end
	}
	if spec.route == routeLeaderLocal {
		res, e := c.exchange(ctx, target, &actors.LeaderRequest{Meta: c.meta(requestID, deadline)}, deadline)
		if e != nil {
			return zero, e
		}
		lr, ok := res.(*actors.LeaderResponse)
		if !ok {
			return zero, actors.Errorf(actors.Code_INTERNAL, "%s answered a leader request with %T", target, res)
		}
		if e := lr.GetError(); e.Err() != nil {
			return zero, e
		}
		if !lr.GetIsLeader() {
			return zero, actors.NotLeader(lr.GetLeader())
		}
	}
	res, e := c.exchange(ctx, target, build(c.meta(requestID, deadline)), deadline)
	if e != nil {
		return zero, e
	}
	resp, ok := res.(R)
	if !ok {
		return zero, actors.Errorf(actors.Code_INTERNAL, "%s answered %s with %T", target, spec.op, res)
	}
	if e := resp.GetError(); e.Err() != nil {
		return resp, e
	}
	if confirm != nil {
		if isLeader, hint := confirm(resp); !isLeader {
			return resp, actors.NotLeader(hint)
		}
	}
	switch spec.route {
	case routeAny:
	case routeLeaderPreferred:
		if ln, ok := any(resp).(leaderNamer); ok && ln.GetLeader() != nil {
			c.preferMember(ln.GetLeader())
		}
	default:
		c.setLeader(target)
	}
	return resp, nil
}

// meta is the metadata of one attempt.
func (c *Client) meta(requestID string, deadline time.Time) *actors.RequestMeta {
	return &actors.RequestMeta{
		RequestId:        requestID,
		DeadlineUnixNano: deadline.UnixNano(),
		TimeoutNanos:     int64(max(time.Until(deadline), time.Millisecond)),
		Credentials:      c.credentials,
		TokenOnly:        c.relayed,
	}
}

// exchange sends req to target and waits for the reply, the deadline (plus
// a margin for the node's own DEADLINE_EXCEEDED reply to arrive), or the end
// of ctx, whichever comes first. A missing reply becomes a retryable error.
//
// It does what RequestFuture(...).Result() would, with a reply inbox of its
// own instead of a future: Result cannot be abandoned, so honouring a
// cancelled ctx would take a goroutine per attempt that outlives the call
// until the future times out.
func (c *Client) exchange(ctx context.Context, target *actor.PID, req actors.Request, deadline time.Time) (any, *actors.Error) {
	box, self, err := inbox.Open(c.system, "protoraft-client-reply")
	if err != nil {
		return nil, actors.Errorf(actors.Code_INTERNAL, "%v", err)
	}
	registry := c.system.ProcessRegistry
	// A reply that arrives after this goes to dead letters, as a late reply
	// to a timed-out future would.
	defer registry.Remove(self)
	c.system.Root.RequestWithCustomSender(target, req, self)
	timer := time.NewTimer(time.Until(deadline) + replyMargin)
	defer timer.Stop()
	select {
	case res := <-box.Reply():
		if _, dead := res.(*actor.DeadLetterResponse); dead {
			return nil, actors.Errorf(actors.Code_UNAVAILABLE, "%s is not running", target)
		}
		return res, nil
	case <-timer.C:
		return nil, actors.Errorf(actors.Code_DEADLINE_EXCEEDED, "no reply from %s in time", target)
	case <-ctx.Done():
		return nil, actors.Errorf(actors.Code_DEADLINE_EXCEEDED, "no reply from %s before the call ended", target)
	}
}

// clientGaveUp is the error of a call whose context ended. It is always
// DEADLINE_EXCEEDED, cancellation included: either way the caller stopped
// waiting and, for a write, the outcome is unknown. The last failure is
// kept in the message for whoever reads the log.
func clientGaveUp(op string, ctxErr error, attempts int, last *actors.Error) *actors.Error {
	why := "deadline exceeded"
	if errors.Is(ctxErr, context.Canceled) {
		why = "canceled"
	}
	msg := fmt.Sprintf("%s: %s after %d attempts", op, why, attempts)
	if last != nil {
		msg += "; last error: " + last.Error()
	}
	return &actors.Error{Code: actors.Code_DEADLINE_EXCEEDED, Message: msg}
}

// pause waits before the next round of retries: exponential from the
// minimum backoff, capped at the maximum, jittered so that many Clients
// that failed together do not retry together; never shorter than atLeast
// (a RESOURCE_EXHAUSTED retry_after), never past the end of the call (end, or ctx).
func (c *Client) pause(ctx context.Context, end time.Time, round int, atLeast time.Duration) {
	d := c.opts.backoffMin
	for i := 0; i < round && d < c.opts.backoffMax; i++ {
		d *= 2
	}
	d = min(d, c.opts.backoffMax)
	d = d/2 + mrand.N(d/2+1)
	d = min(max(d, atLeast), time.Until(end))
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// firstTarget is where a call starts: the known leader, else the next
// member in turn.
func (c *Client) firstTarget() *actor.PID {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != nil {
		return c.leader
	}
	return c.nextMemberLocked(nil)
}

// nextTarget is where a call goes after failed failed: the leader if
// another call learned it meanwhile, else the next member in turn.
func (c *Client) nextTarget(failed *actor.PID) *actor.PID {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != nil && !c.leader.Equal(failed) {
		return c.leader
	}
	return c.nextMemberLocked(failed)
}

// nextMemberLocked moves the shared round-robin cursor, skipping avoid when
// there is anyone else to ask.
func (c *Client) nextMemberLocked(avoid *actor.PID) *actor.PID {
	n := len(c.members)
	if n == 0 {
		return nil
	}
	for range n {
		m := c.members[c.cursor%n]
		c.cursor = (c.cursor + 1) % n
		if avoid == nil || !m.Equal(avoid) {
			return m
		}
	}
	return c.members[c.cursor%n]
}

func (c *Client) setLeader(door *actor.PID) {
	c.mu.Lock()
	c.leader = door
	c.mu.Unlock()
}

// forgetLeader drops the known leader if it is failed; a leader learned by
// another call meanwhile stays.
func (c *Client) forgetLeader(failed *actor.PID) {
	c.mu.Lock()
	if c.leader != nil && c.leader.Equal(failed) {
		c.leader = nil
	}
	c.mu.Unlock()
}

// preferMember points the Client at s's front door if s is one of its
// members. A Client given some members only (a follower, to spread reads)
// keeps reading from them; a NOT_LEADER hint is what sends it elsewhere.
func (c *Client) preferMember(s *actors.Server) {
	door, err := FrontDoorOf(s.GetAddress())
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.Equal(door) {
			c.leader = m
			return
		}
	}
}

// learnFromServer points the Client at s's front door, or forgets the
// leader when s names none.
func (c *Client) learnFromServer(s *actors.Server) {
	var door *actor.PID
	if s.GetAddress() != "" {
		door, _ = FrontDoorOf(s.GetAddress())
	}
	c.setLeader(door)
}

package cluster

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
)

// AskMember sends one request to one member's front door and returns its
// answer: no routing, no NOT_LEADER hints followed, no retries. It is for
// what is per node rather than the group's (a member's own status, its
// timeouts, its limiter's limits and statistics, its snapshots): build
// gets the request's metadata, with c's credentials and a deadline (ctx's,
// or the attempt timeout from now when ctx has none), and returns the
// request. The error is the answer's own (an *actors.Error), or
// UNAVAILABLE or DEADLINE_EXCEEDED when no answer came.
func AskMember[R actors.Response](ctx context.Context, c *Client, member Peer, build func(*actors.RequestMeta) actors.Request) (R, error) {
	var zero R
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(c.opts.attemptTimeout)
	}
	door := member.FrontDoor(c.group)
	requestID := c.opts.clientID + "-" + strconv.FormatUint(c.calls.Add(1), 10)
	res, e := c.exchange(ctx, door, build(c.meta(requestID, deadline)), deadline)
	if e != nil {
		return zero, e
	}
	resp, ok := res.(R)
	if !ok {
		return zero, actors.Errorf(actors.Code_INTERNAL, "%s answered with %T", door, res)
	}
	if e := resp.GetError(); e.Err() != nil {
		return resp, e
	}
	return resp, nil
}

// Health returns member's health, as its metrics actor judges it
// (telemetry.Score): one request, no retries, like AskMember. The metrics
// actor answers without a policy check, as it does for the health handler
// a program mounts.
func (c *Client) Health(ctx context.Context, member Peer) (*actors.HealthResponse, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(c.opts.attemptTimeout)
	}
	to := member.MetricsActor(c.group)
	res, e := c.exchange(ctx, to, &actors.HealthRequest{Meta: c.meta("", deadline)}, deadline)
	if e != nil {
		return nil, e
	}
	resp, ok := res.(*actors.HealthResponse)
	if !ok {
		return nil, actors.Errorf(actors.Code_INTERNAL, "%s answered a health request with %T", to, res)
	}
	if e := resp.GetError(); e.Err() != nil {
		return resp, e
	}
	return resp, nil
}

// SnapshotReader reads a snapshot of the group's state, taken by the
// leader for it, chunk by chunk (see OpenSnapshot). It is an io.Reader of
// the snapshot's bytes as the node wrote them.
type SnapshotReader struct {
	c    *Client
	ctx  context.Context
	door *actor.PID
	info *actors.SnapshotReadResponse
	// next is the offset of the next chunk to fetch; pending is what was
	// fetched and not yet read.
	next    uint64
	pending []byte
}

// snapshotChunkAttempts bounds the attempts at one chunk: a chunk can only
// come from the node that holds the snapshot, so there is no other member
// to move on to.
const snapshotChunkAttempts = 5

// OpenSnapshot asks the leader to take a snapshot that holds every write
// acknowledged before the call, and returns a reader of it; its first
// chunk is read already. Reads on the reader fetch the other chunks from
// the same node, under ctx: keep ctx alive until the reader is read to
// the end. Reading a snapshot needs the permission snapshot_read, which
// amounts to reading every key.
//
// The node keeps a snapshot only until later ones replace it
// (raftactor.Config.SnapshotRetain): a read that takes longer than that
// fails with INVALID_ARGUMENT on field "id" (IsSnapshotGone), and must
// start again.
func (c *Client) OpenSnapshot(ctx context.Context) (*SnapshotReader, error) {
	first, err := clientCall[*actors.SnapshotReadResponse](ctx, c, callSpec{op: "snapshot_read", route: routeLeaderOnly}, func(meta *actors.RequestMeta) actors.Request {
		return &actors.SnapshotReadRequest{Meta: meta}
	}, nil)
	if err != nil {
		return nil, err
	}
	door, derr := FrontDoorOf(first.GetNode().GetAddress())
	if derr != nil {
		return nil, actors.Errorf(actors.Code_INTERNAL, "the snapshot's node names no front door: %v", derr)
	}
	info := &actors.SnapshotReadResponse{
		Id: first.GetId(), Index: first.GetIndex(), Term: first.GetTerm(), Size: first.GetSize(),
		Members: first.GetMembers(), ConfigurationIndex: first.GetConfigurationIndex(),
		Version: first.GetVersion(), Node: first.GetNode(),
	}
	return &SnapshotReader{c: c, ctx: ctx, door: door, info: info,
		next: first.GetOffset() + uint64(len(first.GetData())), pending: first.GetData()}, nil
}

// Info describes the snapshot: its ID, index, term, size, configuration,
// raft's snapshot version and the node it is read from. Its data is empty.
func (r *SnapshotReader) Info() *actors.SnapshotReadResponse { return r.info }

// Read implements io.Reader; its errors other than io.EOF are
// *actors.Error.
func (r *SnapshotReader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.next >= r.info.GetSize() {
			return 0, io.EOF
		}
		chunk, err := r.fetch()
		if err != nil {
			return 0, err
		}
		if len(chunk) == 0 {
			return 0, actors.Errorf(actors.Code_INTERNAL, "snapshot %s ended at %d of %d bytes", r.info.GetId(), r.next, r.info.GetSize())
		}
		r.next += uint64(len(chunk))
		r.pending = chunk
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// fetch reads the chunk at r.next, trying again while the node answers
// with a retryable error.
func (r *SnapshotReader) fetch() ([]byte, error) {
	var last error
	for attempt := range snapshotChunkAttempts {
		if attempt > 0 {
			r.c.pause(r.ctx, time.Now().Add(r.c.opts.backoffMax), attempt-1, 0)
		}
		if err := r.ctx.Err(); err != nil {
			return nil, clientGaveUp("snapshot_read", err, attempt, nil)
		}
		deadline := time.Now().Add(r.c.opts.attemptTimeout)
		if end, ok := r.ctx.Deadline(); ok && end.Before(deadline) {
			deadline = end
		}
		requestID := r.c.opts.clientID + "-" + strconv.FormatUint(r.c.calls.Add(1), 10)
		res, e := r.c.exchange(r.ctx, r.door, &actors.SnapshotReadRequest{
			Meta: r.c.meta(requestID, deadline), Id: r.info.GetId(), Offset: r.next,
		}, deadline)
		if e == nil {
			resp, ok := res.(*actors.SnapshotReadResponse)
			if !ok {
				return nil, actors.Errorf(actors.Code_INTERNAL, "%s answered a snapshot read with %T", r.door, res)
			}
			if e = resp.GetError(); e.Err() == nil {
				if resp.GetOffset() != r.next {
					return nil, actors.Errorf(actors.Code_INTERNAL, "asked for offset %d of snapshot %s, got %d", r.next, r.info.GetId(), resp.GetOffset())
				}
				return resp.GetData(), nil
			}
		}
		if !actors.Retryable(e.Code) {
			return nil, e
		}
		last = e
	}
	return nil, last
}

// IsSnapshotGone reports whether err is a SnapshotReader's error for a
// snapshot the node no longer holds: later snapshots replaced it while it
// was read (raftactor.Config.SnapshotRetain). Reading a new one, from
// OpenSnapshot, is the remedy.
func IsSnapshotGone(err error) bool {
	var e *actors.Error
	return errors.As(err, &e) && e.Code == actors.Code_INVALID_ARGUMENT && e.Field == "id"
}

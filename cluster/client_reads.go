package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/protoraft/protoraft/actors"
)

// DefaultReadBatch is how many concurrent Read calls of one consistency a
// Client sends as one request at most.
const DefaultReadBatch = 128

// WithReadBatch sets how many Read calls that wait at the same time a
// Client sends as one ReadRequest (with several queries) at most; 1 sends
// every Read alone. Default DefaultReadBatch. A Read made while the Client
// has no batch of its consistency in flight is sent at once, alone, so
// batching adds no wait: only reads that would queue anyway share a
// message. Through the front door, the limiter and the node, a batch costs
// about what one read costs, and one leadership confirmation serves all of
// its queries.
//
// A Client keeps one request of each consistency in flight: the reads made
// meanwhile wait for it and then go together. More requests in flight would
// only split the same reads into smaller batches, as a node serves the
// requests that reach it together after one wait anyway, and every extra
// request is another trip through the stages and more goroutines handing
// work to each other: on two cores, one request in flight read 1.4 times
// faster at 64 readers than four (docs/benchmarks.md).
func WithReadBatch(n int) ClientOption {
	return func(o *clientOptions) {
		if n > 0 {
			o.readBatch = min(n, actors.MaxReadBatch)
		}
	}
}

// batchKey names a read batcher: reads share a request only when they
// have the same consistency and present the same credentials.
type batchKey struct {
	consistency actors.Consistency
	credentials string
}

// validConsistency reports whether c is a consistency reads batch by.
func validConsistency(c actors.Consistency) bool {
	return c == actors.Consistency_LINEARIZABLE || c == actors.Consistency_LEASE || c == actors.Consistency_STALE
}

// batcher returns the batcher of this view's credentials and consistency,
// making it if no read uses one now, and counts the caller as its user
// until releaseBatcher. Batchers live only while used, so the Client holds
// one per credentials with reads in flight, not one per credentials ever
// presented.
func (c *Client) batcher(consistency actors.Consistency) *readBatcher {
	key := batchKey{consistency: consistency, credentials: c.credentials}
	c.batchMu.Lock()
	defer c.batchMu.Unlock()
	b := c.batchers[key]
	if b == nil {
		b = &readBatcher{c: c, consistency: consistency}
		c.batchers[key] = b
	}
	b.users++
	return b
}

// releaseBatcher ends a read's use of b, forgetting b once nobody uses it.
// A batch still in flight for reads that gave up finishes on its own.
func (c *Client) releaseBatcher(b *readBatcher) {
	c.batchMu.Lock()
	defer c.batchMu.Unlock()
	b.users--
	if b.users == 0 {
		key := batchKey{consistency: b.consistency, credentials: b.c.credentials}
		if c.batchers[key] == b {
			delete(c.batchers, key)
		}
	}
}

// readBatcher gathers the concurrent Read calls of one consistency and
// one credentials. c is a view presenting those credentials.
type readBatcher struct {
	c           *Client
	consistency actors.Consistency
	// users counts the reads using it; guarded by the Client's batchMu.
	users int

	mu      sync.Mutex
	waiting []*batchedRead
	busy    bool // a request of this batcher is in flight
}

// batchedRead is one Read call waiting for its batch.
type batchedRead struct {
	query    []byte
	deadline time.Time
	done     chan batchedResult
}

// batchedResult is what a batch gives one of its reads. alone asks the
// caller to send its read by itself: the batch as a whole was refused as
// invalid (too many queries for a limit), or the node answered without
// results (a build without batches).
type batchedResult struct {
	resp  *actors.ReadResponse
	err   error
	alone bool
}

// read answers query through a batch.
func (b *readBatcher) read(ctx context.Context, query []byte) (*actors.ReadResponse, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(b.c.opts.callTimeout)
	}
	r := &batchedRead{query: query, deadline: deadline, done: make(chan batchedResult, 1)}
	b.mu.Lock()
	if !b.busy {
		// Nothing to wait for: this read goes now, by itself, on this
		// goroutine.
		b.busy = true
		b.mu.Unlock()
		resp, err := b.c.readAlone(ctx, query, b.consistency)
		if batch := b.next(); batch != nil {
			go b.sendAll(batch)
		}
		return resp, err
	}
	b.waiting = append(b.waiting, r)
	b.mu.Unlock()
	select {
	case res := <-r.done:
		if res.alone {
			return b.c.readAlone(ctx, query, b.consistency)
		}
		return res.resp, res.err
	case <-ctx.Done():
		// The batch goes on for the others; its answer for this read is
		// dropped into the buffered channel.
		return nil, clientGaveUp("read", ctx.Err(), 0, nil)
	}
}

// next is called by whoever finished the request in flight: it returns the
// reads that waited meanwhile, to be sent next, or none, and then the next
// read goes at once.
func (b *readBatcher) next() []*batchedRead {
	b.mu.Lock()
	if len(b.waiting) == 0 {
		b.busy = false
		b.mu.Unlock()
		return nil
	}
	n := min(len(b.waiting), b.c.opts.readBatch)
	batch := b.waiting[:n:n]
	b.waiting = b.waiting[n:]
	if len(b.waiting) == 0 {
		b.waiting = nil
	}
	b.mu.Unlock()
	return batch
}

// sendAll sends batch and then each batch that gathers while the one
// before is in flight, until no read waits.
func (b *readBatcher) sendAll(batch []*batchedRead) {
	for ; batch != nil; batch = b.next() {
		b.send(batch)
	}
}

// send sends one batch and answers each of its reads.
func (b *readBatcher) send(batch []*batchedRead) {
	latest := batch[0].deadline
	queries := make([][]byte, len(batch))
	for i, r := range batch {
		queries[i] = r.query
		if r.deadline.After(latest) {
			latest = r.deadline
		}
	}
	// The batch lasts as long as its most patient read; the others stop
	// waiting on their own contexts.
	ctx, cancel := context.WithDeadline(context.Background(), latest)
	defer cancel()
	if len(batch) == 1 {
		resp, err := b.c.readAlone(ctx, batch[0].query, b.consistency)
		batch[0].done <- batchedResult{resp: resp, err: err}
		return
	}
	resp, err := clientCall[*actors.ReadResponse](ctx, b.c, readSpec(b.consistency), func(meta *actors.RequestMeta) actors.Request {
		return &actors.ReadRequest{Meta: meta, Queries: queries, Consistency: b.consistency}
	}, nil)
	if err == nil && len(resp.GetResults()) != len(batch) {
		err = actors.InvalidArgument("queries", "%d results for %d queries", len(resp.GetResults()), len(batch))
	}
	if e, ok := err.(*actors.Error); ok && e.Code == actors.Code_INVALID_ARGUMENT {
		for _, r := range batch {
			r.done <- batchedResult{alone: true}
		}
		return
	}
	if err != nil {
		for _, r := range batch {
			r.done <- batchedResult{resp: resp, err: err}
		}
		return
	}
	for i, r := range batch {
		res := resp.Results[i]
		one := &actors.ReadResponse{Error: res.GetError(), Result: res.GetResult(), AppliedIndex: res.GetAppliedIndex(), Leader: resp.GetLeader()}
		if e := res.GetError(); e.Err() != nil {
			r.done <- batchedResult{resp: one, err: e}
			continue
		}
		r.done <- batchedResult{resp: one}
	}
}

// readAlone sends one read as a request of its own.
func (c *Client) readAlone(ctx context.Context, query []byte, consistency actors.Consistency) (*actors.ReadResponse, error) {
	return clientCall[*actors.ReadResponse](ctx, c, readSpec(consistency), func(meta *actors.RequestMeta) actors.Request {
		return &actors.ReadRequest{Meta: meta, Query: query, Consistency: consistency}
	}, nil)
}

// readSpec is how the retry loop routes reads of a consistency.
func readSpec(consistency actors.Consistency) callSpec {
	switch consistency {
	case actors.Consistency_STALE:
		// Any member answers a stale read, so its success says nothing
		// about who leads.
		return callSpec{op: "read", route: routeAny}
	case actors.Consistency_LINEARIZABLE:
		// Followers answer too, one round trip to the leader later; the
		// answer names the leader, which serves the next read if it is one
		// of the Client's members.
		return callSpec{op: "read", route: routeLeaderPreferred}
	default:
		return callSpec{op: "read", route: routeLeaderOnly}
	}
}

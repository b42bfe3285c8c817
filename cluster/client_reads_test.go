package cluster_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// heldReads is a door hook that keeps the first single reads from the node
// until released, so the Client's request in flight stays in flight and the
// reads made meanwhile must wait for a batch.
type heldReads struct {
	mu      sync.Mutex
	limit   int
	held    []actor.MessageEnvelope
	arrived chan struct{}
}

func (hr *heldReads) hook(ctx actor.Context, _ string, node *actor.PID, req actors.Request) bool {
	r, ok := req.(*actors.ReadRequest)
	if !ok || len(r.Queries) > 0 {
		return false
	}
	hr.mu.Lock()
	defer hr.mu.Unlock()
	if len(hr.held) == hr.limit {
		return false
	}
	hr.held = append(hr.held, actor.MessageEnvelope{Message: req, Sender: ctx.Sender()})
	hr.arrived <- struct{}{}
	return true
}

// release lets the held reads reach the node; their replies go to their
// callers.
func (hr *heldReads) release(system *actor.ActorSystem, node *actor.PID) {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	for i := range hr.held {
		system.Root.Send(node, &hr.held[i])
	}
}

// Reads made while the Client's earlier reads are in flight travel as one
// request with several queries; each caller gets the answer to its own
// query, a malformed query fails alone, and a caller that gives up while
// its batch waits is answered at once.
func TestClientReadsWaitingTogetherTravelAsOneBatch(t *testing.T) {
	const slots, queued = 1, 16
	h := newClientHarness(t, 1)
	c := h.client()
	for i := range slots + queued {
		clientMustPut(t, c, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	h.requests()
	hr := &heldReads{limit: slots, arrived: make(chan struct{}, slots)}
	h.setHook(hr.hook)
	defer h.setHook(nil)

	type answer struct {
		i   int
		q   *kvstore.QueryResult
		err error
	}
	answers := make(chan answer, slots+queued+1)
	read := func(i int, query []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := c.Read(ctx, query)
		var q *kvstore.QueryResult
		if err == nil {
			q, err = kvstore.DecodeQueryResult(resp.Result)
		}
		answers <- answer{i, q, err}
	}
	for i := range slots {
		go read(i, kvstore.Get(fmt.Sprintf("k%d", i)))
	}
	for range slots {
		select {
		case <-hr.arrived:
		case <-time.After(20 * time.Second):
			t.Fatal("the first reads never reached the door")
		}
	}
	var started sync.WaitGroup
	for i := slots; i < slots+queued; i++ {
		query := kvstore.Get(fmt.Sprintf("k%d", i))
		if i == slots+1 {
			query = []byte{0xff, 0xff}
		}
		started.Add(1)
		go func() {
			started.Done()
			read(i, query)
		}()
	}
	started.Wait()
	// A caller that gives up while its batch waits for a slot.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := clientWithin(t, 10*time.Second, func() error { _, err := c.Read(ctx, kvstore.Get("k0")); return err }); actors.CodeOf(asError(err)) != actors.Code_DEADLINE_EXCEEDED {
		t.Fatalf("a queued read whose context ended: %v, want DEADLINE_EXCEEDED", err)
	}

	hr.release(h.System, h.Node("n1").PID)
	for range slots + queued {
		var a answer
		select {
		case a = <-answers:
		case <-time.After(30 * time.Second):
			t.Fatal("reads never answered")
		}
		if a.i == slots+1 {
			if actors.CodeOf(asError(a.err)) != actors.Code_INVALID_ARGUMENT {
				t.Fatalf("the malformed query: %v, want INVALID_ARGUMENT", a.err)
			}
			continue
		}
		if a.err != nil {
			t.Fatalf("read k%d: %v", a.i, a.err)
		}
		if want := fmt.Sprintf("v%d", a.i); string(a.q.Value) != want {
			t.Fatalf("read k%d = %q, want %q", a.i, a.q.Value, want)
		}
	}
	batches := 0
	for _, s := range h.requests() {
		if r, ok := s.req.(*actors.ReadRequest); ok && len(r.Queries) > 1 {
			batches++
		}
	}
	if batches == 0 {
		t.Fatal("the reads that waited were sent one by one, not as a batch")
	}
}

// A node that refuses the batch as a whole as invalid (a build without
// batches reads its empty query, or a limit the batch is over) gets each
// read again, alone.
func TestClientReadBatchRefusedFallsBackToSingleReads(t *testing.T) {
	const slots, queued = 4, 8
	h := newClientHarness(t, 1)
	c := h.client()
	clientMustPut(t, c, "k", "v")
	hr := &heldReads{limit: slots, arrived: make(chan struct{}, slots)}
	h.setHook(func(ctx actor.Context, door string, node *actor.PID, req actors.Request) bool {
		if r, ok := req.(*actors.ReadRequest); ok && len(r.Queries) > 0 {
			ctx.Respond(&actors.ReadResponse{Error: actors.InvalidArgument("query", "unknown query")})
			return true
		}
		return hr.hook(ctx, door, node, req)
	})
	defer h.setHook(nil)
	errs := make(chan error, slots+queued)
	read := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := c.Read(ctx, kvstore.Get("k"))
		if err == nil {
			var q *kvstore.QueryResult
			if q, err = kvstore.DecodeQueryResult(resp.Result); err == nil && string(q.Value) != "v" {
				err = fmt.Errorf("k = %q, want v", q.Value)
			}
		}
		errs <- err
	}
	for range slots {
		go read()
	}
	for range slots {
		<-hr.arrived
	}
	for range queued {
		go read()
	}
	hr.release(h.System, h.Node("n1").PID)
	for range slots + queued {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("reads never answered")
		}
	}
}

// WithReadBatch(1) sends every read alone.
func TestClientReadBatchOfOneSendsReadsAlone(t *testing.T) {
	h := newClientHarness(t, 1)
	c := h.client(cluster.WithReadBatch(1))
	clientMustPut(t, c, "k", "v")
	h.requests()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() { clientMustGet(t, c, "k") })
	}
	wg.Wait()
	for _, s := range h.requests() {
		if r, ok := s.req.(*actors.ReadRequest); ok && len(r.Queries) > 0 {
			t.Fatalf("a batch of %d queries with WithReadBatch(1)", len(r.Queries))
		}
	}
}

// asError is the *actors.Error in err, or nil.
func asError(err error) *actors.Error {
	e, _ := err.(*actors.Error)
	return e
}

// Batched reads are linearizable like single ones: many callers share one
// Client, so their reads travel in batches, and each must see every write
// acknowledged before the caller asked, at both consistencies that promise
// it; also while the leader is cut off halfway through and a new one
// takes over, so batches meet NOT_LEADER and are retried elsewhere.
func TestClientBatchedReadsSeeAcknowledgedWrites(t *testing.T) {
	h := newClientHarness(t, 3)
	writer := h.client()
	readers := h.client()
	clientMustPut(t, writer, "k", "0")
	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads atomic.Int64
	for r := range 32 {
		consistency := actors.Consistency_LINEARIZABLE
		if r%2 == 1 {
			consistency = actors.Consistency_LEASE
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				before := acked.Load()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := readers.Read(ctx, kvstore.Get("k"), cluster.WithConsistency(consistency))
				cancel()
				if err != nil {
					// The Client gave up during the election: no answer,
					// nothing to check.
					if actors.CodeOf(asError(err)) != actors.Code_DEADLINE_EXCEEDED {
						t.Errorf("%v read: %v", consistency, err)
						return
					}
					continue
				}
				q, err := kvstore.DecodeQueryResult(resp.Result)
				if err != nil {
					t.Errorf("decode: %v", err)
					return
				}
				if got, _ := strconv.ParseInt(string(q.Value), 10, 64); got < before {
					t.Errorf("%v read asked after write %d was acknowledged returned %d", consistency, before, got)
					return
				}
				reads.Add(1)
			}
		})
	}
	for i := int64(1); i <= 100 && !t.Failed(); i++ {
		if i == 50 {
			old := clientLeaderID(t, writer)
			h.Faults.Isolate(raft.ServerID(old))
			defer h.Faults.Heal()
		}
		clientMustPut(t, writer, "k", strconv.FormatInt(i, 10))
		acked.Store(i)
	}
	close(stop)
	wg.Wait()
	batches := 0
	for _, s := range h.requests() {
		if r, ok := s.req.(*actors.ReadRequest); ok && len(r.Queries) > 1 {
			batches++
		}
	}
	t.Logf("%d reads, %d batches", reads.Load(), batches)
	if batches == 0 {
		t.Fatal("32 concurrent readers of one Client never shared a batch")
	}
}

// A follower answers a linearizable read too (with a read index from the
// leader) and names the leader in its answer: the Client goes to the
// leader from the next read on, as the cheaper place to read.
func TestClientLearnsTheLeaderFromAReadAFollowerServed(t *testing.T) {
	h := newClientHarness(t, 3)
	writer := h.client()
	clientMustPut(t, writer, "k", "v")
	leader := clientLeaderID(t, writer)
	var members []cluster.Peer
	for _, id := range h.IDs() {
		if id != leader {
			members = append(members, h.peer(id))
		}
	}
	members = append(members, h.peer(leader))
	// A Client starts at a random member; take one that starts at a
	// follower.
	for range 32 {
		c := cluster.NewClient(h.System, grouptest.Group, members)
		h.requests()
		if q := clientMustGet(t, c, "k"); string(q.Value) != "v" {
			t.Fatalf("k = %q, want v", q.Value)
		}
		if first := h.requests(); len(first) != 1 || first[0].door == leader {
			continue
		}
		for range 5 {
			clientMustGet(t, c, "k")
		}
		for _, s := range h.requests() {
			if s.door != leader {
				t.Fatalf("a read after the follower named the leader went to %s, not the leader %s", s.door, leader)
			}
		}
		return
	}
	t.Fatal("no Client of 32 sent its first read to a follower")
}

// A Client given a follower only keeps reading from it: the leader a read
// answer names is preferred only among the Client's members, so a Client
// pinned to a follower to spread reads stays there.
func TestClientPinnedToAFollowerKeepsReadingFromIt(t *testing.T) {
	h := newClientHarness(t, 3)
	writer := h.client()
	clientMustPut(t, writer, "k", "v")
	leader := clientLeaderID(t, writer)
	follower := h.IDs()[0]
	if follower == leader {
		follower = h.IDs()[1]
	}
	c := cluster.NewClient(h.System, grouptest.Group, []cluster.Peer{h.peer(follower)})
	h.requests()
	for range 5 {
		if q := clientMustGet(t, c, "k"); string(q.Value) != "v" {
			t.Fatalf("k = %q, want v", q.Value)
		}
	}
	for _, s := range h.requests() {
		if s.door != follower {
			t.Fatalf("a read of a Client pinned to %s went to %s", follower, s.door)
		}
	}
}

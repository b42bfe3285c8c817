package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// sessionHarness is a client harness whose nodes have a clock each and a
// one-minute session TTL.
func sessionHarness(t *testing.T, n int) (*clientHarness, map[string]*faults.Clock) {
	t.Helper()
	clocks := map[string]*faults.Clock{}
	h := newClientHarnessWith(t, n, func(cfg *raftactor.Config) {
		cfg.SessionTTL = time.Minute
		clocks[cfg.ID] = faults.NewClock()
		cfg.Clock = clocks[cfg.ID]
	})
	return h, clocks
}

// holdWrites makes the doors apply the first attempt of every write whose
// command matches and drop its reply, and hold every later attempt (no
// reply, so the Client retries) until release is called; applied receives
// each first application's response.
func holdWrites(h *clientHarness, match func([]byte) bool, applied chan<- *actors.WriteResponse) (release func()) {
	var released atomic.Bool
	var mu sync.Mutex
	seen := map[string]bool{}
	h.setHook(func(ctx actor.Context, _ string, node *actor.PID, req actors.Request) bool {
		w, ok := req.(*actors.WriteRequest)
		if !ok || !match(w.Command) {
			return false
		}
		mu.Lock()
		first := !seen[string(w.Command)]
		seen[string(w.Command)] = true
		mu.Unlock()
		switch {
		case first:
			f := ctx.RequestFuture(node, w, 10*time.Second)
			go func() {
				res, _ := f.Result()
				wr, _ := res.(*actors.WriteResponse)
				applied <- wr
			}()
			return true
		case released.Load():
			return false
		default:
			return true
		}
	})
	return func() { released.Store(true) }
}

// A Client workload while the leader's wall clock jumps two hours ahead,
// and then, after a leadership transfer, the new leader's two hours behind:
// writes whose replies were lost before a jump are retried after it, and
// every write is applied exactly once (each writer's compare-and-set chain
// never breaks), with no SESSION_EXPIRED for the Client's active session.
func TestClientWritesExactlyOnceAcrossLeaderClockJumps(t *testing.T) {
	h, clocks := sessionHarness(t, 3)
	c := h.client(cluster.WithAttemptTimeout(time.Second))
	other := h.client()
	leader := clientLeaderID(t, c)

	const writers = 4
	chain := func(w, i int) []byte { return []byte(fmt.Sprintf("w%d-%d", w, i)) }
	step := make([]int, writers) // the last value each writer set
	for w := range writers {
		if r, _ := clientMustWrite(t, c, kvstore.Put(fmt.Sprintf("w%d", w), chain(w, 0))); !r.Ok {
			t.Fatalf("writer %d: initial put refused: %s", w, r.Error)
		}
	}
	// run lets every writer do n compare-and-sets in a row; hold, when set,
	// applies the first of them and loses its reply, and holds the retries
	// until after jump ran: the retries then meet the jumped clock.
	run := func(n int, hold bool, jump func()) {
		t.Helper()
		var release func()
		applied := make(chan *actors.WriteResponse, writers)
		if hold {
			firsts := map[string]bool{}
			for w := range writers {
				firsts[string(kvstore.CompareAndSet(fmt.Sprintf("w%d", w), chain(w, step[w]), chain(w, step[w]+1)))] = true
			}
			release = holdWrites(h, func(cmd []byte) bool { return firsts[string(cmd)] }, applied)
		}
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for range n {
					key := fmt.Sprintf("w%d", w)
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					resp, err := c.Write(ctx, kvstore.CompareAndSet(key, chain(w, step[w]), chain(w, step[w]+1)))
					cancel()
					if err != nil {
						t.Errorf("writer %d step %d: %v", w, step[w]+1, err)
						return
					}
					if r, err := kvstore.DecodeResult(resp.Result); err != nil || !r.Ok {
						t.Errorf("writer %d step %d: compare-and-set failed (%v, %v): applied twice", w, step[w]+1, r, err)
						return
					}
					step[w]++
				}
			})
		}
		if hold {
			for range writers {
				select {
				case wr := <-applied:
					if wr == nil || wr.Error.Err() != nil {
						t.Fatalf("a held first attempt failed: %v", wr)
					}
				case <-time.After(20 * time.Second):
					t.Fatal("the held writes were never applied")
				}
			}
			jump()
			// Another client's writes carry the replicated clock on, as far
			// as the jumped leader would move it.
			for i := range 5 {
				clientMustPut(t, other, "other", fmt.Sprint(i))
			}
			release()
		}
		wg.Wait()
		h.setHook(nil)
		if t.Failed() {
			t.FailNow()
		}
	}

	run(3, false, nil)
	run(3, true, func() { clocks[leader].Jump(2 * time.Hour) })
	var target string
	for _, id := range h.IDs() {
		if id != leader {
			target = id
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.TransferLeadership(ctx, target); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	leader = clientLeaderID(t, c)
	run(3, true, func() { clocks[leader].Jump(-2 * time.Hour) })
	run(3, false, nil)
	for w := range writers {
		if q := clientMustGet(t, c, fmt.Sprintf("w%d", w)); !bytes.Equal(q.Value, chain(w, step[w])) || step[w] != 12 {
			t.Fatalf("writer %d: value %q after %d steps", w, q.Value, step[w])
		}
	}
}

// A Client whose session expired gets SESSION_EXPIRED for the write that
// found out (its outcome unknown, never retried into a new session), opens
// the session again for its next write, and a write of the earlier opening
// still in flight is refused when it arrives after the reopen: the
// compare-and-set it carries stays applied once.
func TestClientReopensItsSessionAfterItExpired(t *testing.T) {
	h, clocks := sessionHarness(t, 1)
	c := h.client(cluster.WithAttemptTimeout(500 * time.Millisecond))
	other := h.client()
	if r, _ := clientMustPut(t, c, "k", "v0"); !r.Ok {
		t.Fatalf("put v0 refused: %s", r.Error)
	}
	cas := kvstore.CompareAndSet("k", []byte("v0"), []byte("v1"))
	applied := make(chan *actors.WriteResponse, 1)
	release := holdWrites(h, func(cmd []byte) bool { return bytes.Equal(cmd, cas) }, applied)
	inflight := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, err := c.Write(ctx, cas)
		inflight <- err
	}()
	var first *actors.WriteResponse
	select {
	case first = <-applied:
		if first == nil || first.Error.Err() != nil {
			t.Fatalf("the first attempt failed: %v", first)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the compare-and-set never reached the node")
	}

	// Time passes until the session expires; the Client hears of it from
	// the next write, which is then not retried.
	var expired error
	for i := 0; expired == nil; i++ {
		if i > 50 {
			t.Fatal("the session never expired")
		}
		clocks["n1"].Advance(2 * time.Minute)
		clientMustPut(t, other, "other", fmt.Sprint(i))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := c.Write(ctx, kvstore.Put("probe", []byte(fmt.Sprint(i))))
		cancel()
		var ae *actors.Error
		switch {
		case errors.As(err, &ae) && ae.Code == actors.Code_SESSION_EXPIRED:
			expired = err
		case err != nil:
			t.Fatalf("probe %d: %v", i, err)
		}
	}
	h.requests()
	if r, _ := clientMustPut(t, c, "after", "x"); !r.Ok {
		t.Fatalf("write after the expiry: %s", r.Error)
	}
	opens := 0
	for _, s := range h.requests() {
		if w, ok := s.req.(*actors.WriteRequest); ok && w.GetMeta().GetOpenSession() {
			opens++
		}
	}
	if opens != 1 {
		t.Fatalf("%d session opens before the write after the expiry, want 1", opens)
	}

	// The held compare-and-set now reaches the node: refused, not applied
	// a second time.
	release()
	select {
	case err := <-inflight:
		var ae *actors.Error
		if !errors.As(err, &ae) || ae.Code != actors.Code_SESSION_EXPIRED {
			t.Fatalf("the write of the earlier opening: %v, want SESSION_EXPIRED", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the held write never returned")
	}
	h.setHook(nil)
	if q := clientMustGet(t, c, "k"); string(q.Value) != "v1" || q.Revision != first.Index {
		t.Fatalf("k = %q at revision %d, want v1 at %d", q.Value, q.Revision, first.Index)
	}
	// The refusal of the old write did not close the reopened session.
	h.requests()
	clientMustPut(t, c, "again", "x")
	for _, s := range h.requests() {
		if w, ok := s.req.(*actors.WriteRequest); ok && w.GetMeta().GetOpenSession() {
			t.Fatal("the session was opened again after a write of the earlier opening was refused")
		}
	}
}

// The Client names its session's opening in every write, so a late copy of
// its open cannot let a retry be applied twice: the open travels twice and
// the second copy is held back; the compare-and-set is applied and its
// reply lost, and its retries are held; the session expires; the late copy
// of the open creates the session again, empty; the retry then arrives and
// is refused with SESSION_EXPIRED instead of being applied a second time.
func TestClientRetryIsNotAppliedAgainAfterALateCopyOfItsOpen(t *testing.T) {
	h, clocks := sessionHarness(t, 1)
	c := h.client(cluster.WithAttemptTimeout(500 * time.Millisecond))
	other := h.client()
	if r, _ := clientMustPut(t, other, "k", "v0"); !r.Ok {
		t.Fatalf("put v0 refused: %s", r.Error)
	}
	cas := kvstore.CompareAndSet("k", []byte("v0"), []byte("v1"))
	var (
		lateOpen  atomic.Pointer[actors.WriteRequest]
		held      atomic.Pointer[actors.WriteRequest]
		released  atomic.Bool
		applied   = make(chan *actors.WriteResponse, 1)
		inflight  = make(chan error, 1)
		firstResp *actors.WriteResponse
	)
	h.setHook(func(ctx actor.Context, _ string, node *actor.PID, req actors.Request) bool {
		w, ok := req.(*actors.WriteRequest)
		switch {
		case !ok || w.GetMeta().GetClientId() != c.ClientID():
			return false
		case w.GetMeta().GetOpenSession():
			// Forwarded, and a copy kept for later.
			lateOpen.CompareAndSwap(nil, proto.Clone(w).(*actors.WriteRequest))
			return false
		case !bytes.Equal(w.Command, cas):
			return false
		case held.CompareAndSwap(nil, proto.Clone(w).(*actors.WriteRequest)):
			// The first attempt is applied, its reply lost.
			f := ctx.RequestFuture(node, w, 10*time.Second)
			go func() {
				res, _ := f.Result()
				wr, _ := res.(*actors.WriteResponse)
				applied <- wr
			}()
			return true
		default:
			return !released.Load()
		}
	})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, err := c.Write(ctx, cas)
		inflight <- err
	}()
	select {
	case firstResp = <-applied:
		if firstResp == nil || firstResp.Error.Err() != nil {
			t.Fatalf("the first attempt failed: %v", firstResp)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the compare-and-set never reached the node")
	}

	// The session expires. A copy of the held attempt, sent to the node,
	// tells when: answered from the table while the session lives, refused
	// once it is gone.
	probe := func() *actors.WriteResponse {
		w := proto.Clone(held.Load()).(*actors.WriteRequest)
		w.Meta.SetTimeout(3 * time.Second)
		return h.MustAsk("n1", w).(*actors.WriteResponse)
	}
	for i := 0; ; i++ {
		if i > 50 {
			t.Fatal("the session never expired")
		}
		clocks["n1"].Advance(2 * time.Minute)
		clientMustPut(t, other, "other", fmt.Sprint(i))
		wr := probe()
		if actors.CodeOf(wr.Error) == actors.Code_SESSION_EXPIRED {
			break
		}
		if wr.Error.Err() != nil || wr.Index != firstResp.Index {
			t.Fatalf("probe %d: %v at %d (first at %d)", i, wr.Error, wr.Index, firstResp.Index)
		}
	}
	// The held copy of the open arrives and creates the session again.
	lo := lateOpen.Load()
	if lo == nil {
		t.Fatal("the Client sent no open")
	}
	lo.Meta.SetTimeout(3 * time.Second)
	if wr := h.MustAsk("n1", lo).(*actors.WriteResponse); wr.Error.Err() != nil {
		t.Fatalf("the late open: %v", wr.Error)
	}

	// The Client's retry arrives: refused, not applied a second time.
	released.Store(true)
	select {
	case err := <-inflight:
		var ae *actors.Error
		if !errors.As(err, &ae) || ae.Code != actors.Code_SESSION_EXPIRED {
			t.Fatalf("the retry after the late open: %v, want SESSION_EXPIRED", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the held write never returned")
	}
	h.setHook(nil)
	if q := clientMustGet(t, c, "k"); string(q.Value) != "v1" || q.Revision != firstResp.Index {
		t.Fatalf("k = %q at revision %d, want v1 at %d", q.Value, q.Revision, firstResp.Index)
	}
	// The Client opens its session again and writes on.
	if r, _ := clientMustPut(t, c, "after", "x"); !r.Ok {
		t.Fatalf("write after the refusal: %s", r.Error)
	}
}

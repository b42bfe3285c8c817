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

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// A writer keeps writing and reading through one Client while the leader's
// node and front door are stopped: no call fails, and every acknowledged
// write is there afterwards.
func TestClientWritesAndReadsWhileLeaderStops(t *testing.T) {
	h := newClientHarness(t, 3)
	c := h.client(cluster.WithAttemptTimeout(time.Second))
	old := clientLeaderID(t, c)

	const n, stopAt = 60, 20
	reached := make(chan struct{})
	acked := make([]uint64, n)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			if i == stopAt {
				close(reached)
			}
			key, value := fmt.Sprintf("k%03d", i), fmt.Sprintf("v%03d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			resp, err := c.Write(ctx, kvstore.Put(key, []byte(value)))
			if err != nil {
				cancel()
				t.Errorf("write %s: %v", key, err)
				return
			}
			acked[i] = resp.Index
			q, err := clientGet(ctx, c, key)
			cancel()
			if err != nil {
				t.Errorf("read %s: %v", key, err)
				return
			}
			if string(q.Value) != value {
				t.Errorf("read %s = %q right after writing %q", key, q.Value, value)
			}
		}
	})
	<-reached
	h.Stop(old)
	wg.Wait()
	if t.Failed() {
		return
	}

	if now := clientLeaderID(t, c); now == old {
		t.Fatalf("stopped node %s still reported as leader", old)
	}
	for i := range n {
		key := fmt.Sprintf("k%03d", i)
		q := clientMustGet(t, c, key)
		if !q.Found || string(q.Value) != fmt.Sprintf("v%03d", i) {
			t.Errorf("%s after failover: found=%v value=%q", key, q.Found, q.Value)
		}
		if q.Revision != acked[i] {
			t.Errorf("%s revision %d, acknowledged at index %d", key, q.Revision, acked[i])
		}
	}
}

// clientDropFirstReply makes the leader's door apply a write whose command is cmd
// but keep the node's reply from the Client, once. The node's reply goes
// to got, so the test knows the write committed before the Client hears
// anything.
func clientDropFirstReply(h *clientHarness, leader string, cmd []byte, got chan<- *actors.WriteResponse) {
	var once atomic.Bool
	h.setHook(func(ctx actor.Context, door string, node *actor.PID, req actors.Request) bool {
		w, ok := req.(*actors.WriteRequest)
		if !ok || door != leader || !bytes.Equal(w.Command, cmd) || !once.CompareAndSwap(false, true) {
			return false
		}
		f := ctx.RequestFuture(node, w, 10*time.Second)
		go func() {
			res, _ := f.Result()
			wr, _ := res.(*actors.WriteResponse)
			got <- wr
		}()
		return true
	})
}

// A write whose reply is lost after it committed is retried with the same
// session sequence and applied once: first to the same leader, then with the
// leader stopped between commit and reply, so the retry meets a new leader
// that knows the sequence only from the replicated session table.
func TestClientWriteRetriedAfterLostReplyAppliesOnce(t *testing.T) {
	h := newClientHarness(t, 3)
	c := h.client(cluster.WithAttemptTimeout(time.Second))
	if r, _ := clientMustPut(t, c, "k", "v0"); !r.Ok {
		t.Fatalf("put v0 refused: %s", r.Error)
	}

	// checkOnce asserts that the Client's answer is the first application's
	// answer, and that every attempt carried one session sequence.
	checkOnce := func(step string, cmd []byte, first, resp *actors.WriteResponse, wantValue string) {
		t.Helper()
		if resp.Index != first.Index || !bytes.Equal(resp.Result, first.Result) {
			t.Fatalf("%s: Client got index %d result %x; the first application had index %d result %x",
				step, resp.Index, resp.Result, first.Index, first.Result)
		}
		r, err := kvstore.DecodeResult(resp.Result)
		if err != nil || !r.Ok {
			// A compare-and-set applied a second time fails: its expected
			// value is gone. An OK here is the first result, replayed.
			t.Fatalf("%s: compare-and-set result %v, %v; want the first, successful one", step, r, err)
		}
		q := clientMustGet(t, c, "k")
		if string(q.Value) != wantValue || q.Revision != first.Index {
			t.Fatalf("%s: k = %q at revision %d, want %q at %d", step, q.Value, q.Revision, wantValue, first.Index)
		}
		var attempts int
		var session *actors.RequestMeta
		for _, s := range h.requests() {
			w, ok := s.req.(*actors.WriteRequest)
			if !ok || !bytes.Equal(w.Command, cmd) {
				continue
			}
			attempts++
			if session == nil {
				session = w.Meta
			}
			if w.Meta.ClientId != c.ClientID() || w.Meta.Sequence != session.Sequence || w.Meta.AckedBelow > w.Meta.Sequence {
				t.Fatalf("%s: attempt with client %q sequence %d acked_below %d; first was client %q sequence %d",
					step, w.Meta.ClientId, w.Meta.Sequence, w.Meta.AckedBelow, session.ClientId, session.Sequence)
			}
		}
		if attempts < 2 {
			t.Fatalf("%s: the write reached the doors %d times; the lost reply should have caused a retry", step, attempts)
		}
	}

	awaitFirst := func(got <-chan *actors.WriteResponse) *actors.WriteResponse {
		t.Helper()
		select {
		case first := <-got:
			if first == nil || first.Error.Err() != nil {
				t.Fatalf("the intercepted first attempt did not commit: %v", first)
			}
			return first
		case <-time.After(20 * time.Second):
			t.Fatal("the write never reached the leader's door")
			return nil
		}
	}

	type result struct {
		resp *actors.WriteResponse
		err  error
	}
	write := func(cmd []byte) <-chan result {
		done := make(chan result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := c.Write(ctx, cmd)
			done <- result{resp, err}
		}()
		return done
	}

	// The reply is lost; the same leader answers the retry.
	leader := clientLeaderID(t, c)
	h.requests()
	cas1 := kvstore.CompareAndSet("k", []byte("v0"), []byte("v1"))
	got := make(chan *actors.WriteResponse, 1)
	clientDropFirstReply(h, leader, cas1, got)
	done := write(cas1)
	first := awaitFirst(got)
	res := <-done
	if res.err != nil {
		t.Fatalf("retried write: %v", res.err)
	}
	checkOnce("same leader", cas1, first, res.resp, "v1")

	// The reply is lost and the leader dies before anyone hears it.
	leader = clientLeaderID(t, c)
	h.requests()
	cas2 := kvstore.CompareAndSet("k", []byte("v1"), []byte("v2"))
	clientDropFirstReply(h, leader, cas2, got)
	done = write(cas2)
	first = awaitFirst(got)
	h.setHook(nil)
	h.Stop(leader)
	res = <-done
	if res.err != nil {
		t.Fatalf("write retried after the leader stopped: %v", res.err)
	}
	if now := clientLeaderID(t, c); now == leader {
		t.Fatalf("stopped node %s still reported as leader", leader)
	}
	checkOnce("leader stopped", cas2, first, res.resp, "v2")
}

// A reply with a code that is not retryable ends the call after one attempt,
// with the reply and its error.
func TestClientDoesNotRetryNonRetryableCodes(t *testing.T) {
	h := newClientHarness(t, 3)
	c := h.client()
	clientLeaderID(t, c)

	// Every member refuses an invalid ID before it checks leadership, so
	// the first member asked answers, whoever leads.
	h.requests()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.Remove(ctx, "not a node id")
	var ae *actors.Error
	if !errors.As(err, &ae) || ae.Code != actors.Code_INVALID_ARGUMENT || ae.Field != "id" {
		t.Fatalf("remove of an invalid ID: %v, want INVALID_ARGUMENT (id)", err)
	}
	if resp == nil || resp.Error != ae {
		t.Fatalf("remove: the response %v should carry the returned error", resp)
	}
	if n := len(h.requests()); n != 1 {
		t.Fatalf("remove of an invalid ID was sent %d times, want 1", n)
	}

	// Only the leader checks a read's consistency, so the read is refused
	// after one attempt provided the Client knows the leader and it stays
	// leader meanwhile; an election in between is detected and tried again
	// rather than mistaken for a retry.
	for try := 0; ; try++ {
		before := clientLeaderID(t, c)
		h.requests()
		_, err := c.Read(ctx, kvstore.Get("k"), cluster.WithConsistency(actors.Consistency(99)))
		n := len(h.requests())
		if !errors.As(err, &ae) || ae.Code != actors.Code_INVALID_ARGUMENT || ae.Field != "consistency" {
			t.Fatalf("read with consistency 99: %v, want INVALID_ARGUMENT (consistency)", err)
		}
		if after := clientLeaderID(t, c); after != before && try < 3 {
			continue
		}
		if n != 1 {
			t.Fatalf("read with an invalid consistency was sent %d times, want 1", n)
		}
		break
	}

	// The Client's first write opens its session: open it now, so the
	// requests counted below are the refused writes alone.
	clientMustPut(t, c, "opened", "x")
	for _, code := range []actors.Code{
		actors.Code_INVALID_ARGUMENT, actors.Code_PERMISSION_DENIED, actors.Code_UNAUTHENTICATED, actors.Code_INTERNAL,
		actors.Code_SESSION_EXPIRED,
	} {
		t.Run(code.String(), func(t *testing.T) {
			cmd := kvstore.Put("refused-"+code.String(), []byte("x"))
			h.setHook(func(ctx actor.Context, _ string, _ *actor.PID, req actors.Request) bool {
				if w, ok := req.(*actors.WriteRequest); ok && bytes.Equal(w.Command, cmd) {
					ctx.Respond(&actors.WriteResponse{Error: &actors.Error{Code: code, Message: "refused by the test"}})
					return true
				}
				return false
			})
			defer h.setHook(nil)
			h.requests()
			resp, err := c.Write(ctx, cmd)
			var ae *actors.Error
			if !errors.As(err, &ae) || ae.Code != code {
				t.Fatalf("write: %v, want %v", err, code)
			}
			if resp == nil || actors.CodeOf(resp.Error) != code {
				t.Fatalf("write: response %v, want one carrying %v", resp, code)
			}
			if n := len(h.requests()); n != 1 {
				t.Fatalf("write refused with %v was sent %d times, want 1", code, n)
			}
		})
	}
}

// Retryable refusals are retried until the group accepts, a
// RESOURCE_EXHAUSTED with a retry-after hint included.
func TestClientRetriesRetryableCodes(t *testing.T) {
	h := newClientHarness(t, 3)
	c := h.client()
	clientLeaderID(t, c)

	cmd := kvstore.Put("busy", []byte("x"))
	var refused atomic.Int32
	refusals := []*actors.Error{
		actors.ResourceExhausted("in_flight", 30*time.Millisecond, "busy"),
		actors.Errorf(actors.Code_UNAVAILABLE, "no quorum"),
		actors.DeadlineExceeded("write"),
	}
	h.setHook(func(ctx actor.Context, _ string, _ *actor.PID, req actors.Request) bool {
		if w, ok := req.(*actors.WriteRequest); ok && bytes.Equal(w.Command, cmd) {
			if i := int(refused.Add(1)) - 1; i < len(refusals) {
				ctx.Respond(&actors.WriteResponse{Error: refusals[i]})
				return true
			}
		}
		return false
	})
	r, _ := clientMustWrite(t, c, cmd)
	if !r.Ok {
		t.Fatalf("write refused by the store: %s", r.Error)
	}
	if n := refused.Load(); n <= int32(len(refusals)) {
		t.Fatalf("write reached the doors %d times, want more than the %d refusals", n, len(refusals))
	}
}

// With no member answering, a call returns DEADLINE_EXCEEDED once its
// context ends, and no attempt carries a deadline past the caller's.
func TestClientDeadlines(t *testing.T) {
	const guard = 10 * time.Second
	testutil.VerifyNoLeaks(t)
	system := testutil.NewSystem(t)
	peers := []cluster.Peer{
		{ID: "n1", Address: actors.LocalSystemAddress},
		{ID: "n2", Address: actors.LocalSystemAddress},
		{ID: "n3", Address: actors.LocalSystemAddress},
	}
	wantDeadline := func(t *testing.T, err error) {
		t.Helper()
		var ae *actors.Error
		if !errors.As(err, &ae) || ae.Code != actors.Code_DEADLINE_EXCEEDED {
			t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
		}
	}

	t.Run("no members", func(t *testing.T) {
		c := cluster.NewClient(system, "absent", nil)
		err := clientWithin(t, guard, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := c.Leader(ctx)
			return err
		})
		wantDeadline(t, err)
	})

	t.Run("nobody there", func(t *testing.T) {
		// No actor behind any front door: every attempt is a dead letter.
		c := cluster.NewClient(system, "absent", peers)
		err := clientWithin(t, guard, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := c.Write(ctx, kvstore.Put("k", []byte("v")))
			return err
		})
		wantDeadline(t, err)
	})

	// Front doors that take requests and never answer.
	received := make(chan clientSeen, 64)
	for _, p := range peers {
		props := actor.PropsFromProducer(func() actor.Actor { return &clientBlackHole{id: p.ID, received: received} })
		if _, err := system.Root.SpawnNamed(props, p.FrontDoor("silent").Id); err != nil {
			t.Fatal(err)
		}
	}
	drain := func() []clientSeen {
		var s []clientSeen
		for {
			select {
			case r := <-received:
				s = append(s, r)
			default:
				return s
			}
		}
	}

	t.Run("silent members", func(t *testing.T) {
		drain()
		c := cluster.NewClient(system, "silent", peers, cluster.WithAttemptTimeout(time.Minute))
		var callDeadline time.Time
		err := clientWithin(t, guard, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			callDeadline, _ = ctx.Deadline()
			_, err := c.Write(ctx, kvstore.Put("k", []byte("v")))
			return err
		})
		wantDeadline(t, err)
		seen := drain()
		if len(seen) == 0 {
			t.Fatal("no attempt reached a front door")
		}
		for _, s := range seen {
			if d := s.req.GetMeta().GetDeadlineUnixNano(); d == 0 || d > callDeadline.UnixNano() {
				t.Fatalf("attempt deadline %v is past the call's %v", time.Unix(0, d), callDeadline)
			}
		}
	})

	t.Run("attempt timeout", func(t *testing.T) {
		drain()
		const attempt = 100 * time.Millisecond
		c := cluster.NewClient(system, "silent", peers, cluster.WithAttemptTimeout(attempt))
		err := clientWithin(t, guard, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			_, err := c.Read(ctx, kvstore.Get("k"))
			return err
		})
		wantDeadline(t, err)
		seen := drain()
		if len(seen) < 2 {
			t.Fatalf("%d attempts; a silent member should have been given up on and another tried", len(seen))
		}
		doors := map[string]bool{}
		for _, s := range seen {
			doors[s.door] = true
			// The attempt was sent before the door saw it, so its deadline
			// is at most the door's clock plus the attempt timeout.
			if d := time.Unix(0, s.req.GetMeta().GetDeadlineUnixNano()); d.After(s.at.Add(attempt)) {
				t.Fatalf("attempt deadline %v is more than %v after it arrived at %v", d, attempt, s.at)
			}
		}
		if len(doors) < 2 {
			t.Fatalf("attempts went to %v only; retries should move across the members", doors)
		}
	})

	t.Run("canceled", func(t *testing.T) {
		drain()
		c := cluster.NewClient(system, "silent", peers, cluster.WithAttemptTimeout(200*time.Millisecond))
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-received
			cancel()
		}()
		err := clientWithin(t, guard, func() error {
			_, err := c.Status(ctx)
			return err
		})
		cancel()
		wantDeadline(t, err)
	})
}

// Many goroutines share one Client: every write is acknowledged at its own
// index and readable afterwards.
func TestClientConcurrentWriters(t *testing.T) {
	h := newClientHarness(t, 3)
	// Members given after construction, as a program that discovers them
	// later would.
	c := cluster.NewClient(h.System, grouptest.Group, nil)
	c.SetMembers(h.peers())
	clientLeaderID(t, c)
	h.requests()

	const writers, each = 16, 20
	indexes := make([][]uint64, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("w%02d-%02d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				resp, err := c.Write(ctx, kvstore.Put(key, []byte(key)))
				cancel()
				if err != nil {
					t.Errorf("write %s: %v", key, err)
					return
				}
				indexes[w] = append(indexes[w], resp.Index)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	at := map[uint64]bool{}
	for w := range writers {
		for _, idx := range indexes[w] {
			if at[idx] {
				t.Fatalf("two writes acknowledged at index %d", idx)
			}
			at[idx] = true
		}
	}
	seqs := map[uint64]bool{}
	for _, s := range h.requests() {
		if w, ok := s.req.(*actors.WriteRequest); ok {
			if w.Meta.ClientId != c.ClientID() || w.Meta.AckedBelow > w.Meta.Sequence {
				t.Fatalf("write with client %q sequence %d acked_below %d", w.Meta.ClientId, w.Meta.Sequence, w.Meta.AckedBelow)
			}
			seqs[w.Meta.Sequence] = true
		}
	}
	if len(seqs) != writers*each {
		t.Fatalf("%d distinct sequences for %d writes", len(seqs), writers*each)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.Read(ctx, kvstore.List("w", 0))
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	q, err := kvstore.DecodeQueryResult(resp.Result)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Entries) != writers*each {
		t.Fatalf("%d keys present, want %d", len(q.Entries), writers*each)
	}
	for _, e := range q.Entries {
		if !bytes.Equal(e.Key, e.Value) {
			t.Fatalf("%s = %q", e.Key, e.Value)
		}
	}
}

// The administrative calls reach the leader and change the group.
func TestClientAdministration(t *testing.T) {
	h := newClientHarness(t, 3)
	c := h.client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader := clientLeaderID(t, c)

	st, err := c.Status(ctx)
	if err != nil || st.State != "Leader" || st.Node.GetId() != leader || len(st.Members) != 3 {
		t.Fatalf("status: %v, %v; want the leader %s's, with 3 members", st, err, leader)
	}
	if _, err := c.Snapshot(ctx); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	tr, err := c.UpdateTimeouts(ctx, &actors.Timeouts{TrailingLogs: 512})
	if err != nil || tr.GetTimeouts().GetTrailingLogs() != 512 {
		t.Fatalf("update timeouts: %v, %v", tr, err)
	}

	// A node joins as a non-voter, is promoted, demoted and removed.
	h.Add("n4", nil)
	h.start("n4")
	steps := []struct {
		name string
		do   func() (*actors.MembershipResponse, error)
		want string // n4's suffrage afterwards, or "" when it is gone
	}{
		{"add non-voter", func() (*actors.MembershipResponse, error) { return c.AddNonvoter(ctx, "n4", h.Address("n4")) }, "NONVOTER"},
		{"add non-voter again", func() (*actors.MembershipResponse, error) { return c.AddNonvoter(ctx, "n4", h.Address("n4")) }, "NONVOTER"},
		{"promote", func() (*actors.MembershipResponse, error) { return c.Promote(ctx, "n4") }, "VOTER"},
		{"demote", func() (*actors.MembershipResponse, error) { return c.Demote(ctx, "n4") }, "NONVOTER"},
		{"remove", func() (*actors.MembershipResponse, error) { return c.Remove(ctx, "n4") }, ""},
	}
	for _, s := range steps {
		resp, err := s.do()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got := ""
		for _, m := range resp.Members {
			if m.Id == "n4" {
				got = m.Suffrage.String()
			}
		}
		if got != s.want {
			t.Fatalf("%s: n4 is %q in %v, want %q", s.name, got, resp.Members, s.want)
		}
	}
	ms, err := c.Members(ctx)
	if err != nil || len(ms.Members) != 3 {
		t.Fatalf("members: %v, %v; want the 3 voters", ms, err)
	}

	tl, err := c.TransferLeadership(ctx, "")
	if err != nil || tl.GetLeader().GetId() == "" || tl.GetLeader().GetId() == leader {
		t.Fatalf("transfer leadership from %s: %v, %v", leader, tl, err)
	}
	lr, err := c.Leader(ctx)
	if err != nil || !lr.IsLeader || lr.GetNode().GetId() == leader {
		t.Fatalf("leader after the transfer: %v, %v", lr, err)
	}
	// Writes go to the new leader; the Client learned it from the transfer.
	if r, _ := clientMustPut(t, c, "after-transfer", "x"); !r.Ok {
		t.Fatalf("write after transfer refused: %s", r.Error)
	}
}

// AddVoter of a node nothing serves (the kv sample's POST /members with a
// wrong address) leaves it a non-voter: the Client retries the leader's
// UNAVAILABLE until its context ends, the one-voter group keeps
// committing, and the node can be removed.
func TestClientAddVoterOfANodeNothingServesLeavesANonvoter(t *testing.T) {
	h := newClientHarness(t, 1)
	c := h.client()
	clientLeaderID(t, c)

	short, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err := c.AddVoter(short, "n9", h.Address("n9"))
	cancel()
	// The error is the Client's DEADLINE_EXCEEDED; the last attempt's
	// error it carries may be the leader's UNAVAILABLE, or an attempt cut
	// short by the end of the call.
	var ae *actors.Error
	if !errors.As(err, &ae) || ae.Code != actors.Code_DEADLINE_EXCEEDED {
		t.Fatalf("add voter n9 that nothing serves: %v, want DEADLINE_EXCEEDED after retrying the leader's UNAVAILABLE", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms, err := c.Members(ctx)
	if err != nil || suffrageOf(ms.Members, "n9") != "NONVOTER" {
		t.Fatalf("members after the add: %v, %v; want n9 a non-voter", ms, err)
	}
	if r, _ := clientMustPut(t, c, "after-add", "x"); !r.Ok {
		t.Fatalf("write after the add refused: %s", r.Error)
	}
	if _, err := c.Remove(ctx, "n9"); err != nil {
		t.Fatalf("remove n9: %v", err)
	}
}

// Regression (found by the integration soak, seeds 105884437, 105884441,
// 105884489 and 105884523): a write whose first attempt committed but whose
// reply was lost, and whose retry then reached the node after the retry's
// own deadline, came back as INVALID_ARGUMENT on meta.deadline_unix_nano, a
// code the Client does not retry. The caller was told the write was invalid
// although it had been applied. A late arrival is DEADLINE_EXCEEDED: the
// Client retries once more and gets the first result from the session table.
func TestRegressionLateRetryAfterAppliedWrite(t *testing.T) {
	h := newClientHarness(t, 3)
	c := h.client(cluster.WithAttemptTimeout(500 * time.Millisecond))
	if r, _ := clientMustPut(t, c, "k", "v0"); !r.Ok {
		t.Fatalf("put v0 refused: %s", r.Error)
	}
	leader := clientLeaderID(t, c)
	cmd := kvstore.CompareAndSet("k", []byte("v0"), []byte("v1"))
	var attempts atomic.Int32
	first := make(chan *actors.WriteResponse, 1)
	h.setHook(func(ctx actor.Context, door string, node *actor.PID, req actors.Request) bool {
		w, ok := req.(*actors.WriteRequest)
		if !ok || !bytes.Equal(w.Command, cmd) {
			return false
		}
		switch attempts.Add(1) {
		case 1: // applied, reply lost
			f := ctx.RequestFuture(node, w, 10*time.Second)
			go func() {
				res, _ := f.Result()
				wr, _ := res.(*actors.WriteResponse)
				first <- wr
			}()
			return true
		case 2: // held in transit until its deadline has passed
			sender, system := ctx.Sender(), ctx.ActorSystem()
			late := time.Until(time.Unix(0, w.GetMeta().GetDeadlineUnixNano())) + 50*time.Millisecond
			go func() {
				time.Sleep(late)
				system.Root.Send(node, &actor.MessageEnvelope{Message: w, Sender: sender})
			}()
			return true
		default:
			return false
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.Write(ctx, cmd)
	h.setHook(nil)
	if err != nil {
		t.Fatalf("write with a late retry: %v (leader %s)", err, leader)
	}
	var applied *actors.WriteResponse
	select {
	case applied = <-first:
	case <-ctx.Done():
		t.Fatal("the first attempt never came back")
	}
	if applied.Error.Err() != nil || resp.Index != applied.Index || !bytes.Equal(resp.Result, applied.Result) {
		t.Fatalf("Client got index %d (%v); the first attempt was applied at %d (%v)", resp.Index, resp.Error, applied.Index, applied.Error)
	}
	if n := attempts.Load(); n < 3 {
		t.Fatalf("%d attempts; the late one should have been retried", n)
	}
}

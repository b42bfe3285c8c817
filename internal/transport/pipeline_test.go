package transport

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/internal/wire"
)

// newPipeTransport starts a transport for a new node actor in sys; mutate
// adjusts its config first. Close runs at cleanup.
func newPipeTransport(t *testing.T, sys *actor.ActorSystem, id raft.ServerID, mutate func(*Config)) (*Transport, *actor.PID) {
	t.Helper()
	act := &tcNodeActor{}
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return act }))
	cfg := Config{System: sys, Group: tcGroup, LocalID: id, LocalAddr: wire.AddressOf(pid), RPCTimeout: 2 * time.Second, FailFastBackoff: time.Hour}
	if mutate != nil {
		mutate(&cfg)
	}
	trans := New(cfg)
	act.trans.Store(trans)
	t.Cleanup(func() {
		_ = trans.Close()
		sys.Root.Stop(pid)
	})
	return trans, pid
}

// serveAppends stands in for raft on trans: it takes every inbound
// AppendEntries in the order the transport hands them over, records it and
// answers it with LastLog = PrevLogEntry+1, so a reply names its request.
func serveAppends(t *testing.T, trans *Transport) (order func() []uint64) {
	var mu sync.Mutex
	var seen []uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case rpc := <-trans.Consumer():
				req, ok := rpc.Command.(*raft.AppendEntriesRequest)
				if !ok {
					rpc.Respond(nil, fmt.Errorf("unexpected %T", rpc.Command))
					continue
				}
				mu.Lock()
				seen = append(seen, req.PrevLogEntry)
				mu.Unlock()
				rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry + 1, Success: true}, nil)
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})
	return func() []uint64 {
		mu.Lock()
		defer mu.Unlock()
		return append([]uint64(nil), seen...)
	}
}

func appendReq(i uint64) *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("a")}, Term: 1, PrevLogEntry: i, LeaderCommitIndex: i}
}

// consume takes the next future from p, failing the test at the deadline.
func consume(t *testing.T, p raft.AppendPipeline) raft.AppendFuture {
	t.Helper()
	select {
	case f := <-p.Consumer():
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no future from the pipeline's consumer")
		return nil
	}
}

// returnsWithin runs fn and fails the test if it does not return in time.
func returnsWithin(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return", what)
	}
}

func TestPipelineDisabledByDepthOne(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	sys := testutil.NewSystem(t)
	a, _ := newPipeTransport(t, sys, "a", func(c *Config) { c.MaxAppendsInFlight = 1 })
	// raft compares the error by identity to fall back quietly.
	if _, err := a.AppendEntriesPipeline("b", "nonhost/b"); err != raft.ErrPipelineReplicationNotSupported {
		t.Fatalf("depth 1: want ErrPipelineReplicationNotSupported itself, got %v", err)
	}
}

// The peer answers every batch of RPCs in reverse: the consumer must still
// yield the futures in request order, each with its own reply.
func TestPipelineFuturesInRequestOrderWhenRepliesAreNot(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	sys := testutil.NewSystem(t)
	const n = 16
	var mu sync.Mutex
	var arrived []uint64
	type pending struct {
		sender *actor.PID
		req    *wire.AppendEntriesRequest
	}
	var held []pending
	peer := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		rpc, ok := ctx.Message().(*wire.RaftRPC)
		if !ok {
			return
		}
		req := rpc.GetAppendEntries()
		mu.Lock()
		arrived = append(arrived, req.GetPrevLogEntry())
		mu.Unlock()
		held = append(held, pending{ctx.Sender(), req})
		if len(held) < n {
			return
		}
		for i := len(held) - 1; i >= 0; i-- {
			ctx.Send(held[i].sender, &wire.RaftRPCReply{Body: &wire.RaftRPCReply_AppendEntries{AppendEntries: &wire.AppendEntriesResponse{
				Term: held[i].req.GetTerm(), LastLog: held[i].req.GetPrevLogEntry() + 1, Success: true,
			}}})
		}
		held = held[:0]
	}))
	t.Cleanup(func() { sys.Root.Stop(peer) })
	a, _ := newPipeTransport(t, sys, "a", func(c *Config) { c.MaxAppendsInFlight = n })
	p := openPipeline(t, a, "b", wire.AddressOf(peer))
	defer p.Close()

	const rounds = 3
	for r := range rounds {
		futures := make([]raft.AppendFuture, n)
		for i := range n {
			idx := uint64(r*n + i + 1)
			var err error
			if futures[i], err = p.AppendEntries(appendReq(idx), &raft.AppendEntriesResponse{}); err != nil {
				t.Fatalf("append %d: %v", idx, err)
			}
		}
		for i := range n {
			f := consume(t, p)
			if f != futures[i] {
				t.Fatalf("round %d: consumer yielded the future of %d at position %d", r, f.Request().PrevLogEntry, i)
			}
			if err := f.Error(); err != nil {
				t.Fatalf("future %d: %v", f.Request().PrevLogEntry, err)
			}
			if got, want := f.Response().LastLog, f.Request().PrevLogEntry+1; got != want || !f.Response().Success {
				t.Fatalf("future %d got the reply %+v, want LastLog %d", f.Request().PrevLogEntry, f.Response(), want)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, idx := range arrived {
		if idx != uint64(i+1) {
			t.Fatalf("peer received the RPCs in order %v", arrived)
		}
	}
}

// Pipelined RPCs cross the receiving transport (HandleRPC, its queue, the
// dispatcher) into raft in the order they were sent, with delays in both
// directions: requests keep their order even when an undelayed one follows
// a delayed one, replies may overtake each other and the consumer puts
// them back in order.
func TestPipelineReachesRaftInSendOrderUnderDelays(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	sys := testutil.NewSystem(t)
	faults := faults.NewNetwork(3)
	faults.Delay("b", "a", 0, 2*time.Millisecond)
	mutate := func(c *Config) { c.Faults, c.MaxAppendsInFlight = faults, 32 }
	a, _ := newPipeTransport(t, sys, "a", mutate)
	b, bPID := newPipeTransport(t, sys, "b", mutate)
	order := serveAppends(t, b)
	p := openPipeline(t, a, "b", wire.AddressOf(bPID))
	defer p.Close()

	const n = 300
	errc := make(chan error, 1)
	go func() {
		for i := range uint64(n) {
			// Stretches of delayed RPCs, then of undelayed ones, then jitter.
			switch i % 30 {
			case 0:
				faults.Delay("a", "b", 3*time.Millisecond, 0)
			case 10:
				faults.Delay("a", "b", 0, 0)
			case 20:
				faults.Delay("a", "b", 0, 2*time.Millisecond)
			}
			if _, err := p.AppendEntries(appendReq(i+1), &raft.AppendEntriesResponse{}); err != nil {
				errc <- fmt.Errorf("append %d: %w", i+1, err)
				return
			}
		}
		errc <- nil
	}()
	for i := range uint64(n) {
		f := consume(t, p)
		if got := f.Request().PrevLogEntry; got != i+1 {
			t.Fatalf("future %d at position %d", got, i+1)
		}
		if err := f.Error(); err != nil {
			t.Fatalf("future %d: %v", i+1, err)
		}
		if f.Response().LastLog != i+2 {
			t.Fatalf("future %d got the reply of %d", i+1, f.Response().LastLog-1)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	got := order()
	if len(got) != n {
		t.Fatalf("raft saw %d RPCs, want %d", len(got), n)
	}
	for i, idx := range got {
		if idx != uint64(i+1) {
			t.Fatalf("raft saw RPC %d at position %d", idx, i+1)
		}
	}
}

func TestPipelineDroppedRPCFailsItsFuture(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	sys := testutil.NewSystem(t)
	faults := faults.NewNetwork(1)
	mutate := func(c *Config) { c.Faults = faults }
	a, _ := newPipeTransport(t, sys, "a", mutate)
	b, bPID := newPipeTransport(t, sys, "b", mutate)
	order := serveAppends(t, b)
	p := openPipeline(t, a, "b", wire.AddressOf(bPID))
	defer p.Close()

	faults.Cut("a", "b")
	if _, err := p.AppendEntries(appendReq(1), &raft.AppendEntriesResponse{}); err != nil {
		t.Fatalf("append: %v", err)
	}
	f := consume(t, p)
	if err := f.Error(); !errors.Is(err, ErrMessageDropped) {
		t.Fatalf("dropped RPC: want ErrMessageDropped, got %v", err)
	}
	if f.Response().Success {
		t.Fatal("a dropped RPC must not look successful to raft")
	}
	faults.Heal()
	if _, err := p.AppendEntries(appendReq(2), &raft.AppendEntriesResponse{}); err != nil {
		t.Fatalf("append after heal: %v", err)
	}
	if f := consume(t, p); f.Error() != nil || !f.Response().Success {
		t.Fatalf("after heal: %+v, %v", f.Response(), f.Error())
	}
	if got := order(); !reflect.DeepEqual(got, []uint64{2}) {
		t.Fatalf("raft saw %v, want only the RPC sent after the heal", got)
	}
}

// silentPeer is a node actor that never answers; it counts what it got.
func silentPeer(t *testing.T, sys *actor.ActorSystem) (*actor.PID, *atomic.Int64) {
	var got atomic.Int64
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*wire.RaftRPC); ok {
			got.Add(1)
		}
	}))
	t.Cleanup(func() { sys.Root.Stop(pid) })
	return pid, &got
}

// appendAll sends entries 1..n into p without waiting for replies.
// openPipeline opens a's pipeline to id at target, or fails the test.
func openPipeline(t *testing.T, a *Transport, id raft.ServerID, target raft.ServerAddress) raft.AppendPipeline {
	t.Helper()
	p, err := a.AppendEntriesPipeline(id, target)
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	return p
}

func appendAll(t *testing.T, p raft.AppendPipeline, n int) []raft.AppendFuture {
	t.Helper()
	futures := make([]raft.AppendFuture, 0, n)
	for i := range uint64(n) {
		f, err := p.AppendEntries(appendReq(i+1), &raft.AppendEntriesResponse{})
		if err != nil {
			t.Fatalf("append %d: %v", i+1, err)
		}
		futures = append(futures, f)
	}
	return futures
}

func TestPipelineCloseFailsRPCsInFlight(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	sys := testutil.NewSystem(t)
	peer, _ := silentPeer(t, sys)
	a, _ := newPipeTransport(t, sys, "a", func(c *Config) { c.MaxAppendsInFlight = 8 })
	p := openPipeline(t, a, "b", wire.AddressOf(peer))
	futures := appendAll(t, p, 5)
	returnsWithin(t, "Close with RPCs in flight", func() { _ = p.Close() })
	for i, f := range futures {
		var err error
		returnsWithin(t, "a future's Error after Close", func() { err = f.Error() })
		if !errors.Is(err, raft.ErrPipelineShutdown) {
			t.Fatalf("future %d: want ErrPipelineShutdown, got %v", i+1, err)
		}
	}
	if _, err := p.AppendEntries(appendReq(6), &raft.AppendEntriesResponse{}); !errors.Is(err, raft.ErrPipelineShutdown) {
		t.Fatalf("append after Close: want ErrPipelineShutdown, got %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Nothing was answered, yet a closed pipeline does not count against
	// the peer: an RPC to it still goes out.
	if ok, _ := a.allow(wire.AddressOf(peer)); !ok {
		t.Fatal("closing the pipeline marked the peer down")
	}
}

// Close of the transport (raft.Shutdown) aborts every pipeline's waits.
func TestPipelineTransportCloseAbortsPipelines(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	sys := testutil.NewSystem(t)
	peer, _ := silentPeer(t, sys)
	a, _ := newPipeTransport(t, sys, "a", func(c *Config) { c.MaxAppendsInFlight = 3 })
	p := openPipeline(t, a, "b", wire.AddressOf(peer))
	futures := appendAll(t, p, 3)
	// The pipeline is full: this one waits for a slot until the close.
	blocked := make(chan error, 1)
	go func() {
		_, err := p.AppendEntries(appendReq(4), &raft.AppendEntriesResponse{})
		blocked <- err
	}()
	returnsWithin(t, "transport Close", func() { _ = a.Close() })
	select {
	case err := <-blocked:
		if !errors.Is(err, ErrTransportClosed) {
			t.Fatalf("blocked append: want ErrTransportClosed, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("append waiting for a slot not released by the transport's Close")
	}
	for i, f := range futures {
		var err error
		returnsWithin(t, "a future's Error after the transport's Close", func() { err = f.Error() })
		if !errors.Is(err, ErrTransportClosed) {
			t.Fatalf("future %d: want ErrTransportClosed, got %v", i+1, err)
		}
	}
	returnsWithin(t, "pipeline Close after the transport's", func() { _ = p.Close() })
	if _, err := a.AppendEntriesPipeline("b", wire.AddressOf(peer)); !errors.Is(err, ErrTransportClosed) {
		t.Fatalf("new pipeline on a closed transport: %v", err)
	}
}

func TestPipelineBoundsRPCsInFlight(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	sys := testutil.NewSystem(t)
	peer, got := silentPeer(t, sys)
	const depth = 4
	a, _ := newPipeTransport(t, sys, "a", func(c *Config) {
		c.MaxAppendsInFlight = depth
		c.RPCTimeout = time.Second
	})
	p := openPipeline(t, a, "b", wire.AddressOf(peer))
	defer p.Close()
	waiting := make(chan struct{}, 1)
	p.(*appendPipeline).full = func() { waiting <- struct{}{} }
	appendAll(t, p, depth)
	extra := make(chan error, 1)
	go func() {
		_, err := p.AppendEntries(appendReq(depth+1), &raft.AppendEntriesResponse{})
		extra <- err
	}()
	// Every future times out, but none frees a slot before raft took it:
	// the extra append is made and waits for a slot, and its RPC is not
	// sent meanwhile.
	testutil.Eventually(t, "the first RPCs at the peer", func() bool { return got.Load() == depth })
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the append past the bound never waited for a slot")
	}
	if n := got.Load(); n != depth {
		t.Fatalf("%d RPCs sent with %d allowed in flight", n, depth)
	}
	f := consume(t, p)
	if err := f.Error(); !errors.Is(err, ErrRPCTimeout) {
		t.Fatalf("unanswered RPC: want ErrRPCTimeout, got %v", err)
	}
	select {
	case err := <-extra:
		if err != nil {
			t.Fatalf("append after a slot freed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("append not admitted after raft took a future")
	}
	testutil.Eventually(t, "the next RPC at the peer", func() bool { return got.Load() == depth+1 })
}

// raft stops reading a pipeline as soon as one reply fails and may send
// into it once more before it notices; that send must not hang.
func TestPipelineAbandonedByRaftDoesNotHang(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	sys := testutil.NewSystem(t)
	mutate := func(c *Config) {
		c.MaxAppendsInFlight = 2
		c.RPCTimeout = 100 * time.Millisecond
	}
	a, _ := newPipeTransport(t, sys, "a", mutate)
	b, bPID := newPipeTransport(t, sys, "b", mutate)
	serveAppends(t, b)
	p := openPipeline(t, a, "b", wire.AddressOf(bPID))
	defer p.Close()
	var last error
	returnsWithin(t, "appends nobody consumes", func() {
		for i := range uint64(10) {
			if _, last = p.AppendEntries(appendReq(i+1), &raft.AppendEntriesResponse{}); last != nil {
				return
			}
		}
	})
	if !errors.Is(last, errPipelineStalled) {
		t.Fatalf("want errPipelineStalled once raft stopped consuming, got %v", last)
	}
	returnsWithin(t, "Close of an abandoned pipeline", func() { _ = p.Close() })
}

func TestPipelineFailsFastOnADeadPeer(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	sys := testutil.NewSystem(t)
	a, _ := newPipeTransport(t, sys, "a", nil)
	missing := wire.AddressOf(actor.NewPID(sys.Address(), "no-such-node"))
	p := openPipeline(t, a, "x", missing)
	defer p.Close()
	for i := range uint64(DefaultFailFastThreshold) {
		if _, err := p.AppendEntries(appendReq(i+1), &raft.AppendEntriesResponse{}); err != nil {
			t.Fatalf("append %d: %v", i+1, err)
		}
		if err := consume(t, p).Error(); !errors.Is(err, ErrDeadLetter) {
			t.Fatalf("append %d: want dead letter, got %v", i+1, err)
		}
	}
	if _, err := p.AppendEntries(appendReq(9), &raft.AppendEntriesResponse{}); !errors.Is(err, ErrPeerDown) {
		t.Fatalf("after %d failures: want fail fast, got %v", DefaultFailFastThreshold, err)
	}
}

// Pipelined RPCs carry the group and the cluster-key MAC like any other:
// a sender with the wrong key or group gets every future refused.
func TestPipelineEnforcesClusterKeyAndGroup(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	sys := testutil.NewSystem(t)
	key := []byte("0123456789abcdef-cluster-key")
	b, bPID := newPipeTransport(t, sys, "b", func(c *Config) { c.ClusterKey = key })
	order := serveAppends(t, b)
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"same key", func(c *Config) { c.ClusterKey = key }, ""},
		{"no key", nil, ErrRPCAuth.Error()},
		{"other key", func(c *Config) { c.ClusterKey = []byte("fedcba9876543210-other-key") }, ErrRPCAuth.Error()},
		{"other group", func(c *Config) { c.ClusterKey, c.Group = key, "other-group" }, "refused by group"},
	}
	accepted := 0
	for i, tc := range cases {
		a, _ := newPipeTransport(t, sys, raft.ServerID(fmt.Sprintf("a%d", i)), tc.mutate)
		p, err := a.AppendEntriesPipeline("b", wire.AddressOf(bPID))
		if err != nil {
			t.Fatalf("%s: pipeline: %v", tc.name, err)
		}
		if _, err := p.AppendEntries(appendReq(uint64(i+1)), &raft.AppendEntriesResponse{}); err != nil {
			t.Fatalf("%s: append: %v", tc.name, err)
		}
		f := consume(t, p)
		err = f.Error()
		switch {
		case tc.want == "" && (err != nil || !f.Response().Success):
			t.Fatalf("%s: %+v, %v", tc.name, f.Response(), err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Fatalf("%s: want an error with %q, got %v", tc.name, tc.want, err)
		}
		if tc.want == "" {
			accepted++
		}
		_ = p.Close()
	}
	if got := order(); len(got) != accepted {
		t.Fatalf("raft saw %d RPCs, want only the %d properly signed", len(got), accepted)
	}
}

// pipelineLog watches raft's log for the pipeline starting and stopping,
// the only outside sign that raft replicates through the pipeline.
type pipelineLog struct {
	started, aborted atomic.Int64
}

func (l *pipelineLog) Write(b []byte) (int, error) {
	s := string(b)
	switch {
	case strings.Contains(s, "pipelining replication"):
		l.started.Add(1)
	case strings.Contains(s, "aborting pipeline replication"):
		l.aborted.Add(1)
	}
	return len(b), nil
}

func (l *pipelineLog) tune(conf *raft.Config) {
	conf.Logger = hclog.New(&hclog.LoggerOptions{Output: l, Level: hclog.Info})
}

// applyMany applies n commands through the leader without waiting for each,
// as concurrent clients would, so the pipeline has many RPCs in flight.
func (c *tcCluster) applyMany(prefix string, n int) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	pending := make([][]byte, n)
	for i := range n {
		pending[i] = []byte(fmt.Sprintf("%s-%04d", prefix, i))
	}
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			c.t.Fatalf("%d of %d commands not applied", len(pending), n)
		}
		l := c.waitLeader()
		futures := make([]raft.ApplyFuture, len(pending))
		for i, cmd := range pending {
			futures[i] = l.raft.Apply(cmd, 5*time.Second)
		}
		var failed [][]byte
		for i, f := range futures {
			if f.Error() != nil {
				failed = append(failed, pending[i])
			}
		}
		// A command whose future failed may still have committed; the
		// test only compares the nodes with each other, not with a list.
		pending = failed
	}
}

func (c *tcCluster) waitConverged() {
	c.t.Helper()
	testutil.Eventually(c.t, "all nodes applying the same commands", func() bool {
		want, _ := c.nodes[0].fsm.state()
		for _, n := range c.nodes[1:] {
			if got, _ := n.fsm.state(); !reflect.DeepEqual(got, want) {
				return false
			}
		}
		return len(want) > 0
	})
}

func TestPipelineClusterReplicatesAndConverges(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	c := newTCCluster(t, 0)
	var plog pipelineLog
	c.start(3, plog.tune)
	c.applyMany("steady", 2000)
	c.waitConverged()
	if plog.started.Load() == 0 {
		t.Fatal("raft never replicated through the pipeline")
	}
	if n := c.nodes[0].fsm.count(); n < 2000 {
		t.Fatalf("%d commands applied, want at least 2000", n)
	}
}

// Lost and jittered RPCs break the pipeline; raft falls back to one RPC
// at a time, pipelines again once the follower caught up, and nothing is
// lost or applied twice out of order.
func TestPipelineClusterRecoversFromDroppedRPCs(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	c := newTCCluster(t, 0)
	var plog pipelineLog
	c.start(3, plog.tune)
	c.applyMany("before", 200)
	testutil.Eventually(t, "pipelined replication", func() bool { return plog.started.Load() > 0 })

	c.faults.Delay(faults.AnyNode, faults.AnyNode, 0, 3*time.Millisecond)
	c.faults.Drop(faults.AnyNode, faults.AnyNode, 10)
	// Losses are random: write until one broke a pipeline.
	faulty := 0
	deadline := time.Now().Add(30 * time.Second)
	for plog.aborted.Load() == 0 || faulty < 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("no pipeline broken by the lost RPCs after %d writes", faulty)
		}
		c.applyMany(fmt.Sprintf("faulty%06d", faulty), 200)
		faulty += 200
	}
	c.faults.Heal()
	c.applyMany("after", 500)
	c.waitConverged()
	// Each follower's pipeline logs its start and its end, so with one
	// leader and two followers caught up, two are running.
	testutil.Eventually(t, "both followers pipelined again after the heal", func() bool {
		return plog.started.Load()-plog.aborted.Load() == 2
	})
	state, _ := c.nodes[0].fsm.state()
	seen := make(map[string]bool, len(state))
	for _, cmd := range state {
		seen[string(cmd)] = true
	}
	want := map[string]int{"before": 200, "after": 500}
	for round := 0; round < faulty; round += 200 {
		want[fmt.Sprintf("faulty%06d", round)] = 200
	}
	for prefix, n := range want {
		for i := range n {
			if cmd := fmt.Sprintf("%s-%04d", prefix, i); !seen[cmd] {
				t.Fatalf("command %s acknowledged but not applied", cmd)
			}
		}
	}
}

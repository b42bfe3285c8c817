package transport

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/internal/wire"
)

// gateActor is a node actor that can go silent: while its transport is
// unset it swallows every RPC, as a peer behind a blackhole does (nothing
// answers, nothing is refused). seen counts the RPCs it got either way.
type gateActor struct {
	trans atomic.Pointer[Transport]
	seen  atomic.Int64
}

func (a *gateActor) Receive(ctx actor.Context) {
	if rpc, ok := ctx.Message().(*wire.RaftRPC); ok {
		a.seen.Add(1)
		if t := a.trans.Load(); t != nil {
			t.HandleRPC(ctx.Sender(), rpc)
		}
	}
}

// fakeClock is the fail-fast clock of a transport under test: it moves
// only when the test says.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// gatePair is a transport a calling b, whose node actor is a gateActor,
// with a's fail-fast clock under the test's control.
type gatePair struct {
	a, b   *Transport
	bAct   *gateActor
	target raft.ServerAddress
	clock  *fakeClock
}

func newGatePair(t *testing.T, mutate func(*Config)) *gatePair {
	sys := testutil.QuietSystem()
	bAct := &gateActor{}
	aPID := sys.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	bPID := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return bAct }))
	cfg := Config{System: sys, Group: tcGroup, LocalID: "a", LocalAddr: wire.AddressOf(aPID), RPCTimeout: time.Minute}
	if mutate != nil {
		mutate(&cfg)
	}
	p := &gatePair{
		a:      New(cfg),
		b:      New(Config{System: sys, Group: tcGroup, LocalID: "b", LocalAddr: wire.AddressOf(bPID)}),
		bAct:   bAct,
		target: wire.AddressOf(bPID),
		clock:  &fakeClock{now: time.Unix(1_000_000, 0)},
	}
	p.a.now = p.clock.Now
	t.Cleanup(func() {
		_ = p.a.Close()
		_ = p.b.Close()
		sys.Shutdown()
	})
	return p
}

// ask sends b one RPC its transport answers by itself (a link query), so
// no Raft is needed behind it.
func (p *gatePair) ask(timeout time.Duration) error {
	_, err := p.a.Call("b", p.target, &wire.RaftRPC{Body: &wire.RaftRPC_LinkQuery{LinkQuery: &wire.LinkQuery{}}}, timeout)
	return err
}

// markDown makes b unreachable and fails RPCs to it until a fails fast.
func (p *gatePair) markDown(t *testing.T) {
	t.Helper()
	p.bAct.trans.Store(nil)
	for i := range DefaultFailFastThreshold {
		if err := p.ask(20 * time.Millisecond); !errors.Is(err, ErrRPCTimeout) {
			t.Fatalf("attempt %d to a silent peer: want a timeout, got %v", i, err)
		}
	}
	// The fail-fast answer says why the peer is down: its last failure.
	if err := p.ask(time.Minute); !errors.Is(err, ErrPeerDown) || !errors.Is(err, ErrRPCTimeout) {
		t.Fatalf("after %d failures: want fail fast for a timeout, got %v", DefaultFailFastThreshold, err)
	}
}

// A peer that answers again is used again within half a heartbeat
// timeout of the node, however long FailFastBackoff is: raft retries a
// failed heartbeat at most half a heartbeat timeout later, and a follower
// the leader cannot reach for longer than that starts an election.
func TestFailFastBackoffIsBoundedByTheHeartbeat(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	const heartbeat = 100 * time.Millisecond
	cases := []struct {
		name string
		cfg  func(*Config)
		set  func(*Transport)
	}{
		{"heartbeat given to New", func(c *Config) { c.Heartbeat = heartbeat }, nil},
		{"heartbeat changed at run time", func(c *Config) { c.Heartbeat = time.Second }, func(tr *Transport) { tr.SetHeartbeat(heartbeat) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newGatePair(t, c.cfg)
			if c.set != nil {
				c.set(p.a)
			}
			p.markDown(t)
			p.bAct.trans.Store(p.b)
			p.clock.Advance(heartbeat / 2)
			if err := p.ask(time.Minute); err != nil {
				t.Fatalf("half a heartbeat after the peer came back: %v (FailFastBackoff is %v)", err, DefaultFailFastBackoff)
			}
			// And it is healthy again: no probe rationing any more.
			for range 3 {
				if err := p.ask(time.Minute); err != nil {
					t.Fatalf("after the probe succeeded: %v", err)
				}
			}
		})
	}
}

// Without a heartbeat the configured backoff holds as it is.
func TestFailFastBackoffWithoutAHeartbeat(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	p := newGatePair(t, nil)
	p.markDown(t)
	p.bAct.trans.Store(p.b)
	p.clock.Advance(DefaultFailFastBackoff / 2)
	if err := p.ask(time.Minute); !errors.Is(err, ErrPeerDown) {
		t.Fatalf("within the backoff: want fail fast, got %v", err)
	}
	p.clock.Advance(DefaultFailFastBackoff / 2)
	if err := p.ask(time.Minute); err != nil {
		t.Fatalf("after the backoff: %v", err)
	}
}

// A probe lost in a blackhole waits its whole RPC timeout; meanwhile the
// peer may be back. The next backoff lets another probe through, so the
// lost one does not keep the peer unused until it times out.
func TestFailFastLostProbeDoesNotHoldBackAHealedPeer(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	const heartbeat = 100 * time.Millisecond
	p := newGatePair(t, func(c *Config) { c.Heartbeat = heartbeat })
	p.markDown(t)

	seen := p.bAct.seen.Load()
	p.clock.Advance(heartbeat / 2)
	lost := make(chan error, 1)
	go func() { lost <- p.ask(time.Minute) }()
	testutil.Eventually(t, "the probe reached the silent peer", func() bool { return p.bAct.seen.Load() > seen })

	p.bAct.trans.Store(p.b)
	if err := p.ask(time.Minute); !errors.Is(err, ErrPeerDown) {
		t.Fatalf("with a probe just sent: want fail fast, got %v", err)
	}
	p.clock.Advance(heartbeat / 2)
	if err := p.ask(time.Minute); err != nil {
		t.Fatalf("a backoff after the lost probe, with the peer back: %v", err)
	}
	_ = p.a.Close()
	if err := <-lost; !errors.Is(err, ErrTransportClosed) {
		t.Fatalf("lost probe after Close: want transport closed, got %v", err)
	}
}

// A heartbeat the receiver's heartbeat handler has taken but not answered
// when the receiver closes (raft drops heartbeats once it is shutting
// down) is answered with ErrTransportClosed, so the sender does not wait
// its whole RPC timeout for it.
func TestCloseAnswersAHeartbeatItHolds(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	p := newGatePair(t, func(c *Config) { c.RPCTimeout = 3 * time.Second })
	p.bAct.trans.Store(p.b)
	taken := make(chan struct{}, 1)
	p.b.SetHeartbeatHandler(func(raft.RPC) { taken <- struct{}{} })
	errc := make(chan error, 1)
	go func() {
		hb := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("a"), Addr: []byte(p.a.LocalAddr())}, Term: 3}
		errc <- p.a.AppendEntries("b", p.target, hb, &raft.AppendEntriesResponse{})
	}()
	<-taken
	_ = p.b.Close()
	if err := <-errc; !errors.Is(err, ErrTransportClosed) {
		t.Fatalf("heartbeat held by a closing transport: want its ErrTransportClosed, got %v", err)
	}
}

// RPCs waiting in the receiver's inbound queue, pipelined appends among
// them, are answered with ErrTransportClosed when it closes.
func TestCloseAnswersQueuedRPCs(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	p := newGatePair(t, func(c *Config) { c.RPCTimeout = 3 * time.Second })
	p.bAct.trans.Store(p.b) // nobody reads b's consumer: everything queues
	pipe, err := p.a.AppendEntriesPipeline("b", p.target)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pipe.Close() }()
	seen := p.bAct.seen.Load()
	for i := range uint64(2) {
		if _, err := pipe.AppendEntries(appendReq(i+1), &raft.AppendEntriesResponse{}); err != nil {
			t.Fatal(err)
		}
	}
	vote := make(chan error, 1)
	go func() {
		vote <- p.a.RequestVote("b", p.target, &raft.RequestVoteRequest{Term: 1}, &raft.RequestVoteResponse{})
	}()
	testutil.Eventually(t, "three RPCs queued at b", func() bool { return p.bAct.seen.Load() >= seen+3 })
	_ = p.b.Close()
	for i := range 2 {
		if err := consume(t, pipe).Error(); !errors.Is(err, ErrTransportClosed) {
			t.Fatalf("pipelined append %d: want ErrTransportClosed, got %v", i, err)
		}
	}
	if err := <-vote; !errors.Is(err, ErrTransportClosed) {
		t.Fatalf("queued vote: want ErrTransportClosed, got %v", err)
	}
}

// hashicorp/raft's TestRaft_PreVoteAvoidElectionWithPartition over this
// transport: a partitioned follower of a pre-vote cluster with 50ms
// timeouts must not raise the term, and rejoins as a follower once healed.
// A healed peer stuck behind a 500ms fail-fast backoff stays a candidate
// long past hashicorp's 3 propagate timeouts; with
// PROTORAFT_RAFT_TIMING=1 the test waits exactly as hashicorp's does
// (sleeps, then asserts), otherwise it waits until the follower is back.
func TestTransportPreVoteAvoidsElectionWithPartition(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	timing := os.Getenv("PROTORAFT_RAFT_TIMING") != ""
	const heartbeat = 50 * time.Millisecond
	propagate := 2*heartbeat + 5*time.Millisecond // hashicorp's propagateTimeout
	c := newTCCluster(t, 0)
	c.start(5, func(conf *raft.Config) {
		conf.HeartbeatTimeout = heartbeat
		conf.ElectionTimeout = heartbeat
		conf.LeaderLeaseTimeout = heartbeat
		conf.CommitTimeout = 5 * time.Millisecond
		conf.PreVoteDisabled = false
	})
	c.waitLeader()
	c.apply([]byte("before"))
	c.waitApplied(1)
	leader := c.waitLeader()
	term := leader.raft.CurrentTerm()
	followers := func() (n int) {
		for _, x := range c.nodes {
			if x.raft.State() == raft.Follower {
				n++
			}
		}
		return n
	}
	var victim *tcNode
	for _, x := range c.nodes {
		if x != leader {
			victim = x
			break
		}
	}

	c.faults.Isolate(victim.id)
	testutil.Eventually(t, "the partitioned follower leaves the follower state", func() bool { return victim.raft.State() != raft.Follower })
	if timing {
		time.Sleep(10 * propagate)
	}
	if l := c.leader(victim.id); l != leader || l.raft.CurrentTerm() != term {
		t.Fatalf("the majority's leader changed during the partition (term %d before)", term)
	}

	c.faults.Heal()
	if timing {
		time.Sleep(3 * propagate)
		if got := followers(); got != 4 {
			t.Fatalf("%v after the heal: %d followers, want 4; the healed one is %v", 3*propagate, got, victim.raft.State())
		}
	} else {
		healed := time.Now()
		testutil.Eventually(t, "four followers again", func() bool { return followers() == 4 })
		t.Logf("four followers %v after the heal", time.Since(healed).Round(time.Millisecond))
	}
	if l := c.leader(); l != leader || l.raft.CurrentTerm() != term {
		t.Fatalf("the healed follower disrupted the leader: term %d before", term)
	}
}

package raftactor_test

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// Concurrent linearizable reads share leadership confirmations (batched
// ReadIndex). Sharing must never hand a read an index noted before it
// arrived: every read must see every write acknowledged before it was sent.
func TestConcurrentLinearizableReadsSeeAcknowledgedWrites(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	c.Put("k", "0")

	var acked atomic.Int64 // the highest value acknowledged so far
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var reads atomic.Int64
	for range 16 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				before := acked.Load()
				res, err := c.Ask(leader, &actors.ReadRequest{Meta: grouptest.Meta(5 * time.Second), Query: kvstore.Get("k"), Consistency: actors.Consistency_LINEARIZABLE})
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				rr := res.(*actors.ReadResponse)
				switch actors.CodeOf(rr.Error) {
				case actors.Code_OK:
				case actors.Code_NOT_LEADER, actors.Code_UNAVAILABLE, actors.Code_DEADLINE_EXCEEDED:
					// An election on a loaded machine: no answer, nothing to check.
					continue
				default:
					t.Errorf("read: %v", rr.Error)
					return
				}
				qr, err := kvstore.DecodeQueryResult(rr.Result)
				if err != nil {
					t.Errorf("decode: %v", err)
					return
				}
				got, _ := strconv.ParseInt(string(qr.Value), 10, 64)
				if got < before {
					t.Errorf("read sent after write %d was acknowledged returned %d", before, got)
					return
				}
				reads.Add(1)
			}
		})
	}
	for i := int64(1); i <= 200 && !t.Failed(); i++ {
		c.Put("k", strconv.FormatInt(i, 10))
		acked.Store(i)
	}
	close(stop)
	readers.Wait()
	if reads.Load() == 0 {
		t.Fatal("no read completed")
	}
}

func TestFollowerServesLinearizableReadWithLeadersReadIndex(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	for i := range 5 {
		value := fmt.Sprint("v", i)
		wr := c.Put("k", value)
		// Straight after the acknowledgement, every follower's
		// linearizable read sees the write, though it may not have applied
		// it when the read arrived.
		for _, id := range c.IDs() {
			if id == leader {
				continue
			}
			rr, qr := c.Get(id, "k", actors.Consistency_LINEARIZABLE)
			if rr.Error.Err() != nil {
				t.Fatalf("linearizable read on follower %s: %v", id, rr.Error)
			}
			if string(qr.Value) != value || rr.AppliedIndex < wr.Index {
				t.Fatalf("follower %s read k=%q reflecting %d, after %q was acknowledged at %d", id, qr.Value, rr.AppliedIndex, value, wr.Index)
			}
		}
	}
}

func TestFollowerCutOffFromLeaderServesNoLinearizableRead(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	c.Put("k", "old")
	follower := otherThan(c, leader)
	c.WaitValue(follower, "k", "old")
	c.Faults.Cut(raft.ServerID(follower), raft.ServerID(leader))
	c.Faults.Cut(raft.ServerID(leader), raft.ServerID(follower))
	t.Cleanup(c.Faults.Heal)
	// The leader keeps its quorum through the third node and commits.
	c.Put("k", "new")
	// The follower still believes in the leader for a while, but cannot
	// reach it for a read index: it never answers with the old value.
	for range 3 {
		rr, qr := c.Get(follower, "k", actors.Consistency_LINEARIZABLE)
		if rr.Error.Err() == nil {
			t.Fatalf("cut-off follower served a linearizable read: k=%q", qr.Value)
		}
		switch actors.CodeOf(rr.Error) {
		case actors.Code_UNAVAILABLE, actors.Code_NOT_LEADER, actors.Code_DEADLINE_EXCEEDED:
		default:
			t.Fatalf("cut-off follower: %v", rr.Error)
		}
	}
	c.Faults.Heal()
	c.WaitValue(follower, "k", "new")
	// Until its transport probes the leader again (within half a
	// heartbeat timeout) the follower may still refuse, UNAVAILABLE; it
	// must then serve the new value, never the old one.
	testutil.Eventually(t, "a linearizable read from the healed follower", func() bool {
		rr, qr := c.Get(follower, "k", actors.Consistency_LINEARIZABLE)
		if rr.Error.Err() != nil {
			if actors.CodeOf(rr.Error) != actors.Code_UNAVAILABLE {
				t.Fatalf("after healing: %v", rr.Error)
			}
			return false
		}
		if string(qr.Value) != "new" {
			t.Fatalf("after healing: k=%q, want new", qr.Value)
		}
		return true
	})
}

func TestLeaderOnlyReadsRefusesLinearizableReadsOnFollowers(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	first := c.WaitLeader()
	// Both followers restart with the option; whoever leads afterwards,
	// one of them follows.
	var restarted []string
	for _, id := range c.IDs() {
		if id != first {
			c.Stop(id)
			c.Node(id).Config.LeaderOnlyReads = true
			c.Start(id)
			restarted = append(restarted, id)
		}
	}
	leader := c.WaitLeader()
	follower := restarted[0]
	if follower == leader {
		follower = restarted[1]
	}
	rr, _ := c.Get(follower, "k", actors.Consistency_LINEARIZABLE)
	assertNotLeader(t, rr.Error, leader, c.Address(leader))
}

// Reads served together still end by their own deadlines: a read due soon
// is answered DEADLINE_EXCEEDED while the state machine cannot catch up,
// and a read of the same batch due later waits on and is served once it
// can.
func TestEachReadOfABatchEndsByItsOwnDeadline(t *testing.T) {
	c := grouptest.New(t, 0, nil)
	var peers []raftactor.Voter
	for _, id := range []string{"n1", "n2", "n3"} {
		peers = append(peers, raftactor.Voter{ID: id, Address: c.Address(id)})
	}
	gates := map[string]*applyGate{}
	for _, p := range peers {
		g := newApplyGate()
		gates[p.ID] = g
		c.Add(p.ID, peers).Config.NewStateMachine = func() raftactor.StateMachine { return &gatedStore{Store: kvstore.New(), gate: g} }
	}
	for _, p := range peers {
		c.Start(p.ID)
	}
	leader := c.WaitLeader()
	c.Put("k", "old")
	follower := otherThan(c, leader)
	c.WaitValue(follower, "k", "old")
	// Registered after the cluster's own cleanup, so it runs before it: a
	// held gate would keep the follower from stopping.
	t.Cleanup(gates[follower].release)
	gates[follower].hold()
	c.Put("k", "new")

	ask := func(deadline, wait time.Duration) *actor.Future {
		return c.System.Root.RequestFuture(c.Node(follower).PID,
			&actors.ReadRequest{Meta: grouptest.Meta(deadline), Query: kvstore.Get("k"), Consistency: actors.Consistency_LINEARIZABLE}, wait)
	}
	soon, later := ask(300*time.Millisecond, 5*time.Second), ask(time.Minute, time.Minute)
	res, err := soon.Result()
	if err != nil {
		t.Fatalf("the read due soon got no answer by its deadline: %v", err)
	}
	if code := actors.CodeOf(res.(*actors.ReadResponse).Error); code != actors.Code_DEADLINE_EXCEEDED {
		t.Fatalf("the read due soon: %v, want DEADLINE_EXCEEDED", res)
	}
	gates[follower].release()
	res, err = later.Result()
	if err != nil {
		t.Fatal(err)
	}
	rr := res.(*actors.ReadResponse)
	if rr.Error.Err() != nil {
		t.Fatalf("the read due later: %v", rr.Error)
	}
	if qr, err := kvstore.DecodeQueryResult(rr.Result); err != nil || string(qr.Value) != "new" {
		t.Fatalf("the read due later: %v, %v; want k=new", qr, err)
	}
}

// gatedStore is a kvstore whose Apply waits while its gate is held: a
// state machine that cannot keep up.
type gatedStore struct {
	*kvstore.Store
	gate *applyGate
}

func (s *gatedStore) Apply(index uint64, cmd []byte) []byte {
	s.gate.wait()
	return s.Store.Apply(index, cmd)
}

type applyGate struct {
	mu   sync.Mutex
	open chan struct{}
}

func newApplyGate() *applyGate {
	g := &applyGate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *applyGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default:
	}
}

func (g *applyGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func (g *applyGate) wait() {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	<-ch
}

// A batch of queries waits once and answers each query in order, on the
// leader and on a follower, at every consistency; a query the state
// machine refuses fails alone.
func TestReadBatchAnswersEachQueryInOrder(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	c.Put("a", "1")
	c.Put("b", "2")
	follower := otherThan(c, leader)
	c.WaitValue(follower, "b", "2")
	queries := [][]byte{kvstore.Get("b"), kvstore.Get("missing"), {0xff, 0xff}, kvstore.Get("a")}
	for _, tc := range []struct {
		node        string
		consistency actors.Consistency
	}{
		{leader, actors.Consistency_LINEARIZABLE}, {leader, actors.Consistency_LEASE},
		{follower, actors.Consistency_LINEARIZABLE}, {follower, actors.Consistency_STALE},
	} {
		rr := c.MustAsk(tc.node, &actors.ReadRequest{Meta: grouptest.Meta(5 * time.Second), Queries: queries, Consistency: tc.consistency}).(*actors.ReadResponse)
		if rr.Error.Err() != nil {
			t.Fatalf("%s %v: %v", tc.node, tc.consistency, rr.Error)
		}
		if len(rr.Results) != len(queries) {
			t.Fatalf("%s %v: %d results for %d queries", tc.node, tc.consistency, len(rr.Results), len(queries))
		}
		for i, want := range []string{"2", "", "refused", "1"} {
			r := rr.Results[i]
			if want == "refused" {
				if actors.CodeOf(r.Error) != actors.Code_INVALID_ARGUMENT || r.Error.Field != "queries" {
					t.Fatalf("%s %v: query %d: %v, want INVALID_ARGUMENT on queries", tc.node, tc.consistency, i, r.Error)
				}
				continue
			}
			if r.Error.Err() != nil {
				t.Fatalf("%s %v: query %d: %v", tc.node, tc.consistency, i, r.Error)
			}
			qr, err := kvstore.DecodeQueryResult(r.Result)
			if err != nil || string(qr.Value) != want || qr.Found != (want != "") {
				t.Fatalf("%s %v: query %d: %v, %v; want %q", tc.node, tc.consistency, i, qr, err, want)
			}
		}
	}
}

// Batches are checked before anything waits: a query and a batch at once,
// too many queries, or one query too large are refused naming the field.
func TestReadBatchRefusedWhenMalformed(t *testing.T) {
	c := grouptest.New(t, 1, nil)
	leader := c.WaitLeader()
	big := make([]byte, 2<<20)
	many := make([][]byte, actors.MaxReadBatch+1)
	for i := range many {
		many[i] = kvstore.Get("k")
	}
	for _, tc := range []struct {
		req   *actors.ReadRequest
		field string
	}{
		{&actors.ReadRequest{Query: kvstore.Get("k"), Queries: [][]byte{kvstore.Get("k")}}, "query"},
		{&actors.ReadRequest{Queries: many}, "queries"},
		{&actors.ReadRequest{Queries: [][]byte{kvstore.Get("k"), big}}, "queries"},
	} {
		tc.req.Meta, tc.req.Consistency = grouptest.Meta(5*time.Second), actors.Consistency_LINEARIZABLE
		rr := c.MustAsk(leader, tc.req).(*actors.ReadResponse)
		if actors.CodeOf(rr.Error) != actors.Code_INVALID_ARGUMENT || rr.Error.Field != tc.field {
			t.Fatalf("%d queries: %v, want INVALID_ARGUMENT on %s", len(tc.req.Queries), rr.Error, tc.field)
		}
	}
}

// The leader's status counts the confirmations its linearizable reads
// waited for: every read request waited, a round served one or more of
// them, and each round probed at least one voter.
func TestStatusCountsReadConfirmations(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	c.Put("k", "v")
	const reads = 20
	for range reads {
		res, err := c.Ask(leader, &actors.ReadRequest{Meta: grouptest.Meta(5 * time.Second), Query: kvstore.Get("k"), Consistency: actors.Consistency_LINEARIZABLE})
		if err != nil {
			t.Fatal(err)
		}
		if e := res.(*actors.ReadResponse).Error; e.Err() != nil {
			t.Fatalf("read: %v", e)
		}
	}
	res, err := c.Ask(leader, &actors.StatusRequest{Meta: grouptest.Meta(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	rc := res.(*actors.StatusResponse).GetReadConfirmations()
	if rc.GetWaits() < reads || rc.GetRounds() == 0 || rc.GetRounds() > rc.GetWaits() ||
		rc.GetProbes() < rc.GetRounds() || rc.GetRoundNanos() == 0 {
		t.Fatalf("read confirmations after %d reads: %v", reads, rc)
	}
}

package raftactor_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

func TestOneLeaderReplicatesToAll(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()

	// Every node names the same leader, from Raft's own state.
	for _, id := range c.order {
		lr := c.leaderSeenBy(id)
		if lr.Leader.GetId() != leader || lr.IsLeader != (id == leader) {
			t.Fatalf("node %s: leader %v is_leader %v, want %s", id, lr.Leader, lr.IsLeader, leader)
		}
	}

	wr := c.put("k", "v1")
	if wr.Index == 0 {
		t.Fatalf("write acknowledged without a log index")
	}
	res, err := kvstore.DecodeResult(wr.Result)
	if err != nil || res.Error != "" {
		t.Fatalf("write result %v %v", res, err)
	}
	for _, id := range c.order {
		c.waitValue(id, "k", "v1")
	}

	// A follower refuses writes and lease reads, naming the leader (it
	// serves linearizable reads with the leader's read index: see
	// reads_test.go).
	follower := otherThan(c, leader)
	r := c.mustAsk(follower, &actors.WriteRequest{Meta: meta(time.Second), Command: kvstore.Put("k", []byte("x"))}).(*actors.WriteResponse)
	assertNotLeader(t, r.Error, leader, c.address(leader))
	rr, _ := c.get(follower, "k", actors.Consistency_LEASE)
	assertNotLeader(t, rr.Error, leader, c.address(leader))
}

func TestLinearizableReadSeesAcknowledgedWrite(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	for i := 0; i < 20; i++ {
		want := fmt.Sprintf("v%d", i)
		wr := c.put("k", want)
		for _, cons := range []actors.Consistency{actors.Consistency_LINEARIZABLE, actors.Consistency_LEASE} {
			rr, qr := c.get(leader, "k", cons)
			if rr.Error.Err() != nil {
				t.Fatalf("%v read: %v", cons, rr.Error)
			}
			if string(qr.Value) != want || rr.AppliedIndex < wr.Index {
				t.Fatalf("%v read after write %d: got %q at applied %d", cons, wr.Index, qr.Value, rr.AppliedIndex)
			}
		}
	}

	// A stale read on a follower says which index it reflects.
	follower := otherThan(c, leader)
	wr := c.put("k", "last")
	c.waitValue(follower, "k", "last")
	rr, qr := c.get(follower, "k", actors.Consistency_STALE)
	if rr.Error.Err() != nil || string(qr.Value) != "last" || rr.AppliedIndex < wr.Index {
		t.Fatalf("stale read on follower: %v %q applied %d, write index %d", rr.Error, qr.GetValue(), rr.AppliedIndex, wr.Index)
	}
	if got := c.status(follower).AppliedIndex; got < rr.AppliedIndex {
		t.Fatalf("status applied %d below read's %d", got, rr.AppliedIndex)
	}
}

func TestSingleNodeCommitsThroughRaft(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitLeader()
	before := c.status("n1").LastIndex
	wr := c.put("solo", "yes")
	if wr.Index <= before {
		t.Fatalf("one-node write did not go through the log: index %d, last index before %d", wr.Index, before)
	}
	rr, qr := c.get("n1", "solo", actors.Consistency_LINEARIZABLE)
	if rr.Error.Err() != nil || string(qr.Value) != "yes" {
		t.Fatalf("read back: %v %v", rr.Error, qr)
	}
	// The only voter cannot be removed or demoted.
	for _, op := range []actors.MembershipOp{actors.MembershipOp_REMOVE, actors.MembershipOp_DEMOTE} {
		mr := c.mustAsk("n1", &actors.MembershipRequest{Meta: meta(time.Second), Op: op, Id: "n1"}).(*actors.MembershipResponse)
		if actors.CodeOf(mr.Error) != actors.Code_INVALID_ARGUMENT || mr.Error.Field != "id" {
			t.Fatalf("%v of the last voter: %v, want INVALID_ARGUMENT on id", op, mr.Error)
		}
	}
}

func TestLeaderStoppedNewLeaderNoWriteLost(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	acked := map[string]string{}
	for i := 0; i < 10; i++ {
		k := fmt.Sprintf("a%d", i)
		c.put(k, k)
		acked[k] = k
	}
	c.stop(leader)
	next := c.waitLeader()
	if next == leader {
		t.Fatalf("stopped node %s still leads", leader)
	}
	for i := 0; i < 10; i++ {
		k := fmt.Sprintf("b%d", i)
		c.put(k, k)
		acked[k] = k
	}
	for k, v := range acked {
		rr, qr := c.get(next, k, actors.Consistency_LINEARIZABLE)
		if rr.Error.Err() != nil || string(qr.Value) != v {
			t.Fatalf("acknowledged %s lost on new leader: %v %v", k, rr.Error, qr)
		}
	}
	// The old leader comes back from its directory and catches up.
	c.start(leader)
	for k, v := range acked {
		c.waitValue(leader, k, v)
	}
}

// crashOn returns receiver middleware that panics inside the node actor when
// it receives a write of the given key, as a bug would.
func crashOn(key string) actor.PropsOption {
	return actor.WithReceiverMiddleware(func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(ctx actor.ReceiverContext, env *actor.MessageEnvelope) {
			if w, ok := env.Message.(*actors.WriteRequest); ok && string(w.Command) == string(kvstore.Put(key, []byte("boom"))) {
				panic("injected crash")
			}
			next(ctx, env)
		}
	})
}

func TestPanicInLeaderRestartsFromDisk(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, id := range c.order {
		c.stop(id)
		c.nodes[id].opts = []actor.PropsOption{crashOn("crash")}
		c.start(id)
	}
	leader := c.waitLeader()
	for i := 0; i < 10; i++ {
		c.put(fmt.Sprintf("k%d", i), "before")
	}
	termBefore := c.leaderSeenBy(leader).Term

	// The panic drops the message (the requester times out) and the
	// supervisor restarts the actor, which reopens its directory.
	_, err := c.system.Root.RequestFuture(c.nodes[leader].pid, &actors.WriteRequest{Meta: meta(time.Second), Command: kvstore.Put("crash", []byte("boom"))}, 500*time.Millisecond).Result()
	if !errors.Is(err, actor.ErrTimeout) {
		t.Fatalf("crashing request: %v, want a timeout", err)
	}
	for i := 0; i < 10; i++ {
		c.put(fmt.Sprintf("k%d", i), "after")
	}
	for _, id := range c.order {
		for i := 0; i < 10; i++ {
			c.waitValue(id, fmt.Sprintf("k%d", i), "after")
		}
	}
	st := c.status(leader)
	if st.State == "Shutdown" || st.Term < termBefore {
		t.Fatalf("restarted node: state %s term %d (before %d)", st.State, st.Term, termBefore)
	}
}

// A start that panics after the stores are open (here: the state machine
// factory) is restarted by the supervisor; the restart must find the files
// closed, where bolt's lock on a meta database left open would block it
// forever.
func TestPanicHalfwayThroughStartRestartsCleanly(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitLeader()
	c.put("k", "v")
	id := c.order[2]
	c.stop(id)
	var calls atomic.Int32
	c.nodes[id].cfg.NewStateMachine = func() raftactor.StateMachine {
		if calls.Add(1) == 1 {
			panic("injected: state machine factory")
		}
		return kvstore.New()
	}
	c.start(id)
	c.waitValue(id, "k", "v")
	if calls.Load() < 2 {
		t.Fatalf("the factory was called %d times: the panic was not injected", calls.Load())
	}
}

func TestWholeClusterRestartKeepsAcknowledgedWrites(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitLeader()
	for i := 0; i < 30; i++ {
		c.put(fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	// A snapshot on one node, so recovery takes both paths: snapshot and log.
	leader := c.waitLeader()
	sr := c.mustAsk(leader, &actors.SnapshotRequest{Meta: meta(5 * time.Second)}).(*actors.SnapshotResponse)
	if sr.Error.Err() != nil || sr.Index == 0 {
		t.Fatalf("snapshot: %v index %d", sr.Error, sr.Index)
	}
	c.put("after-snapshot", "yes")
	for _, id := range c.order {
		c.stop(id)
	}
	for _, id := range c.order {
		c.start(id)
	}
	leader = c.waitLeader()
	for i := 0; i < 30; i++ {
		rr, qr := c.get(leader, fmt.Sprintf("k%d", i), actors.Consistency_LINEARIZABLE)
		if rr.Error.Err() != nil || string(qr.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d after restart: %v %v", i, rr.Error, qr)
		}
	}
	for _, id := range c.order {
		c.waitValue(id, "after-snapshot", "yes")
	}
}

func TestMembershipThroughRaft(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	for i := 0; i < 20; i++ {
		c.put(fmt.Sprintf("k%d", i), "v")
	}

	// A fourth node starts empty, with no bootstrap, and waits to be added.
	c.add("n4", nil)
	c.start("n4")
	mr := c.mustAsk(leader, &actors.MembershipRequest{Meta: meta(5 * time.Second), Op: actors.MembershipOp_ADD_NONVOTER, Id: "n4", Address: c.address("n4")}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("add nonvoter: %v", mr.Error)
	}
	assertCommitted(t, c, leader, mr.Index)
	assertMember(t, mr.Members, "n4", actors.Suffrage_NONVOTER)
	c.waitValue("n4", "k19", "v")

	mr = c.mustAsk(leader, &actors.MembershipRequest{Meta: meta(5 * time.Second), Op: actors.MembershipOp_PROMOTE, Id: "n4"}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("promote: %v", mr.Error)
	}
	assertCommitted(t, c, leader, mr.Index)
	assertMember(t, mr.Members, "n4", actors.Suffrage_VOTER)

	// Bad changes are refused before Raft: the log index does not move.
	last := c.status(leader).LastIndex
	for _, bad := range []*actors.MembershipRequest{
		{Op: actors.MembershipOp_ADD_VOTER, Id: "bad id!", Address: c.address("n9")},
		{Op: actors.MembershipOp_ADD_VOTER, Id: "n9", Address: "0.0.0.0:1/x"},
		{Op: actors.MembershipOp_ADD_VOTER, Id: "n9", Address: c.address("n2")},
		{Op: actors.MembershipOp_ADD_VOTER, Id: "n2", Address: c.address("n9")},
		{Op: actors.MembershipOp_REMOVE, Id: "n9"},
	} {
		bad.Meta = meta(time.Second)
		mr := c.mustAsk(leader, bad).(*actors.MembershipResponse)
		if actors.CodeOf(mr.Error) != actors.Code_INVALID_ARGUMENT || mr.Error.Field == "" {
			t.Fatalf("%v: got %v, want INVALID_ARGUMENT naming a field", bad, mr.Error)
		}
	}
	if now := c.status(leader).LastIndex; now != last {
		t.Fatalf("refused changes moved the log from %d to %d", last, now)
	}

	// Remove a follower; the group keeps committing with the rest.
	victim := otherThan(c, leader)
	mr = c.mustAsk(leader, &actors.MembershipRequest{Meta: meta(5 * time.Second), Op: actors.MembershipOp_REMOVE, Id: victim}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("remove: %v", mr.Error)
	}
	assertCommitted(t, c, leader, mr.Index)
	for _, m := range mr.Members {
		if m.Id == victim {
			t.Fatalf("removed %s still a member: %v", victim, mr.Members)
		}
	}
	c.stop(victim)
	c.put("after-remove", "ok")
	c.waitValue("n4", "after-remove", "ok")

	// Members agrees with the change.
	ms := c.mustAsk(leader, &actors.MembersRequest{}).(*actors.MembersResponse)
	if len(ms.Members) != 3 {
		t.Fatalf("members after remove: %v", ms.Members)
	}
}

func TestTransferLeadership(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	target := otherThan(c, leader)
	tr := c.mustAsk(leader, &actors.TransferLeadershipRequest{Meta: meta(5 * time.Second), Id: target}).(*actors.TransferLeadershipResponse)
	if tr.Error.Err() != nil {
		t.Fatalf("transfer: %v", tr.Error)
	}
	if got := c.waitLeader(); got != target {
		t.Fatalf("leader after transfer %s, want %s", got, target)
	}
	c.put("after-transfer", "ok")
}

func TestPartitionMinorityCannotCommit(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	c.put("before", "1")
	var majority []string
	for _, id := range c.order {
		if id != leader {
			majority = append(majority, id)
		}
	}
	c.faults.Isolate(raftID(leader))

	// The old leader may still think it leads for a moment; nothing it
	// accepts can commit.
	r := c.mustAsk(leader, &actors.WriteRequest{Meta: meta(time.Second), Command: kvstore.Put("minority", []byte("x"))}).(*actors.WriteResponse)
	if r.Error.Err() == nil {
		t.Fatalf("the isolated leader acknowledged a write: index %d", r.Index)
	}
	rr, _ := c.get(leader, "before", actors.Consistency_LINEARIZABLE)
	if rr.Error.Err() == nil {
		t.Fatalf("the isolated leader served a linearizable read")
	}

	newLeader := c.waitLeader(majority...)
	if newLeader == leader {
		t.Fatalf("isolated node still leads the majority")
	}
	resp, err := c.tryPutTo(newLeader, "majority", "2")
	if err != nil {
		t.Fatalf("majority write: %v", err)
	}
	_ = resp

	c.faults.Heal()
	c.waitLeader()
	for _, id := range c.order {
		c.waitValue(id, "majority", "2")
		if _, qr := c.get(id, "minority", actors.Consistency_STALE); qr != nil && qr.Found {
			t.Fatalf("node %s holds the minority write that was never acknowledged", id)
		}
	}
}

func TestRuntimeTimeoutChange(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	upd := &actors.UpdateTimeoutsRequest{Meta: meta(time.Second), Timeouts: &actors.Timeouts{
		Heartbeat: durationpb.New(300 * time.Millisecond),
		Election:  durationpb.New(400 * time.Millisecond),
	}}
	tr := c.mustAsk(leader, upd).(*actors.TimeoutsResponse)
	if tr.Error.Err() != nil {
		t.Fatalf("update: %v", tr.Error)
	}
	st := c.status(leader)
	if st.Timeouts.Heartbeat.AsDuration() != 300*time.Millisecond || st.Timeouts.Election.AsDuration() != 400*time.Millisecond {
		t.Fatalf("status timeouts %v", st.Timeouts)
	}

	bad := []struct {
		field string
		t     *actors.Timeouts
	}{
		{"timeouts.heartbeat", &actors.Timeouts{Heartbeat: durationpb.New(time.Millisecond)}},
		{"timeouts.election", &actors.Timeouts{Election: durationpb.New(200 * time.Millisecond)}},
		{"timeouts.leader_lease", &actors.Timeouts{LeaderLease: durationpb.New(time.Second)}},
		{"timeouts.commit", &actors.Timeouts{Commit: durationpb.New(time.Second)}},
		{"timeouts.heartbeat", &actors.Timeouts{Heartbeat: &durationpb.Duration{Seconds: 1, Nanos: -5}}},
		{"timeouts", nil},
	}
	for _, b := range bad {
		tr := c.mustAsk(leader, &actors.UpdateTimeoutsRequest{Meta: meta(time.Second), Timeouts: b.t}).(*actors.TimeoutsResponse)
		if actors.CodeOf(tr.Error) != actors.Code_INVALID_ARGUMENT || tr.Error.Field != b.field {
			t.Fatalf("%v: got %v, want INVALID_ARGUMENT on %s", b.t, tr.Error, b.field)
		}
	}
	got := c.mustAsk(leader, &actors.GetTimeoutsRequest{}).(*actors.TimeoutsResponse).Timeouts
	if got.Heartbeat.AsDuration() != 300*time.Millisecond || got.Election.AsDuration() != 400*time.Millisecond {
		t.Fatalf("refused changes changed timeouts: %v", got)
	}
	c.put("still", "works")
}

func TestLeaderChangedEvents(t *testing.T) {
	c := newTestCluster(t, 3)
	events := make(chan *actors.LeaderChanged, 64)
	sub := c.system.EventStream.Subscribe(func(ev any) {
		if lc, ok := ev.(*actors.LeaderChanged); ok {
			select {
			case events <- lc:
			default:
			}
		}
	})
	defer c.system.EventStream.Unsubscribe(sub)
	leader := c.waitLeader()
	c.stop(leader)
	next := c.waitLeader()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Leader.GetId() == next && ev.Term > 0 && ev.Group == c.group && ev.Leader.Address == c.address(next) {
				return
			}
		case <-deadline:
			t.Fatalf("no LeaderChanged event naming %s", next)
		}
	}
}

func TestUnknownFormatVersionRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "FORMAT"), []byte("protoraft data directory\nformat 99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := raftactor.CheckDataDir(dir)
	if !errors.Is(err, raftactor.ErrUnknownFormat) || !strings.Contains(err.Error(), "99") {
		t.Fatalf("CheckDataDir: %v", err)
	}
	system := actor.NewActorSystem()
	defer system.Shutdown()
	props, err := raftactor.Props(raftactor.Config{Group: "g", ID: "n1", DataDir: dir,
		NewStateMachine: func() raftactor.StateMachine { return kvstore.New() }})
	if err != nil {
		t.Fatal(err)
	}
	pid := system.Root.Spawn(props)
	defer func() { _ = system.Root.StopFuture(pid).Wait() }()
	res, err := system.Root.RequestFuture(pid, &actors.StatusRequest{}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	st := res.(*actors.StatusResponse)
	if actors.CodeOf(st.Error) != actors.Code_INTERNAL || !strings.Contains(st.Error.Message, "format version 99") {
		t.Fatalf("status of a node with an unknown format: %v", st.Error)
	}
	// The directory is left as it was.
	if b, _ := os.ReadFile(filepath.Join(dir, "FORMAT")); !strings.Contains(string(b), "format 99") {
		t.Fatalf("format file rewritten: %q", b)
	}
}

func TestConfigValidation(t *testing.T) {
	sm := func() raftactor.StateMachine { return kvstore.New() }
	good := raftactor.Config{Group: "g", ID: "n1", DataDir: "/tmp/x", NewStateMachine: sm}
	cases := []struct {
		field string
		mod   func(*raftactor.Config)
	}{
		{"id", func(c *raftactor.Config) { c.ID = "" }},
		{"id", func(c *raftactor.Config) { c.ID = "n 1" }},
		{"group", func(c *raftactor.Config) { c.Group = "" }},
		{"data_dir", func(c *raftactor.Config) { c.DataDir = "" }},
		{"new_state_machine", func(c *raftactor.Config) { c.NewStateMachine = nil }},
		{"timeouts.election", func(c *raftactor.Config) {
			c.Timeouts = raftactor.Timeouts{Heartbeat: time.Second, Election: 100 * time.Millisecond}
		}},
		{"bootstrap[1].id", func(c *raftactor.Config) {
			c.Bootstrap = []raftactor.Peer{{ID: "n1", Address: "nonhost/a"}, {ID: "n1", Address: "nonhost/b"}}
		}},
		{"bootstrap[0].address", func(c *raftactor.Config) {
			c.Bootstrap = []raftactor.Peer{{ID: "n1", Address: "[::]:80/a"}}
		}},
		{"bootstrap", func(c *raftactor.Config) {
			c.Bootstrap = []raftactor.Peer{{ID: "n2", Address: "nonhost/a"}}
		}},
		{"max_write_batch", func(c *raftactor.Config) { c.MaxWriteBatch = -1 }},
		{"log_cache_entries", func(c *raftactor.Config) { c.LogCacheEntries = -2 }},
		{"log_cache_entries", func(c *raftactor.Config) { c.LogCacheEntries = 1 << 20 }},
		{"max_appends_in_flight", func(c *raftactor.Config) { c.MaxAppendsInFlight = raftactor.DefaultInboundQueue }},
	}
	for _, tc := range cases {
		cfg := good
		tc.mod(&cfg)
		_, err := raftactor.Props(cfg)
		var perr *actors.Error
		if !errors.As(err, &perr) || perr.Code != actors.Code_INVALID_ARGUMENT || perr.Field != tc.field {
			t.Errorf("%s: got %v", tc.field, err)
		}
	}
	if _, err := raftactor.Props(good); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
}

func (c *testCluster) tryPutTo(id, key, value string) (*actors.WriteResponse, error) {
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		r, err := c.ask(id, &actors.WriteRequest{Meta: meta(2 * time.Second), Command: kvstore.Put(key, []byte(value))})
		if err != nil {
			return nil, err
		}
		wr := r.(*actors.WriteResponse)
		if wr.Error.Err() == nil {
			return wr, nil
		}
		last = wr.Error
		time.Sleep(20 * time.Millisecond)
	}
	return nil, last
}

func otherThan(c *testCluster, id string) string {
	for _, o := range c.order {
		if o != id && c.nodes[o].pid != nil {
			return o
		}
	}
	return ""
}

func assertNotLeader(t *testing.T, e *actors.Error, id, addr string) {
	t.Helper()
	if actors.CodeOf(e) != actors.Code_NOT_LEADER || e.Leader.GetId() != id || e.Leader.GetAddress() != addr {
		t.Fatalf("got %v, want NOT_LEADER naming %s at %s", e, id, addr)
	}
}

// assertCommitted checks that a change acknowledged at index is committed.
func assertCommitted(t *testing.T, c *testCluster, leader string, index uint64) {
	t.Helper()
	if st := c.status(leader); st.CommitIndex < index || st.ConfigurationIndex < index {
		t.Fatalf("acknowledged at %d but commit index %d, configuration index %d", index, st.CommitIndex, st.ConfigurationIndex)
	}
}

func assertMember(t *testing.T, ms []*actors.Server, id string, s actors.Suffrage) {
	t.Helper()
	for _, m := range ms {
		if m.Id == id {
			if m.Suffrage != s {
				t.Fatalf("%s is %v, want %v", id, m.Suffrage, s)
			}
			return
		}
	}
	t.Fatalf("%s not in %v", id, ms)
}

// Every request that ends at the node is told to the outcome observers, with
// its operation, code and the headers the stages attached.
func TestOutcomesToldToObservers(t *testing.T) {
	c := newTestCluster(t, 0)
	outcomes := make(chan *actors.Outcome, 16)
	obs := c.system.Root.Spawn(actor.PropsFromFunc(observeOutcomes(outcomes)))
	c.add("n1", []raftactor.Peer{{ID: "n1", Address: c.address("n1")}})
	c.nodes["n1"].cfg.OutcomeObservers = []*actor.PID{obs}
	c.start("n1")
	c.waitLeader()
	env := &actor.MessageEnvelope{
		Header:  map[string]string{actors.HeaderPrincipal: "alice", actors.HeaderPermit: "7"},
		Message: &actors.WriteRequest{Meta: &actors.RequestMeta{RequestId: "r1"}, Command: kvstore.Put("k", []byte("v"))},
	}
	// A stage forwards a new envelope that keeps the caller as sender.
	f := actor.NewFuture(c.system, 5*time.Second)
	env.Sender = f.PID()
	c.system.Root.Send(c.nodes["n1"].pid, env)
	if _, err := f.Result(); err != nil {
		t.Fatal(err)
	}
	c.mustAsk("n1", &actors.ReadRequest{Query: kvstore.Get("k"), Consistency: actors.Consistency(42)})
	want := []struct {
		op   string
		code actors.Code
	}{{"write", actors.Code_OK}, {"read_linearizable", actors.Code_INVALID_ARGUMENT}}
	next := func() *actors.Outcome {
		for {
			select {
			case o := <-outcomes:
				if o.Op != "leader" { // waitLeader's questions
					return o
				}
			case <-time.After(5 * time.Second):
				return nil
			}
		}
	}
	for _, w := range want {
		switch o := next(); {
		case o != nil:
			if o.Op != w.op || o.Code != w.code || o.Stage != "node" {
				t.Fatalf("outcome %+v, want %s %v", o, w.op, w.code)
			}
			if w.op == "write" && (o.Principal != "alice" || o.Permit != "7" || o.RequestID != "r1") {
				t.Fatalf("outcome lost the request's identity: %+v", o)
			}
		default:
			t.Fatalf("no outcome for %s", w.op)
		}
	}
}

// observeOutcomes is an observer that passes on every outcome it is told,
// alone or in a batch.
func observeOutcomes(to chan<- *actors.Outcome) actor.ReceiveFunc {
	return func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actors.Outcome:
			to <- m
		case *actors.Outcomes:
			for i := range m.List {
				to <- &m.List[i]
			}
		}
	}
}

// Requests answered together (reads served after one leadership
// confirmation, writes applied as one entry) are still told one outcome
// each, with their own identity: the limiter gives back every permit.
func TestOutcomesOfRequestsAnsweredTogether(t *testing.T) {
	const requests = 200
	c := newTestCluster(t, 0)
	outcomes := make(chan *actors.Outcome, 4*requests)
	obs := c.system.Root.Spawn(actor.PropsFromFunc(observeOutcomes(outcomes)))
	c.add("n1", []raftactor.Peer{{ID: "n1", Address: c.address("n1")}})
	c.nodes["n1"].cfg.OutcomeObservers = []*actor.PID{obs}
	c.start("n1")
	c.waitLeader()
	var futures []*actor.Future
	for i := range requests {
		var req actors.Request = &actors.ReadRequest{Query: kvstore.Get("k"), Consistency: actors.Consistency_LINEARIZABLE}
		if i%2 == 1 {
			req = &actors.WriteRequest{Command: kvstore.Put("k", []byte("v"))}
		}
		f := actor.NewFuture(c.system, 10*time.Second)
		c.system.Root.Send(c.nodes["n1"].pid, &actor.MessageEnvelope{
			Header:  map[string]string{actors.HeaderPermit: strconv.Itoa(i)},
			Message: req, Sender: f.PID(),
		})
		futures = append(futures, f)
	}
	for i, f := range futures {
		res, err := f.Result()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if e := res.(actors.Response).GetError(); e != nil {
			t.Fatalf("request %d: %v", i, e)
		}
	}
	seen := map[string]int{}
	deadline := time.After(10 * time.Second)
	for len(seen) < requests {
		select {
		case o := <-outcomes:
			if o.Permit != "" {
				seen[o.Permit]++
			}
		case <-deadline:
			t.Fatalf("outcomes of %d requests told, want %d", len(seen), requests)
		}
	}
	// A duplicate told late must not slip by: stop the node, then count
	// everything told before a marker that goes through the same mailbox.
	c.stop("n1")
	c.system.Root.Send(obs, &actors.Outcome{Permit: "end"})
	for done := false; !done; {
		select {
		case o := <-outcomes:
			if o.Permit == "end" {
				done = true
			} else if o.Permit != "" {
				seen[o.Permit]++
			}
		case <-deadline:
			t.Fatal("the marker outcome never came through")
		}
	}
	for permit, n := range seen {
		if n != 1 {
			t.Fatalf("request with permit %s told %d outcomes, want 1", permit, n)
		}
	}
}

// With one voter of three cut off, removing a healthy voter would leave the
// group without a quorum it can reach: refused before Raft. Removing the
// unreachable one is fine.
func TestRemovalBelowReachableQuorumRefused(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	var healthy, cut string
	for _, id := range c.order {
		if id != leader {
			if cut == "" {
				cut = id
			} else {
				healthy = id
			}
		}
	}
	c.faults.Isolate(raftID(cut))
	deadline := time.Now().Add(20 * time.Second)
	for c.status(cut).GetLeader() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s still follows a leader while cut off", cut)
		}
		time.Sleep(20 * time.Millisecond)
	}
	last := c.status(leader).LastIndex
	for _, op := range []actors.MembershipOp{actors.MembershipOp_REMOVE, actors.MembershipOp_DEMOTE} {
		mr := c.mustAsk(leader, &actors.MembershipRequest{Meta: meta(5 * time.Second), Op: op, Id: healthy}).(*actors.MembershipResponse)
		if actors.CodeOf(mr.Error) != actors.Code_INVALID_ARGUMENT || mr.Error.Field != "id" {
			t.Fatalf("%v of a healthy voter with another cut off: %v, want INVALID_ARGUMENT on id", op, mr.Error)
		}
	}
	if now := c.status(leader).LastIndex; now != last {
		t.Fatalf("refused changes moved the log from %d to %d", last, now)
	}
	mr := c.mustAsk(leader, &actors.MembershipRequest{Meta: meta(5 * time.Second), Op: actors.MembershipOp_REMOVE, Id: cut}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("removing the unreachable voter: %v", mr.Error)
	}
	c.faults.Heal()
	c.put("after", "ok")
}

// An isolated leader appends entries that never commit; once healed, the
// new leader's log overwrites them and the node truncates its log's tail.
// It must then restart from its directory like any other node (raft-wal
// before v0.4.1 marked the truncated tail segment sealed without an index,
// and Raft panicked reading it at the next start).
func TestRestartAfterTheLogTailWasTruncated(t *testing.T) {
	c := newTestCluster(t, 3)
	old := c.waitLeader()
	c.put("before", "1")
	c.faults.Isolate(raftID(old))
	for i := range 3 {
		r := c.mustAsk(old, &actors.WriteRequest{Meta: meta(300 * time.Millisecond), Command: kvstore.Put(fmt.Sprint("lost", i), []byte("x"))}).(*actors.WriteResponse)
		if r.Error.Err() == nil {
			t.Fatalf("the isolated leader acknowledged a write")
		}
	}
	// The precondition of the truncation: entries beyond the commit index.
	if st := c.status(old); st.LastIndex <= st.CommitIndex {
		t.Fatalf("the isolated leader holds no uncommitted entry: last %d, commit %d", st.LastIndex, st.CommitIndex)
	}
	var majority []string
	for _, id := range c.order {
		if id != old {
			majority = append(majority, id)
		}
	}
	newLeader := c.waitLeader(majority...)
	for i := range 5 {
		if _, err := c.tryPutTo(newLeader, fmt.Sprint("k", i), "2"); err != nil {
			t.Fatalf("majority write: %v", err)
		}
	}
	c.faults.Heal()
	c.waitValue(old, "k4", "2")
	for range 2 {
		c.stop(old)
		c.start(old)
		c.put("after-restart", "3")
		c.waitValue(old, "after-restart", "3")
	}
	if _, qr := c.get(old, "lost0", actors.Consistency_STALE); qr != nil && qr.Found {
		t.Fatalf("the restarted node holds a write that never committed")
	}
}

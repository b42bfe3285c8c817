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
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

func TestOneLeaderReplicatesToAll(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()

	// Every node names the same leader, from Raft's own state.
	for _, id := range c.IDs() {
		lr := c.LeaderSeenBy(id)
		if lr.Leader.GetId() != leader || lr.IsLeader != (id == leader) {
			t.Fatalf("node %s: leader %v is_leader %v, want %s", id, lr.Leader, lr.IsLeader, leader)
		}
	}

	wr := c.Put("k", "v1")
	if wr.Index == 0 {
		t.Fatalf("write acknowledged without a log index")
	}
	res, err := kvstore.DecodeResult(wr.Result)
	if err != nil || res.Error != "" {
		t.Fatalf("write result %v %v", res, err)
	}
	for _, id := range c.IDs() {
		c.WaitValue(id, "k", "v1")
	}

	// A follower refuses writes and lease reads, naming the leader (it
	// serves linearizable reads with the leader's read index: see
	// reads_test.go).
	follower := otherThan(c, leader)
	r := c.MustAsk(follower, &actors.WriteRequest{Meta: grouptest.Meta(time.Second), Command: kvstore.Put("k", []byte("x"))}).(*actors.WriteResponse)
	assertNotLeader(t, r.Error, leader, c.Address(leader))
	rr, _ := c.Get(follower, "k", actors.Consistency_LEASE)
	assertNotLeader(t, rr.Error, leader, c.Address(leader))
}

func TestLinearizableReadSeesAcknowledgedWrite(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	for i := 0; i < 20; i++ {
		want := fmt.Sprintf("v%d", i)
		wr := c.Put("k", want)
		for _, cons := range []actors.Consistency{actors.Consistency_LINEARIZABLE, actors.Consistency_LEASE} {
			rr, qr := c.Get(leader, "k", cons)
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
	wr := c.Put("k", "last")
	c.WaitValue(follower, "k", "last")
	rr, qr := c.Get(follower, "k", actors.Consistency_STALE)
	if rr.Error.Err() != nil || string(qr.Value) != "last" || rr.AppliedIndex < wr.Index {
		t.Fatalf("stale read on follower: %v %q applied %d, write index %d", rr.Error, qr.GetValue(), rr.AppliedIndex, wr.Index)
	}
	if got := c.Status(follower).AppliedIndex; got < rr.AppliedIndex {
		t.Fatalf("status applied %d below read's %d", got, rr.AppliedIndex)
	}
}

func TestSingleNodeCommitsThroughRaft(t *testing.T) {
	c := grouptest.New(t, 1, nil)
	c.WaitLeader()
	before := c.Status("n1").LastIndex
	wr := c.Put("solo", "yes")
	if wr.Index <= before {
		t.Fatalf("one-node write did not go through the log: index %d, last index before %d", wr.Index, before)
	}
	rr, qr := c.Get("n1", "solo", actors.Consistency_LINEARIZABLE)
	if rr.Error.Err() != nil || string(qr.Value) != "yes" {
		t.Fatalf("read back: %v %v", rr.Error, qr)
	}
	// The only voter cannot be removed or demoted.
	for _, op := range []actors.MembershipOp{actors.MembershipOp_REMOVE, actors.MembershipOp_DEMOTE} {
		mr := c.MustAsk("n1", &actors.MembershipRequest{Meta: grouptest.Meta(time.Second), Op: op, Id: "n1"}).(*actors.MembershipResponse)
		if actors.CodeOf(mr.Error) != actors.Code_INVALID_ARGUMENT || mr.Error.Field != "id" {
			t.Fatalf("%v of the last voter: %v, want INVALID_ARGUMENT on id", op, mr.Error)
		}
	}
}

func TestLeaderStoppedNewLeaderNoWriteLost(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	acked := map[string]string{}
	for i := 0; i < 10; i++ {
		k := fmt.Sprintf("a%d", i)
		c.Put(k, k)
		acked[k] = k
	}
	c.Stop(leader)
	next := c.WaitLeader()
	if next == leader {
		t.Fatalf("stopped node %s still leads", leader)
	}
	for i := 0; i < 10; i++ {
		k := fmt.Sprintf("b%d", i)
		c.Put(k, k)
		acked[k] = k
	}
	for k, v := range acked {
		rr, qr := c.Get(next, k, actors.Consistency_LINEARIZABLE)
		if rr.Error.Err() != nil || string(qr.Value) != v {
			t.Fatalf("acknowledged %s lost on new leader: %v %v", k, rr.Error, qr)
		}
	}
	// The old leader comes back from its directory and catches up.
	c.Start(leader)
	for k, v := range acked {
		c.WaitValue(leader, k, v)
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
	c := grouptest.New(t, 3, nil)
	for _, id := range c.IDs() {
		c.Stop(id)
		c.Node(id).Options = []actor.PropsOption{crashOn("crash")}
		c.Start(id)
	}
	leader := c.WaitLeader()
	for i := 0; i < 10; i++ {
		c.Put(fmt.Sprintf("k%d", i), "before")
	}
	termBefore := c.LeaderSeenBy(leader).Term

	// The panic drops the message (the requester times out) and the
	// supervisor restarts the actor, which reopens its directory.
	_, err := c.System.Root.RequestFuture(c.Node(leader).PID, &actors.WriteRequest{Meta: grouptest.Meta(time.Second), Command: kvstore.Put("crash", []byte("boom"))}, 500*time.Millisecond).Result()
	if !errors.Is(err, actor.ErrTimeout) {
		t.Fatalf("crashing request: %v, want a timeout", err)
	}
	for i := 0; i < 10; i++ {
		c.Put(fmt.Sprintf("k%d", i), "after")
	}
	for _, id := range c.IDs() {
		for i := 0; i < 10; i++ {
			c.WaitValue(id, fmt.Sprintf("k%d", i), "after")
		}
	}
	st := c.Status(leader)
	if st.State == "Shutdown" || st.Term < termBefore {
		t.Fatalf("restarted node: state %s term %d (before %d)", st.State, st.Term, termBefore)
	}
}

// A start that panics after the stores are open (here: the state machine
// factory) is restarted by the supervisor; the restart must find the files
// closed, where bolt's lock on a meta database left open would block it
// forever.
func TestPanicHalfwayThroughStartRestartsCleanly(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	c.WaitLeader()
	c.Put("k", "v")
	id := c.IDs()[2]
	c.Stop(id)
	var calls atomic.Int32
	c.Node(id).Config.NewStateMachine = func() raftactor.StateMachine {
		if calls.Add(1) == 1 {
			panic("injected: state machine factory")
		}
		return kvstore.New()
	}
	c.Start(id)
	c.WaitValue(id, "k", "v")
	if calls.Load() < 2 {
		t.Fatalf("the factory was called %d times: the panic was not injected", calls.Load())
	}
}

func TestWholeClusterRestartKeepsAcknowledgedWrites(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	c.WaitLeader()
	for i := 0; i < 30; i++ {
		c.Put(fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	// A snapshot on one node, so recovery takes both paths: snapshot and log.
	leader := c.WaitLeader()
	sr := c.MustAsk(leader, &actors.SnapshotRequest{Meta: grouptest.Meta(5 * time.Second)}).(*actors.SnapshotResponse)
	if sr.Error.Err() != nil || sr.Index == 0 {
		t.Fatalf("snapshot: %v index %d", sr.Error, sr.Index)
	}
	c.Put("after-snapshot", "yes")
	for _, id := range c.IDs() {
		c.Stop(id)
	}
	for _, id := range c.IDs() {
		c.Start(id)
	}
	leader = c.WaitLeader()
	for i := 0; i < 30; i++ {
		rr, qr := c.Get(leader, fmt.Sprintf("k%d", i), actors.Consistency_LINEARIZABLE)
		if rr.Error.Err() != nil || string(qr.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d after restart: %v %v", i, rr.Error, qr)
		}
	}
	for _, id := range c.IDs() {
		c.WaitValue(id, "after-snapshot", "yes")
	}
}

func TestMembershipThroughRaft(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	for i := 0; i < 20; i++ {
		c.Put(fmt.Sprintf("k%d", i), "v")
	}

	// A fourth node starts empty, with no bootstrap, and waits to be added.
	c.Add("n4", nil)
	c.Start("n4")
	mr := c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(5 * time.Second), Op: actors.MembershipOp_ADD_NONVOTER, Id: "n4", Address: c.Address("n4")}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("add nonvoter: %v", mr.Error)
	}
	assertCommitted(t, c, leader, mr.Index)
	assertMember(t, mr.Members, "n4", actors.Suffrage_NONVOTER)
	c.WaitValue("n4", "k19", "v")

	mr = c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(5 * time.Second), Op: actors.MembershipOp_PROMOTE, Id: "n4"}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("promote: %v", mr.Error)
	}
	assertCommitted(t, c, leader, mr.Index)
	assertMember(t, mr.Members, "n4", actors.Suffrage_VOTER)

	// Bad changes are refused before Raft: the log index does not move.
	last := c.Status(leader).LastIndex
	for _, bad := range []*actors.MembershipRequest{
		{Op: actors.MembershipOp_ADD_VOTER, Id: "bad id!", Address: c.Address("n9")},
		{Op: actors.MembershipOp_ADD_VOTER, Id: "n9", Address: "0.0.0.0:1/x"},
		{Op: actors.MembershipOp_ADD_VOTER, Id: "n9", Address: c.Address("n2")},
		{Op: actors.MembershipOp_ADD_VOTER, Id: "n2", Address: c.Address("n9")},
		{Op: actors.MembershipOp_REMOVE, Id: "n9"},
	} {
		bad.Meta = grouptest.Meta(time.Second)
		mr := c.MustAsk(leader, bad).(*actors.MembershipResponse)
		if actors.CodeOf(mr.Error) != actors.Code_INVALID_ARGUMENT || mr.Error.Field == "" {
			t.Fatalf("%v: got %v, want INVALID_ARGUMENT naming a field", bad, mr.Error)
		}
	}
	if now := c.Status(leader).LastIndex; now != last {
		t.Fatalf("refused changes moved the log from %d to %d", last, now)
	}

	// Remove a follower; the group keeps committing with the rest.
	victim := otherThan(c, leader)
	mr = c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(5 * time.Second), Op: actors.MembershipOp_REMOVE, Id: victim}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("remove: %v", mr.Error)
	}
	assertCommitted(t, c, leader, mr.Index)
	for _, m := range mr.Members {
		if m.Id == victim {
			t.Fatalf("removed %s still a member: %v", victim, mr.Members)
		}
	}
	c.Stop(victim)
	c.Put("after-remove", "ok")
	c.WaitValue("n4", "after-remove", "ok")

	// Members agrees with the change.
	ms := c.MustAsk(leader, &actors.MembersRequest{}).(*actors.MembersResponse)
	if len(ms.Members) != 3 {
		t.Fatalf("members after remove: %v", ms.Members)
	}
}

func TestTransferLeadership(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	target := otherThan(c, leader)
	tr := c.MustAsk(leader, &actors.TransferLeadershipRequest{Meta: grouptest.Meta(5 * time.Second), Id: target}).(*actors.TransferLeadershipResponse)
	if tr.Error.Err() != nil {
		t.Fatalf("transfer: %v", tr.Error)
	}
	if got := c.WaitLeader(); got != target {
		t.Fatalf("leader after transfer %s, want %s", got, target)
	}
	c.Put("after-transfer", "ok")
}

func TestPartitionMinorityCannotCommit(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	c.Put("before", "1")
	var majority []string
	for _, id := range c.IDs() {
		if id != leader {
			majority = append(majority, id)
		}
	}
	c.Faults.Isolate(raft.ServerID(leader))

	// The old leader may still think it leads for a moment; nothing it
	// accepts can commit.
	r := c.MustAsk(leader, &actors.WriteRequest{Meta: grouptest.Meta(time.Second), Command: kvstore.Put("minority", []byte("x"))}).(*actors.WriteResponse)
	if r.Error.Err() == nil {
		t.Fatalf("the isolated leader acknowledged a write: index %d", r.Index)
	}
	rr, _ := c.Get(leader, "before", actors.Consistency_LINEARIZABLE)
	if rr.Error.Err() == nil {
		t.Fatalf("the isolated leader served a linearizable read")
	}

	newLeader := c.WaitLeader(majority...)
	if newLeader == leader {
		t.Fatalf("isolated node still leads the majority")
	}
	resp, err := tryPutTo(c, newLeader, "majority", "2")
	if err != nil {
		t.Fatalf("majority write: %v", err)
	}
	_ = resp

	c.Faults.Heal()
	c.WaitLeader()
	for _, id := range c.IDs() {
		c.WaitValue(id, "majority", "2")
		if _, qr := c.Get(id, "minority", actors.Consistency_STALE); qr != nil && qr.Found {
			t.Fatalf("node %s holds the minority write that was never acknowledged", id)
		}
	}
}

func TestRuntimeTimeoutChange(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	upd := &actors.UpdateTimeoutsRequest{Meta: grouptest.Meta(time.Second), Timeouts: &actors.Timeouts{
		Heartbeat: durationpb.New(300 * time.Millisecond),
		Election:  durationpb.New(400 * time.Millisecond),
	}}
	tr := c.MustAsk(leader, upd).(*actors.TimeoutsResponse)
	if tr.Error.Err() != nil {
		t.Fatalf("update: %v", tr.Error)
	}
	st := c.Status(leader)
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
		tr := c.MustAsk(leader, &actors.UpdateTimeoutsRequest{Meta: grouptest.Meta(time.Second), Timeouts: b.t}).(*actors.TimeoutsResponse)
		if actors.CodeOf(tr.Error) != actors.Code_INVALID_ARGUMENT || tr.Error.Field != b.field {
			t.Fatalf("%v: got %v, want INVALID_ARGUMENT on %s", b.t, tr.Error, b.field)
		}
	}
	got := c.MustAsk(leader, &actors.GetTimeoutsRequest{}).(*actors.TimeoutsResponse).Timeouts
	if got.Heartbeat.AsDuration() != 300*time.Millisecond || got.Election.AsDuration() != 400*time.Millisecond {
		t.Fatalf("refused changes changed timeouts: %v", got)
	}
	c.Put("still", "works")
}

func TestLeaderChangedEvents(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	events := make(chan *actors.LeaderChanged, 64)
	sub := c.System.EventStream.Subscribe(func(ev any) {
		if lc, ok := ev.(*actors.LeaderChanged); ok {
			select {
			case events <- lc:
			default:
			}
		}
	})
	defer c.System.EventStream.Unsubscribe(sub)
	leader := c.WaitLeader()
	c.Stop(leader)
	next := c.WaitLeader()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Leader.GetId() == next && ev.Term > 0 && ev.Group == grouptest.Group && ev.Leader.Address == c.Address(next) {
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
	system := testutil.NewSystem(t)
	props, err := raftactor.Props(raftactor.Config{Group: "g", ID: "n1", DataDir: dir,
		NewStateMachine: func() raftactor.StateMachine { return kvstore.New() }})
	if err != nil {
		t.Fatal(err)
	}
	pid := system.Root.Spawn(props)
	defer func() { _ = system.Root.StopFuture(pid).Wait() }()
	started, err := system.Root.RequestFuture(pid, raftactor.AwaitStart{}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := started.(*raftactor.StartResult).Err; !errors.Is(err, raftactor.ErrUnknownFormat) {
		t.Fatalf("start of a node with an unknown format: %v, want ErrUnknownFormat", err)
	}
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
			c.Bootstrap = []raftactor.Voter{{ID: "n1", Address: "nonhost/a"}, {ID: "n1", Address: "nonhost/b"}}
		}},
		{"bootstrap[0].address", func(c *raftactor.Config) {
			c.Bootstrap = []raftactor.Voter{{ID: "n1", Address: "[::]:80/a"}}
		}},
		{"bootstrap", func(c *raftactor.Config) {
			c.Bootstrap = []raftactor.Voter{{ID: "n2", Address: "nonhost/a"}}
		}},
		{"max_write_batch", func(c *raftactor.Config) { c.MaxWriteBatch = -1 }},
		{"log_cache_entries", func(c *raftactor.Config) { c.LogCacheEntries = -2 }},
		{"log_cache_entries", func(c *raftactor.Config) { c.LogCacheEntries = 1 << 20 }},
		{"max_appends_in_flight", func(c *raftactor.Config) { c.MaxAppendsInFlight = 256 }},
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

func tryPutTo(c *grouptest.Nodes, id, key, value string) (*actors.WriteResponse, error) {
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		r, err := c.Ask(id, &actors.WriteRequest{Meta: grouptest.Meta(2 * time.Second), Command: kvstore.Put(key, []byte(value))})
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

func otherThan(c *grouptest.Nodes, id string) string {
	for _, o := range c.IDs() {
		if o != id && c.Node(o).PID != nil {
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
func assertCommitted(t *testing.T, c *grouptest.Nodes, leader string, index uint64) {
	t.Helper()
	if st := c.Status(leader); st.CommitIndex < index || st.ConfigurationIndex < index {
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
	c := grouptest.New(t, 0, nil)
	outcomes := make(chan *actors.Outcome, 16)
	obs := c.System.Root.Spawn(actor.PropsFromFunc(observeOutcomes(outcomes)))
	c.Add("n1", []raftactor.Voter{{ID: "n1", Address: c.Address("n1")}})
	c.Node("n1").Config.OutcomeObservers = []*actor.PID{obs}
	c.Start("n1")
	c.WaitLeader()
	env := &actor.MessageEnvelope{
		Header:  map[string]string{actors.HeaderPrincipal: "alice", actors.HeaderPermit: "7"},
		Message: &actors.WriteRequest{Meta: &actors.RequestMeta{RequestId: "r1"}, Command: kvstore.Put("k", []byte("v"))},
	}
	// A stage forwards a new envelope that keeps the caller as sender.
	f := actor.NewFuture(c.System, 5*time.Second)
	env.Sender = f.PID()
	c.System.Root.Send(c.Node("n1").PID, env)
	if _, err := f.Result(); err != nil {
		t.Fatal(err)
	}
	c.MustAsk("n1", &actors.ReadRequest{Query: kvstore.Get("k"), Consistency: actors.Consistency(42)})
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
	// Outcomes of different requests are told in no promised order: the
	// write's is told when its commit is answered, off the mailbox, and
	// may reach the observer after the refused read's.
	got := map[string]*actors.Outcome{}
	for range want {
		o := next()
		if o == nil {
			t.Fatalf("outcomes told: %v, want one for each of %v", got, want)
		}
		got[o.Op] = o
	}
	for _, w := range want {
		o := got[w.op]
		if o == nil || o.Code != w.code || o.Stage != "node" {
			t.Fatalf("outcome %+v, want %s %v", o, w.op, w.code)
		}
		if w.op == "write" && (o.Principal != "alice" || o.Permit != "7" || o.RequestID != "r1") {
			t.Fatalf("outcome lost the request's identity: %+v", o)
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
	c := grouptest.New(t, 0, nil)
	outcomes := make(chan *actors.Outcome, 4*requests)
	obs := c.System.Root.Spawn(actor.PropsFromFunc(observeOutcomes(outcomes)))
	c.Add("n1", []raftactor.Voter{{ID: "n1", Address: c.Address("n1")}})
	c.Node("n1").Config.OutcomeObservers = []*actor.PID{obs}
	c.Start("n1")
	c.WaitLeader()
	var futures []*actor.Future
	for i := range requests {
		var req actors.Request = &actors.ReadRequest{Query: kvstore.Get("k"), Consistency: actors.Consistency_LINEARIZABLE}
		if i%2 == 1 {
			req = &actors.WriteRequest{Command: kvstore.Put("k", []byte("v"))}
		}
		f := actor.NewFuture(c.System, 10*time.Second)
		c.System.Root.Send(c.Node("n1").PID, &actor.MessageEnvelope{
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
	c.Stop("n1")
	c.System.Root.Send(obs, &actors.Outcome{Permit: "end"})
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
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	var healthy, cut string
	for _, id := range c.IDs() {
		if id != leader {
			if cut == "" {
				cut = id
			} else {
				healthy = id
			}
		}
	}
	c.Faults.Isolate(raft.ServerID(cut))
	testutil.Eventually(t, cut+" follows no leader once cut off", func() bool { return c.Status(cut).GetLeader() == nil })
	last := c.Status(leader).LastIndex
	for _, op := range []actors.MembershipOp{actors.MembershipOp_REMOVE, actors.MembershipOp_DEMOTE} {
		mr := c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(5 * time.Second), Op: op, Id: healthy}).(*actors.MembershipResponse)
		if actors.CodeOf(mr.Error) != actors.Code_INVALID_ARGUMENT || mr.Error.Field != "id" {
			t.Fatalf("%v of a healthy voter with another cut off: %v, want INVALID_ARGUMENT on id", op, mr.Error)
		}
	}
	if now := c.Status(leader).LastIndex; now != last {
		t.Fatalf("refused changes moved the log from %d to %d", last, now)
	}
	mr := c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(5 * time.Second), Op: actors.MembershipOp_REMOVE, Id: cut}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("removing the unreachable voter: %v", mr.Error)
	}
	c.Faults.Heal()
	c.Put("after", "ok")
}

// An isolated leader appends entries that never commit; once healed, the
// new leader's log overwrites them and the node truncates its log's tail.
// It must then restart from its directory like any other node (raft-wal
// before v0.4.1 marked the truncated tail segment sealed without an index,
// and Raft panicked reading it at the next start).
func TestRestartAfterTheLogTailWasTruncated(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	old := c.WaitLeader()
	c.Put("before", "1")
	c.Faults.Isolate(raft.ServerID(old))
	for i := range 3 {
		r := c.MustAsk(old, &actors.WriteRequest{Meta: grouptest.Meta(300 * time.Millisecond), Command: kvstore.Put(fmt.Sprint("lost", i), []byte("x"))}).(*actors.WriteResponse)
		if r.Error.Err() == nil {
			t.Fatalf("the isolated leader acknowledged a write")
		}
	}
	// The precondition of the truncation: entries beyond the commit index.
	if st := c.Status(old); st.LastIndex <= st.CommitIndex {
		t.Fatalf("the isolated leader holds no uncommitted entry: last %d, commit %d", st.LastIndex, st.CommitIndex)
	}
	var majority []string
	for _, id := range c.IDs() {
		if id != old {
			majority = append(majority, id)
		}
	}
	newLeader := c.WaitLeader(majority...)
	for i := range 5 {
		if _, err := tryPutTo(c, newLeader, fmt.Sprint("k", i), "2"); err != nil {
			t.Fatalf("majority write: %v", err)
		}
	}
	c.Faults.Heal()
	c.WaitValue(old, "k4", "2")
	for range 2 {
		c.Stop(old)
		c.Start(old)
		c.Put("after-restart", "3")
		c.WaitValue(old, "after-restart", "3")
	}
	if _, qr := c.Get(old, "lost0", actors.Consistency_STALE); qr != nil && qr.Found {
		t.Fatalf("the restarted node holds a write that never committed")
	}
}

// A voter whose answers do not reach the leader (a one-way cut: it hears
// the leader, the leader does not hear it) is no part of a reachable
// quorum, even though it follows the leader with a fresh contact: removing
// a healthy voter then would leave the group unable to commit. The guard
// asks with leadership probes, which take the same way as Raft's RPCs and
// their faults.
func TestRemovalRefusedWhenAVoterCannotAnswerTheLeader(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	c.Put("k", "v")
	var healthy, mute string
	for _, id := range c.IDs() {
		switch {
		case id == leader:
		case mute == "":
			mute = id
		default:
			healthy = id
		}
	}
	c.Faults.Cut(raft.ServerID(mute), raft.ServerID(leader))
	// The mute voter still follows the leader, and heard from it lately:
	// asked by any other way than through the network between them, it
	// would look reachable.
	if st := c.Status(mute); st.GetLeader().GetId() != leader {
		t.Fatalf("%s follows %v, want %s", mute, st.GetLeader(), leader)
	}
	mr := c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(5 * time.Second), Op: actors.MembershipOp_REMOVE, Id: healthy}).(*actors.MembershipResponse)
	if actors.CodeOf(mr.Error) != actors.Code_INVALID_ARGUMENT || mr.Error.Field != "id" {
		t.Fatalf("removing %s while %s cannot answer the leader: %v, want INVALID_ARGUMENT on id", healthy, mute, mr.Error)
	}
	c.Faults.Heal()
	// Once every voter answers, a demotion goes through. A busy machine may
	// see an election meanwhile (UNAVAILABLE, leadership lost): that is
	// retried with whoever leads then, as a client would.
	deadline := time.Now().Add(testutil.WaitFor)
	for {
		leader = c.WaitLeader()
		target := healthy
		if target == leader {
			target = mute
		}
		mr = c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(5 * time.Second), Op: actors.MembershipOp_DEMOTE, Id: target}).(*actors.MembershipResponse)
		if mr.Error.Err() == nil {
			break
		}
		if !actors.Retryable(mr.Error.GetCode()) || time.Now().After(deadline) {
			t.Fatalf("demoting %s once every voter answers: %v", target, mr.Error)
		}
	}
}

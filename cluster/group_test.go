package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

func TestConfigValidateNamesTheField(t *testing.T) {
	valid := func() cluster.Config {
		return cluster.Config{
			Node: raftactor.Config{
				Group:           "g",
				ID:              "n1",
				DataDir:         "/tmp/unused",
				NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
			},
			Bootstrap: []cluster.Peer{{ID: "n1", Address: "10.0.0.1:8090"}, {ID: "n2", Address: "node2.example:8090"}},
		}
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cases := []struct {
		name  string
		edit  func(*cluster.Config)
		field string
	}{
		{"empty group", func(c *cluster.Config) { c.Node.Group = "" }, "node.group"},
		{"group with slash", func(c *cluster.Config) { c.Node.Group = "a/b" }, "node.group"},
		{"empty node id", func(c *cluster.Config) { c.Node.ID = "" }, "node.id"},
		{"node id too long", func(c *cluster.Config) { c.Node.ID = string(make([]byte, 65)) }, "node.id"},
		{"no data dir", func(c *cluster.Config) { c.Node.DataDir = "" }, "node.data_dir"},
		{"no state machine", func(c *cluster.Config) { c.Node.NewStateMachine = nil }, "node.new_state_machine"},
		{"bootstrap id", func(c *cluster.Config) { c.Bootstrap[1].ID = "-x" }, "bootstrap[1].id"},
		{"bootstrap address", func(c *cluster.Config) { c.Bootstrap[1].Address = "node2" }, "bootstrap[1].address"},
		{"bootstrap port", func(c *cluster.Config) { c.Bootstrap[1].Address = "node2:0" }, "bootstrap[1].address"},
		{"bootstrap wildcard", func(c *cluster.Config) { c.Bootstrap[0].Address = "0.0.0.0:8090" }, "bootstrap[0].address"},
		{"bootstrap duplicate", func(c *cluster.Config) { c.Bootstrap[1].ID = "n1" }, "bootstrap[1].id"},
		{"bootstrap without self", func(c *cluster.Config) { c.Node.ID = "n3" }, "bootstrap"},
		{"heartbeat too short", func(c *cluster.Config) { c.Node.Timeouts.Heartbeat = time.Millisecond }, "node.timeouts.heartbeat"},
		{"lease over heartbeat", func(c *cluster.Config) {
			c.Node.Timeouts = raftactor.Timeouts{Heartbeat: 100 * time.Millisecond, Election: 100 * time.Millisecond, LeaderLease: time.Second}
		}, "node.timeouts.leader_lease"},
		{"node wiring set", func(c *cluster.Config) { c.Node.OnPolicy = func([]byte, uint64) {} }, "node"},
		{"node bootstrap set", func(c *cluster.Config) { c.Node.Bootstrap = []raftactor.Voter{{ID: "n1", Address: "nonhost/x"}} }, "node.bootstrap"},
		{"negative session ttl", func(c *cluster.Config) { c.Node.SessionTTL = -time.Second }, "node.session_ttl"},
		{"request timeout too long", func(c *cluster.Config) { c.Node.RequestTimeout = time.Hour }, "node.request_timeout"},
		{"negative rpc timeout", func(c *cluster.Config) { c.Node.RPCTimeout = -time.Second }, "node.rpc_timeout"},
		{"negative wal segment", func(c *cluster.Config) { c.Node.WALSegmentSize = -1 }, "node.wal_segment_size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.edit(&cfg)
			err := cfg.Validate()
			code, field := codeAndField(err)
			if code != actors.Code_INVALID_ARGUMENT || field != tc.field {
				t.Fatalf("got %v (%v, %q), want INVALID_ARGUMENT naming %q", err, code, field, tc.field)
			}
		})
	}
	inMem := valid()
	inMem.Node.DataDir, inMem.Node.InMemory = "", true
	if err := inMem.Validate(); err != nil {
		t.Fatalf("in-memory config: %v", err)
	}
}

func TestSpawnNamesChildrenAndRefusesWhatItCannotStart(t *testing.T) {
	h := grouptest.NewGroups(t)
	cfg := h.Config("g", "n1", grouptest.Peers("n1"))
	g := h.Spawn(cfg)

	// The children sit under the supervisor with the fixed names that
	// FrontDoorOf relies on, and they all exist.
	base := "protoraft/g/n1"
	if g.Node().Id != base+"/node" || g.FrontDoor().Id != base+"/door" {
		t.Fatalf("node %s, front door %s", g.Node(), g.FrontDoor())
	}
	for _, child := range []string{"", "/node", "/metrics", "/limiter", "/door"} {
		if _, ok := h.System.ProcessRegistry.GetLocal(base + child); !ok {
			t.Errorf("actor %s does not exist", base+child)
		}
	}
	if got := g.RaftAddress(); got != actors.LocalSystemAddress+"/"+base+"/node" {
		t.Fatalf("raft address %s", got)
	}
	if door, err := cluster.FrontDoorOf(g.RaftAddress()); err != nil || !door.Equal(g.FrontDoor()) {
		t.Fatalf("FrontDoorOf(%s) = %v, %v; want %s", g.RaftAddress(), door, err, g.FrontDoor())
	}
	if !g.Self().FrontDoor("g").Equal(g.FrontDoor()) {
		t.Fatalf("Self().FrontDoor = %s", g.Self().FrontDoor("g"))
	}
	// The node's own idea of its address is the one the group computes.
	lr := h.Ask(g.FrontDoor(), &actors.LeaderRequest{Meta: meta()}).(*actors.LeaderResponse)
	if lr.GetNode().GetAddress() != g.RaftAddress() {
		t.Fatalf("node reports address %s, group %s", lr.GetNode().GetAddress(), g.RaftAddress())
	}

	// Same group and ID again in this system: the name is taken.
	again := h.Config("g", "n1", grouptest.Peers("n1"))
	again.Node.DataDir = filepath.Join(h.Dir, "other")
	if _, err := cluster.Spawn(h.System, again); !errors.Is(err, actor.ErrNameExists) {
		t.Fatalf("second n1: %v, want ErrNameExists", err)
	}
	// Another node on the same data directory.
	shared := h.Config("g", "n2", nil)
	shared.Node.DataDir = cfg.Node.DataDir
	if _, err := cluster.Spawn(h.System, shared); !fieldIs(err, "data_dir") {
		t.Fatalf("shared data dir: %v", err)
	}
	// A bootstrap entry for this node must carry this system's address.
	wrong := h.Config("g", "n3", []cluster.Peer{{ID: "n3", Address: "10.0.0.3:8090"}})
	if _, err := cluster.Spawn(h.System, wrong); !fieldIs(err, "bootstrap[0].address") {
		t.Fatalf("foreign bootstrap address: %v", err)
	}
	// A data directory written by a newer build is refused before anything
	// is spawned.
	newer := h.Config("g", "n4", nil)
	if err := os.MkdirAll(newer.Node.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(newer.Node.DataDir, "FORMAT"), []byte("format 99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Spawn(h.System, newer); !errors.Is(err, raftactor.ErrUnknownFormat) {
		t.Fatalf("newer data dir: %v", err)
	}
	if _, ok := h.System.ProcessRegistry.GetLocal("protoraft/g/n4"); ok {
		t.Fatalf("a refused group left its supervisor behind")
	}
	// An invalid config is refused with the field named.
	bad := h.Config("g", "n5", nil)
	bad.Node.NewStateMachine = nil
	if _, err := cluster.Spawn(h.System, bad); !fieldIs(err, "node.new_state_machine") {
		t.Fatalf("invalid config: %v", err)
	}

	// Stop frees the name and the directory: the node comes back.
	h.Put(g.FrontDoor(), "k", "v")
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if err := g.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	g = h.Spawn(cfg)
	h.WaitValue(g.FrontDoor(), "k", "v")
}

func fieldIs(err error, field string) bool {
	code, f := codeAndField(err)
	return code == actors.Code_INVALID_ARGUMENT && f == field
}

func TestThreeNodeBootstrapElectsAndHintsTheLeadersFrontDoor(t *testing.T) {
	h := grouptest.NewGroups(t)
	_, groups := h.SpawnVoters("g", 3, nil)
	leader := h.WaitLeader(groups...)

	wr := h.Ask(leader.FrontDoor(), &actors.WriteRequest{Meta: meta(), Command: kvstore.Put("k", []byte("v"))}).(*actors.WriteResponse)
	if err := wr.Error.Err(); err != nil {
		t.Fatalf("write at the leader's front door: %v", err)
	}
	for _, g := range groups {
		if g == leader {
			continue
		}
		wr := h.Ask(g.FrontDoor(), &actors.WriteRequest{Meta: meta(), Command: kvstore.Put("k", []byte("w"))}).(*actors.WriteResponse)
		if actors.CodeOf(wr.Error) != actors.Code_NOT_LEADER || wr.Error.Leader == nil {
			t.Fatalf("write at follower %s: %v, want NOT_LEADER with a hint", g.Self().ID, wr.Error)
		}
		door, err := cluster.FrontDoorOf(wr.Error.Leader.Address)
		if err != nil || !door.Equal(leader.FrontDoor()) {
			t.Fatalf("hint %v leads to %v (%v), want %s", wr.Error.Leader, door, err, leader.FrontDoor())
		}
		h.WaitValue(g.FrontDoor(), "k", "v")
	}
	st := h.Status(leader)
	if len(st.Members) != 3 || suffrageOf(st.Members, "n1") != "VOTER" || suffrageOf(st.Members, "n3") != "VOTER" {
		t.Fatalf("members %v", st.Members)
	}
}

func TestRestartWithBootstrapKeepsTheGroup(t *testing.T) {
	h := grouptest.NewGroups(t)
	cfgs, groups := h.SpawnVoters("g", 3, nil)
	leader := h.WaitLeader(groups...)
	for i := range 10 {
		h.Put(leader.FrontDoor(), fmt.Sprintf("k%d", i), "v")
	}
	before := h.Status(leader)

	// Stop every node and spawn it again with the same Bootstrap: a second
	// bootstrap would either fail (Raft refuses it on existing state) or,
	// on wiped state, lose the writes; the group must simply come back.
	for _, g := range groups {
		if err := g.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	for i, cfg := range cfgs {
		groups[i] = h.Spawn(cfg)
	}
	leader = h.WaitLeader(groups...)
	// Status counts what the state machine applied, and a restarted node
	// applies its log again only once it knows the commit index.
	var after *actors.StatusResponse
	testutil.Eventually(t, "the restarted leader applied its log again", func() bool {
		after = h.Status(leader)
		return after.AppliedIndex >= before.LastIndex
	})
	if len(after.Members) != 3 {
		t.Fatalf("members after restart: %v", after.Members)
	}
	if after.Term < before.Term || after.LastIndex < before.LastIndex || after.ConfigurationIndex != before.ConfigurationIndex {
		t.Fatalf("after restart: term %d last %d config %d; before: term %d last %d config %d",
			after.Term, after.LastIndex, after.ConfigurationIndex, before.Term, before.LastIndex, before.ConfigurationIndex)
	}
	for _, g := range groups {
		for i := range 10 {
			h.WaitValue(g.FrontDoor(), fmt.Sprintf("k%d", i), "v")
		}
	}
	h.Put(groups[0].FrontDoor(), "after", "restart")
}

func TestJoinAddsANonvoterAndPromotesItOnceCaughtUp(t *testing.T) {
	h := grouptest.NewGroups(t)
	_, groups := h.SpawnVoters("g", 3, nil)
	leader := h.WaitLeader(groups...)
	for i := range 30 {
		h.Put(leader.FrontDoor(), fmt.Sprintf("k%d", i), "v")
	}

	n4 := h.Spawn(h.Config("g", "n4", nil))

	// While nothing reaches n4 it cannot catch up: Join gives up when its
	// context ends, n4 stays a non-voter, and the group keeps committing
	// with its three voters.
	h.Faults.Cut(faults.AnyNode, "n4")
	short, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err := n4.Join(short, groups[0].Self())
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join of an unreachable node: %v, want the context's deadline", err)
	}
	leader = h.WaitLeader(groups...)
	if s := suffrageOf(h.Status(leader).Members, "n4"); s != "NONVOTER" {
		t.Fatalf("n4 is %s while it cannot catch up, want NONVOTER", s)
	}
	h.Put(leader.FrontDoor(), "during", "join")

	// Once it is reachable, Join finishes: n4 catches up and is promoted.
	h.Faults.Heal()
	ctx := testContext(t)
	if err := n4.Join(ctx, groups[1].Self(), groups[0].Self()); err != nil {
		t.Fatalf("join: %v", err)
	}
	leader = h.WaitLeader(append(groups, n4)...)
	if s := suffrageOf(h.Status(leader).Members, "n4"); s != "VOTER" {
		t.Fatalf("n4 is %s after Join, want VOTER", s)
	}
	for i := range 30 {
		h.WaitValue(n4.FrontDoor(), fmt.Sprintf("k%d", i), "v")
	}
	h.WaitValue(n4.FrontDoor(), "during", "join")
	// Join again is a no-op, and the group commits with four voters.
	if err := n4.Join(ctx, groups[2].Self()); err != nil {
		t.Fatalf("second join: %v", err)
	}
	h.Put(n4.FrontDoor(), "with", "four")
	h.WaitValue(n4.FrontDoor(), "with", "four")
}

// A joiner that has caught up by its own account is still promoted only
// once the leader hears that from it: while its answers do not reach the
// leader, the leader refuses the promotion (UNAVAILABLE), Join asks again
// until its context ends, and the node stays a non-voter. Once the leader
// hears it, Join finishes.
func TestJoinPromotesOnlyWhenTheLeaderHearsTheJoiner(t *testing.T) {
	h := grouptest.NewGroups(t)
	_, groups := h.SpawnVoters("g", 3, nil)
	leader := h.WaitLeader(groups...)
	for i := range 10 {
		h.Put(leader.FrontDoor(), fmt.Sprintf("k%d", i), "v")
	}

	// An earlier Join was interrupted after n4 became a non-voter, and n4
	// has caught up since.
	n4 := h.Spawn(h.Config("g", "n4", nil))
	mr := h.Ask(leader.FrontDoor(), &actors.MembershipRequest{Meta: meta(), Op: actors.MembershipOp_ADD_NONVOTER, Id: "n4", Address: n4.RaftAddress()}).(*actors.MembershipResponse)
	if err := mr.Error.Err(); err != nil {
		t.Fatalf("add n4 as a non-voter: %v", err)
	}
	h.WaitValue(n4.FrontDoor(), "k9", "v")

	// n4 hears the leader, the leader does not hear n4.
	h.Faults.Cut("n4", faults.AnyNode)
	short, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err := n4.Join(short, groups[0].Self())
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join of a node the leader cannot hear: %v, want the context's deadline", err)
	}
	leader = h.WaitLeader(groups...)
	if s := suffrageOf(h.Status(leader).Members, "n4"); s != "NONVOTER" {
		t.Fatalf("n4 is %s while the leader cannot hear it, want NONVOTER", s)
	}
	h.Put(leader.FrontDoor(), "during", "join")

	h.Faults.Heal()
	if err := n4.Join(testContext(t), groups[1].Self()); err != nil {
		t.Fatalf("join once healed: %v", err)
	}
	leader = h.WaitLeader(append(groups, n4)...)
	if s := suffrageOf(h.Status(leader).Members, "n4"); s != "VOTER" {
		t.Fatalf("n4 is %s after Join, want VOTER", s)
	}
	h.WaitValue(n4.FrontDoor(), "during", "join")
}

func TestJoinIsRefusedForAnIDInUseBeforeRaftIsTouched(t *testing.T) {
	h := grouptest.NewGroups(t)
	_, groups := h.SpawnVoters("g", 3, nil)
	leader := h.WaitLeader(groups...)

	// n5 is already a (non-voting) member at another address.
	elsewhere := actors.LocalSystemAddress + "/protoraft/g/elsewhere/node"
	mr := h.Ask(leader.FrontDoor(), &actors.MembershipRequest{Meta: meta(), Op: actors.MembershipOp_ADD_NONVOTER, Id: "n5", Address: elsewhere}).(*actors.MembershipResponse)
	if err := mr.Error.Err(); err != nil {
		t.Fatalf("add n5 elsewhere: %v", err)
	}
	before := h.Status(leader).LastIndex

	n5 := h.Spawn(h.Config("g", "n5", nil))
	err := n5.Join(testContext(t), groups[0].Self())
	if !fieldIs(err, "id") {
		t.Fatalf("join with an ID in use: %v, want INVALID_ARGUMENT naming id", err)
	}
	st := h.Status(leader)
	if st.LastIndex != before {
		t.Fatalf("refused join changed the log: last index %d, was %d", st.LastIndex, before)
	}
	if findAddress(st.Members, "n5") != elsewhere {
		t.Fatalf("n5 moved: %v", st.Members)
	}
	// A malformed member address is refused before anything is sent.
	if err := n5.Join(testContext(t), cluster.Peer{ID: "n1", Address: "no-port"}); !fieldIs(err, "members[0].address") {
		t.Fatalf("join via a malformed address: %v", err)
	}
	if err := n5.Join(testContext(t)); !fieldIs(err, "members") {
		t.Fatalf("join via nobody: %v", err)
	}
}

func findAddress(members []*actors.Server, id string) string {
	for _, m := range members {
		if m.Id == id {
			return m.Address
		}
	}
	return ""
}

func TestLeaveOfTheLeaderMovesLeadershipAndRemovesIt(t *testing.T) {
	h := grouptest.NewGroups(t)
	_, groups := h.SpawnVoters("g", 3, nil)
	leader := h.WaitLeader(groups...)
	h.Put(leader.FrontDoor(), "before", "leave")

	if err := leader.Leave(testContext(t)); err != nil {
		t.Fatalf("leave: %v", err)
	}
	var rest []*cluster.Group
	for _, g := range groups {
		if g != leader {
			rest = append(rest, g)
		}
	}
	next := h.WaitLeader(rest...)
	if next == leader {
		t.Fatal("the node that left still leads")
	}
	if s := suffrageOf(h.Status(next).Members, leader.Self().ID); s != "absent" {
		t.Fatalf("%s is %s after Leave, want absent", leader.Self().ID, s)
	}
	if err := leader.Stop(); err != nil {
		t.Fatal(err)
	}
	h.Put(rest[0].FrontDoor(), "after", "leave")
	for _, g := range rest {
		h.WaitValue(g.FrontDoor(), "after", "leave")
	}
	// Leaving again is a no-op from the remaining members' point of view;
	// the last voter cannot leave.
	if err := rest[0].Leave(testContext(t)); err != nil {
		t.Fatalf("leave of %s: %v", rest[0].Self().ID, err)
	}
	if err := rest[1].Leave(testContext(t)); !fieldIs(err, "node.id") {
		t.Fatalf("leave of the last voter: %v, want INVALID_ARGUMENT naming node.id", err)
	}
}

func TestGroupsInOneSystemAreIndependent(t *testing.T) {
	h := grouptest.NewGroups(t)
	a := h.Spawn(h.Config("a", "n1", grouptest.Peers("n1")))
	b := h.Spawn(h.Config("b", "n1", grouptest.Peers("n1")))
	if a.FrontDoor().Equal(b.FrontDoor()) {
		t.Fatalf("groups share a front door %s", a.FrontDoor())
	}
	h.WaitLeader(a)
	h.WaitLeader(b)

	h.Put(a.FrontDoor(), "k", "in-a")
	h.Put(b.FrontDoor(), "only-b", "yes")
	if v, ok := h.Read(b.FrontDoor(), "k"); ok {
		t.Fatalf("b sees a's write: %q", v)
	}
	if _, ok := h.Read(a.FrontDoor(), "only-b"); ok {
		t.Fatal("a sees b's write")
	}

	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	h.Put(b.FrontDoor(), "k", "in-b")
	if v, ok := h.Read(b.FrontDoor(), "k"); !ok || v != "in-b" {
		t.Fatalf("b after a stopped: %q %v", v, ok)
	}
	select {
	case <-b.Done():
		t.Fatal("b stopped with a")
	default:
	}
}

// crashOn panics inside the node actor when it receives a write of key.
func crashOn(key string) actor.PropsOption {
	crash := string(kvstore.Put(key, []byte("boom")))
	return actor.WithReceiverMiddleware(func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(ctx actor.ReceiverContext, env *actor.MessageEnvelope) {
			if w, ok := env.Message.(*actors.WriteRequest); ok && string(w.Command) == crash {
				panic("injected crash")
			}
			next(ctx, env)
		}
	})
}

func TestPanicInTheNodeIsRestartedByTheGroupSupervisor(t *testing.T) {
	h := grouptest.NewGroups(t)
	cfg := h.Config("g", "n1", grouptest.Peers("n1"))
	cfg.NodeOptions = []actor.PropsOption{crashOn("crash")}
	g := h.Spawn(cfg)
	h.WaitLeader(g)
	h.Put(g.FrontDoor(), "k", "before")
	termBefore := h.Status(g).Term

	// The panic drops the message, so its sender only sees a timeout.
	_, err := h.System.Root.RequestFuture(g.FrontDoor(), &actors.WriteRequest{Meta: meta(), Command: kvstore.Put("crash", []byte("boom"))}, 500*time.Millisecond).Result()
	if !errors.Is(err, actor.ErrTimeout) {
		t.Fatalf("crashing write: %v, want a timeout", err)
	}
	h.WaitLeader(g)
	h.Put(g.FrontDoor(), "k", "after")
	h.WaitValue(g.FrontDoor(), "k", "after")
	st := h.Status(g)
	if st.Term <= termBefore {
		// A restarted node starts Raft again from its directory, and a
		// single voter wins a new election: the term tells the node did
		// restart rather than ignore the crash.
		t.Fatalf("term %d after the crash, %d before", st.Term, termBefore)
	}
	select {
	case <-g.Done():
		t.Fatal("the group stopped instead of restarting its node")
	default:
	}
}

func TestANodeThatKeepsCrashingStopsTheGroup(t *testing.T) {
	h := grouptest.NewGroups(t)
	cfg := h.Config("g", "n1", grouptest.Peers("n1"))
	cfg.NodeOptions = []actor.PropsOption{crashOn("crash")}
	g := h.Spawn(cfg)
	// More crashes than the supervisor restarts within its window.
	for range 12 {
		h.System.Root.Send(g.FrontDoor(), &actors.WriteRequest{Meta: meta(), Command: kvstore.Put("crash", []byte("boom"))})
	}
	select {
	case <-g.Done():
	case <-time.After(testutil.WaitFor):
		t.Fatal("the group kept running without its node")
	}
	// Its front door is gone too: callers learn it at once.
	_, err := h.System.Root.RequestFuture(g.FrontDoor(), &actors.LeaderRequest{Meta: meta()}, 5*time.Second).Result()
	if !errors.Is(err, actor.ErrDeadLetter) {
		t.Fatalf("request to a stopped group: %v, want a dead letter", err)
	}
	// The data directory is free again: the node can be spawned anew.
	g = h.Spawn(cfg)
	h.WaitLeader(g)
}

package raftactor_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/internal/wire"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// Every bad input is refused with INVALID_ARGUMENT naming the field, and
// the log does not move.
func TestBadInputsRefusedBeforeRaft(t *testing.T) {
	c := grouptest.New(t, 1, func(cfg *raftactor.Config) {
		cfg.CheckPolicy = func(doc []byte) *actors.Error {
			if !bytes.HasPrefix(doc, []byte("ok")) {
				return actors.InvalidArgument("roles.r[0]", "line 3: unknown operation")
			}
			return nil
		}
	})
	leader := c.WaitLeader()
	c.Put("k", "v") // the leader's own entry, so the index below is settled
	// A linearizable read waits for the term's barrier, which the leader's
	// first stamp of the replicated clock may issue after the write:
	// after the read no other entry of the term comes by itself.
	c.Get(leader, "k", actors.Consistency_LINEARIZABLE)
	self := c.Address(leader)
	m := func() *actors.RequestMeta { return grouptest.Meta(3 * time.Second) }
	member := func(op actors.MembershipOp, id, addr string) *actors.MembershipRequest {
		return &actors.MembershipRequest{Meta: m(), Op: op, Id: id, Address: addr}
	}
	cases := []struct {
		name  string
		req   actors.Request
		field string
	}{
		{"empty node id", member(actors.MembershipOp_ADD_VOTER, "", "nonhost/x"), "id"},
		{"node id pattern", member(actors.MembershipOp_ADD_VOTER, "bad id", "nonhost/x"), "id"},
		{"node id length", member(actors.MembershipOp_ADD_NONVOTER, strings.Repeat("a", 65), "nonhost/x"), "id"},
		{"address without actor", member(actors.MembershipOp_ADD_VOTER, "n9", "127.0.0.1:7000"), "address"},
		{"address port range", member(actors.MembershipOp_ADD_VOTER, "n9", "127.0.0.1:70000/x"), "address"},
		{"address port zero", member(actors.MembershipOp_ADD_VOTER, "n9", "127.0.0.1:0/x"), "address"},
		{"address wildcard", member(actors.MembershipOp_ADD_VOTER, "n9", "0.0.0.0:7000/x"), "address"},
		{"address IPv6 wildcard", member(actors.MembershipOp_ADD_VOTER, "n9", "[::]:7000/x"), "address"},
		{"address host syntax", member(actors.MembershipOp_ADD_VOTER, "n9", "bad_host!:7000/x"), "address"},
		{"duplicate address", member(actors.MembershipOp_ADD_VOTER, "n9", self), "address"},
		{"duplicate id", member(actors.MembershipOp_ADD_NONVOTER, leader, "nonhost/other"), "id"},
		{"remove last voter", member(actors.MembershipOp_REMOVE, leader, ""), "id"},
		{"demote last voter", member(actors.MembershipOp_DEMOTE, leader, ""), "id"},
		{"remove non-member", member(actors.MembershipOp_REMOVE, "n9", ""), "id"},
		{"transfer to bad id", &actors.TransferLeadershipRequest{Meta: m(), Id: "no such!"}, "id"},
		{"command size", &actors.WriteRequest{Meta: m(), Command: make([]byte, raftactor.DefaultMaxCommandSize+1)}, "command"},
		{"query size", &actors.ReadRequest{Meta: m(), Query: make([]byte, raftactor.DefaultMaxQuerySize+1)}, "query"},
		{"deadline too far", &actors.WriteRequest{Meta: &actors.RequestMeta{DeadlineUnixNano: time.Now().Add(time.Hour).UnixNano()}, Command: kvstore.Put("a", nil)}, "meta.deadline_unix_nano"},
		{"client id length", &actors.WriteRequest{Meta: &actors.RequestMeta{ClientId: strings.Repeat("c", 200), Sequence: 1}, Command: kvstore.Put("a", nil)}, "meta.client_id"},
		{"request id length", &actors.ReadRequest{Meta: &actors.RequestMeta{RequestId: strings.Repeat("r", 300)}}, "meta.request_id"},
		{"timeouts", &actors.UpdateTimeoutsRequest{Meta: m()}, "timeouts"},
		{"empty policy", &actors.PolicyUpdateRequest{Meta: m()}, "document"},
		{"bad policy", &actors.PolicyUpdateRequest{Meta: m(), Document: []byte("version: 1")}, "roles.r[0]"},
		{"policy size", &actors.PolicyUpdateRequest{Meta: m(), Document: make([]byte, raftactor.DefaultMaxCommandSize+1)}, "document"},
	}
	before := c.Status(leader)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := c.MustAsk(leader, tc.req).(actors.Response)
			e := res.GetError()
			if actors.CodeOf(e) != actors.Code_INVALID_ARGUMENT || e.Field != tc.field {
				t.Fatalf("got %v, want INVALID_ARGUMENT on %q", e, tc.field)
			}
		})
	}
	// A request that arrives after its deadline is refused before Raft too,
	// as DEADLINE_EXCEEDED: late is not malformed.
	late := c.MustAsk(leader, &actors.WriteRequest{Meta: &actors.RequestMeta{DeadlineUnixNano: time.Now().Add(-time.Second).UnixNano()}, Command: kvstore.Put("a", nil)}).(*actors.WriteResponse)
	if actors.CodeOf(late.Error) != actors.Code_DEADLINE_EXCEEDED {
		t.Fatalf("late write: got %v, want DEADLINE_EXCEEDED", late.Error)
	}
	after := c.Status(leader)
	if after.LastIndex != before.LastIndex || after.CommitIndex != before.CommitIndex {
		t.Fatalf("log moved: last %d -> %d, commit %d -> %d", before.LastIndex, after.LastIndex, before.CommitIndex, after.CommitIndex)
	}
	if len(after.Members) != 1 {
		t.Fatalf("members changed: %v", after.Members)
	}
}

// policyLog records what a node's OnPolicy hook was told.
type policyLog struct {
	mu   sync.Mutex
	docs map[string][]string
}

func (p *policyLog) hook(id string) func([]byte, uint64) {
	return func(doc []byte, index uint64) {
		p.mu.Lock()
		p.docs[id] = append(p.docs[id], fmt.Sprintf("%s@%d", doc, index))
		p.mu.Unlock()
	}
}

func (p *policyLog) last(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.docs[id]; len(d) > 0 {
		return d[len(d)-1]
	}
	return ""
}

// A policy change committed on the leader reaches every node's hook, stays
// out of the user's state machine, and survives a snapshot and a restart.
func TestPolicyReplicatedThroughRaft(t *testing.T) {
	pl := &policyLog{docs: map[string][]string{}}
	c := grouptest.New(t, 3, func(cfg *raftactor.Config) { cfg.OnPolicy = pl.hook(cfg.ID) })
	leader := c.WaitLeader()
	follower := otherThan(c, leader)
	if r := c.MustAsk(follower, &actors.PolicyUpdateRequest{Meta: grouptest.Meta(3 * time.Second), Document: []byte("p1")}).(*actors.PolicyUpdateResponse); actors.CodeOf(r.Error) != actors.Code_NOT_LEADER {
		t.Fatalf("follower accepted a policy change: %v", r.Error)
	}
	r := c.MustAsk(leader, &actors.PolicyUpdateRequest{Meta: grouptest.Meta(3 * time.Second), Document: []byte("p1")}).(*actors.PolicyUpdateResponse)
	if r.Error.Err() != nil || r.Index == 0 {
		t.Fatalf("policy update: %v", r.Error)
	}
	want := fmt.Sprintf("p1@%d", r.Index)
	for _, id := range c.IDs() {
		testutil.Eventually(t, fmt.Sprintf("node %s has policy %q", id, want), func() bool { return pl.last(id) == want })
	}
	c.Put("k", "v") // the state machine still works after a system entry
	if s := c.MustAsk(follower, &actors.SnapshotRequest{Meta: grouptest.Meta(3 * time.Second)}).(*actors.SnapshotResponse); s.Error.Err() != nil {
		t.Fatalf("snapshot: %v", s.Error)
	}
	c.Stop(follower)
	pl.mu.Lock()
	delete(pl.docs, follower)
	pl.mu.Unlock()
	c.Start(follower)
	testutil.Eventually(t, fmt.Sprintf("the restarted node has policy %q from its snapshot", want), func() bool { return pl.last(follower) == want })
}

// With a cluster key the group works, and an RPC without the key's MAC is
// refused before Raft sees it: a forged vote with a huge term does not
// disturb the leader.
func TestClusterKeyRefusesUnauthenticatedRPC(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	c := grouptest.New(t, 3, func(cfg *raftactor.Config) { cfg.ClusterKey = key })
	leader := c.WaitLeader()
	c.Put("k", "v")
	term := c.Status(leader).Term
	for _, auth := range [][]byte{nil, make([]byte, 32), []byte("short")} {
		rpc := &wire.RaftRPC{Group: grouptest.Group, From: c.Address("n9"), Auth: auth,
			Body: &wire.RaftRPC_RequestVote{RequestVote: &wire.RequestVoteRequest{
				Header: &wire.RPCHeader{Id: []byte("n9"), Addr: []byte(c.Address("n9"))},
				Term:   term + 100, Candidate: []byte(c.Address("n9")), LastLogIndex: 1 << 40, LastLogTerm: term + 99,
			}}}
		for _, id := range c.IDs() {
			reply := c.MustAsk(id, rpc).(*wire.RaftRPCReply)
			if !strings.Contains(reply.GetError(), "cluster key") {
				t.Fatalf("node %s answered an unauthenticated vote: %v", id, reply)
			}
		}
	}
	if s := c.Status(leader); s.Term != term || s.State != "Leader" {
		t.Fatalf("leader disturbed: term %d -> %d, state %s", term, s.Term, s.State)
	}
	c.Put("k2", "v2")
}

// A node with another cluster key cannot take part: its votes and appends
// are refused, so it never joins the majority's term.
// A node with another cluster key is refused by the others, and they by
// it: it never learns of the group's writes. The leader's RPCs do reach it
// (it refuses them, which it logs), so it could have caught up had the
// keys matched.
func TestWrongClusterKeyIsolated(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	var from string
	refusals := func() int {
		return logs.FilterMessage("inbound raft rpc refused: not authenticated by the cluster key").
			FilterField(zap.String("from", from)).Len()
	}
	c := grouptest.New(t, 3, func(cfg *raftactor.Config) {
		cfg.ClusterKey = []byte("0123456789abcdef0123456789abcdef")
		if cfg.ID == "n3" {
			cfg.ClusterKey = []byte("another-key-0123456789abcdefghij")
			cfg.Logger = zap.New(core)
		}
	})
	from = c.Address(c.WaitLeader("n1", "n2"))
	commit := c.Put("k", "v").Index
	// The leader keeps sending n3 appends from the committed entry on:
	// three more refusals after the write mean it was offered to n3.
	after := refusals()
	testutil.Eventually(t, "n3 refuses the leader's appends", func() bool { return refusals() >= after+3 })
	if s := c.Status("n3"); s.AppliedIndex >= commit {
		t.Fatalf("n3 with the wrong key applied index %d, the write's %d", s.AppliedIndex, commit)
	}
	if l := c.LeaderSeenBy("n3"); l.GetLeader().GetId() != "" {
		t.Fatalf("n3 with the wrong key follows %v", l.GetLeader())
	}
}

func TestConfigRefusesShortClusterKey(t *testing.T) {
	_, err := raftactor.Props(raftactor.Config{Group: "g", ID: "n1", InMemory: true,
		NewStateMachine: func() raftactor.StateMachine { return kvstore.New() }, ClusterKey: []byte("short"),
		DataDir: filepath.Join(t.TempDir(), "x")})
	if ae, ok := err.(*actors.Error); !ok || ae.Field != "cluster_key" {
		t.Fatalf("got %v", err)
	}
}

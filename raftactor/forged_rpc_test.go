package raftactor_test

import (
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/internal/wire"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
	"github.com/protoraft/protoraft/remoteguard"
)

// forgedRPCs are what a stranger who reaches a node's remote port sends to
// take a group over: a vote request and an append, each posing as member
// as (its ID and its Raft address) with a term far above the group's.
func forgedRPCs(group, as, asAddr string, term uint64) map[string]*wire.RaftRPC {
	header := &wire.RPCHeader{ProtocolVersion: int32(raft.ProtocolVersionMax), Id: []byte(as), Addr: []byte(asAddr)}
	return map[string]*wire.RaftRPC{
		"vote": {Group: group, From: asAddr, Body: &wire.RaftRPC_RequestVote{RequestVote: &wire.RequestVoteRequest{
			Header: header, Term: term, Candidate: []byte(asAddr), LastLogIndex: 1 << 40, LastLogTerm: term - 1,
		}}},
		"append": {Group: group, From: asAddr, Body: &wire.RaftRPC_AppendEntries{AppendEntries: &wire.AppendEntriesRequest{
			Header: header, Term: term, Leader: []byte(asAddr), LeaderCommitIndex: 1 << 40,
		}}},
	}
}

// strangerSystem is an actor system of its own with remote on 127.0.0.1:
// a process that can reach the nodes' ports and holds no key.
func strangerSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()
	sys := testutil.QuietSystem()
	r := remote.NewRemote(sys, remoteguard.Config("127.0.0.1", 0))
	r.Start()
	t.Cleanup(func() {
		r.Shutdown(false)
		sys.Shutdown()
	})
	return sys
}

// forgeAgainst sends every forged RPC, posing as the third node, to every
// node from a stranger's system, and returns the highest term any node is
// in afterwards.
func forgeAgainst(t *testing.T, c *remoteCluster, group string, leader *remoteProcess) (refused int, termAfter uint64) {
	t.Helper()
	term := c.Ask(leader.PID, &actors.StatusRequest{}).(*actors.StatusResponse).Term
	stranger := strangerSystem(t)
	as := c.procs[2]
	asAddr := wire.AddressOf(as.PID)
	for name, rpc := range forgedRPCs(group, string(as.id), string(asAddr), term+1000) {
		for _, p := range c.procs {
			res, err := stranger.Root.RequestFuture(p.PID, rpc, 10*time.Second).Result()
			if err != nil {
				t.Fatalf("forged %s to %s: %v", name, p.id, err)
			}
			if reply, ok := res.(*wire.RaftRPCReply); ok && reply.GetCode() == wire.RPCError_RPC_ERROR_UNAUTHENTICATED {
				refused++
			}
		}
	}
	for _, p := range c.procs {
		termAfter = max(termAfter, c.Ask(p.PID, &actors.StatusRequest{}).(*actors.StatusResponse).Term)
	}
	return refused, termAfter
}

// A stranger's forged vote and append, sent over remote to every node,
// are refused as unauthenticated and change no node's term, and the
// leader keeps leading. The same RPCs against a group that runs without a
// cluster key (InsecureTransport) do push the term up: the refusal is the
// key's doing.
func TestForgedVoteAndAppendChangeNoTerm(t *testing.T) {
	t.Run("with a cluster key", func(t *testing.T) {
		c := startRemoteCluster(t, "fk", false)
		leader := c.leader()
		c.write(leader, 0, 3)
		term := c.Ask(leader.PID, &actors.StatusRequest{}).(*actors.StatusResponse).Term
		refused, after := forgeAgainst(t, c, "fk", leader)
		if refused != 2*len(c.procs) {
			t.Fatalf("%d of %d forged RPCs refused as unauthenticated", refused, 2*len(c.procs))
		}
		if after != term {
			t.Fatalf("forged RPCs moved the term from %d to %d", term, after)
		}
		if !c.Ask(leader.PID, &actors.LeaderRequest{}).(*actors.LeaderResponse).IsLeader {
			t.Fatal("the leader stepped down after forged RPCs")
		}
		c.write(leader, 3, 4)
	})
	t.Run("without one", func(t *testing.T) {
		c := startRemoteCluster(t, "fi", false, func(cfg *raftactor.Config) {
			cfg.ClusterKey, cfg.InsecureTransport = nil, true
		})
		leader := c.leader()
		term := c.Ask(leader.PID, &actors.StatusRequest{}).(*actors.StatusResponse).Term
		refused, after := forgeAgainst(t, c, "fi", leader)
		if refused != 0 || after < term+1000 {
			t.Fatalf("an insecure group: %d forged RPCs refused, term %d -> %d; the forgery should have worked", refused, term, after)
		}
	})
}

// A node whose actor system runs remote does not start without a cluster
// key: AwaitStart says why, and requests are answered UNAVAILABLE. With
// InsecureTransport it starts.
func TestReachableNodeRefusesToStartWithoutAClusterKey(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("several remotes in one process race inside protoactor (grpclog.SetLoggerV2 on every start); covered without -race")
	}
	sys := strangerSystem(t)
	start := func(name string, insecure bool) error {
		props, err := raftactor.Props(raftactor.Config{Group: "nk", ID: "n1", InMemory: true,
			NewStateMachine:   func() raftactor.StateMachine { return kvstore.New() },
			Bootstrap:         []raftactor.Voter{{ID: "n1", Address: sys.Address() + "/" + name}},
			Timeouts:          grouptest.FastTimeouts,
			InsecureTransport: insecure,
		})
		if err != nil {
			t.Fatal(err)
		}
		pid, err := sys.Root.SpawnNamed(props, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
		res, err := sys.Root.RequestFuture(pid, raftactor.AwaitStart{}, 10*time.Second).Result()
		if err != nil {
			t.Fatal(err)
		}
		return res.(*raftactor.StartResult).Err
	}
	err := start("without-key", false)
	var ae *actors.Error
	if !errors.As(err, &ae) || ae.Code != actors.Code_INVALID_ARGUMENT || ae.Field != "cluster_key" {
		t.Fatalf("a reachable node without a cluster key started: %v", err)
	}
	if err := start("insecure", true); err != nil {
		t.Fatalf("with InsecureTransport: %v", err)
	}
}

package raftactor_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/internal/wire"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
	"github.com/protoraft/protoraft/remoteguard"
)

// remoteTestTimeout bounds a wait on a remote connection.
const remoteTestTimeout = 5 * time.Second

// startTLSSystem starts an ActorSystem whose remote demands mutual TLS.
func startTLSSystem(t *testing.T, cfg *tls.Config) *actor.ActorSystem {
	t.Helper()
	opts, err := remoteguard.MutualTLS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sys := testutil.QuietSystem()
	r := remote.NewRemote(sys, remoteguard.Config("127.0.0.1", 0, opts...))
	r.Start()
	t.Cleanup(func() {
		r.Shutdown(false)
		sys.Shutdown()
	})
	return sys
}

// tlsHandshakeRefused dials addr with cfg and reports whether the server
// refused the connection (no stream could be used).
func tlsHandshakeRefused(t *testing.T, addr string, cfg *tls.Config) bool {
	t.Helper()
	conn, err := grpc.Dial(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return true
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), remoteTestTimeout)
	defer cancel()
	stream, err := remote.NewRemotingClient(conn).Receive(ctx)
	if err != nil {
		return true
	}
	err = stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{
		ConnectRequest: &remote.ConnectRequest{ConnectionType: &remote.ConnectRequest_ServerConnection{
			ServerConnection: &remote.ServerConnection{SystemId: "stranger", Address: "127.0.0.1:1"},
		}},
	}})
	if err != nil {
		return true
	}
	_, err = stream.Recv()
	return err != nil
}

// The mutual TLS endpoint refuses a client without a certificate and one
// with a certificate of another CA; a client with a certificate of the
// right CA gets through TLS, but its Raft RPCs without the cluster key are
// refused, and the node's Raft is unaffected.
func TestMutualTLSNegatives(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("several remotes in one process race inside protoactor (grpclog.SetLoggerV2 on every start); covered without -race")
	}
	ca, other := testutil.NewCA(t, "group CA"), testutil.NewCA(t, "other CA")
	server := startTLSSystem(t, ca.Config(ca.Issue(t, "n1")))
	addr := server.Address()

	key := []byte("0123456789abcdef0123456789abcdef")
	props, err := raftactor.Props(raftactor.Config{Group: "g", ID: "n1", InMemory: true, ClusterKey: key,
		NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
		Bootstrap:       []raftactor.Voter{{ID: "n1", Address: addr + "/protoraft/g/n1"}},
		Timeouts:        raftactor.Timeouts{Heartbeat: 100 * time.Millisecond, Election: 100 * time.Millisecond, LeaderLease: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	node, err := server.Root.SpawnNamed(props, "protoraft/g/n1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Root.StopFuture(node).Wait() })
	leaderTerm := func() uint64 {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			res, err := server.Root.RequestFuture(node, &actors.LeaderRequest{}, time.Second).Result()
			if lr, ok := res.(*actors.LeaderResponse); err == nil && ok && lr.IsLeader {
				return lr.Term
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("single node never led")
		return 0
	}
	term := leaderTerm()

	if !tlsHandshakeRefused(t, addr, &tls.Config{RootCAs: ca.Pool}) {
		t.Fatal("a client without a certificate was let in")
	}
	if !tlsHandshakeRefused(t, addr, other.Config(other.Issue(t, "stranger"))) {
		t.Fatal("a client with another CA's certificate was let in")
	}
	otherTrusting := other.Config(other.Issue(t, "stranger"))
	otherTrusting.RootCAs = ca.Pool
	if !tlsHandshakeRefused(t, addr, otherTrusting) {
		t.Fatal("a client certificate of another CA was accepted by the server")
	}

	// A holder of a valid client certificate: TLS lets it in, the cluster
	// key does not.
	intruder := startTLSSystem(t, ca.Config(ca.Issue(t, "intruder")))
	vote := &wire.RaftRPC{Group: "g", From: intruder.Address() + "/x",
		Body: &wire.RaftRPC_RequestVote{RequestVote: &wire.RequestVoteRequest{
			Header: &wire.RPCHeader{ProtocolVersion: int32(raft.ProtocolVersionMax), Id: []byte("x"), Addr: []byte(intruder.Address() + "/x")},
			Term:   term + 10, LastLogIndex: 1 << 40, LastLogTerm: term + 9,
		}}}
	res, err := intruder.Root.RequestFuture(actor.NewPID(addr, "protoraft/g/n1"), vote, remoteTestTimeout).Result()
	if err != nil {
		t.Fatalf("the intruder's request got no answer over mutual TLS: %v", err)
	}
	if reply, ok := res.(*wire.RaftRPCReply); !ok || reply.GetCode() != wire.RPCError_RPC_ERROR_UNAUTHENTICATED {
		t.Fatalf("the intruder's vote was not refused for the cluster key: %v", res)
	}
	if got := leaderTerm(); got != term {
		t.Fatalf("term moved from %d to %d", term, got)
	}
}

package transport

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/internal/link"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/internal/wire"
	"github.com/protoraft/protoraft/remoteguard"
)

// BenchmarkProbeRoundTrip is one LeadershipProbe and its answer, the round
// trip a linearizable read waits for, on each carrier: between local PIDs
// of one ActorSystem, over protoactor remote between two ActorSystems, and
// on a Raft link between them. Whatever a carrier adds to it, it adds to
// every AppendEntries round of a write too.
func BenchmarkProbeRoundTrip(b *testing.B) {
	for _, carrier := range []string{"local", "remote", "link"} {
		b.Run(carrier, func(b *testing.B) {
			st, target := benchTransports(b, carrier, nil)
			probe := func() {
				msg := &wire.RaftRPC{Body: &wire.RaftRPC_LeadershipProbe{LeadershipProbe: &wire.LeadershipProbe{Id: "n1"}}}
				if _, err := st.Call("n2", target, msg, time.Second); err != nil {
					b.Fatal(err)
				}
			}
			warmUp(b, carrier, st, probe)
			b.ReportAllocs()
			for b.Loop() {
				probe()
			}
		})
	}
}

// BenchmarkAppendRoundTrip is one AppendEntries with one 16-byte entry and
// its answer on each carrier, with a stand-in for the follower's Raft that
// answers at once: what the transports add to each replication round of a
// write, both ways, Raft's own work and the disk left out.
func BenchmarkAppendRoundTrip(b *testing.B) {
	for _, carrier := range []string{"local", "remote", "link"} {
		b.Run(carrier, func(b *testing.B) {
			st, target := benchTransports(b, carrier, func(rt *Transport) {
				stop := make(chan struct{})
				b.Cleanup(func() { close(stop) })
				go func() {
					for {
						select {
						case rpc := <-rt.Consumer():
							rpc.Respond(&raft.AppendEntriesResponse{Term: 1, LastLog: 1, Success: true}, nil)
						case <-stop:
							return
						}
					}
				}()
			})
			req := &raft.AppendEntriesRequest{
				RPCHeader: raft.RPCHeader{ID: []byte("n1"), Addr: []byte("n1")},
				Term:      1, PrevLogEntry: 1, PrevLogTerm: 1, LeaderCommitIndex: 1,
				Entries: []*raft.Log{{Index: 2, Term: 1, Type: raft.LogCommand, Data: make([]byte, 16)}},
			}
			appendOnce := func() {
				var resp raft.AppendEntriesResponse
				if err := st.AppendEntries("n2", target, req, &resp); err != nil {
					b.Fatal(err)
				}
			}
			warmUp(b, carrier, st, appendOnce)
			b.ReportAllocs()
			for b.Loop() {
				appendOnce()
			}
		})
	}
}

// benchTransports starts a sending transport n1 and a receiving one n2 on
// carrier, calls follower with the receiver (to stand in for its Raft),
// and returns the sender and n2's address.
func benchTransports(b *testing.B, carrier string, follower func(*Transport)) (*Transport, raft.ServerAddress) {
	b.Helper()
	if carrier != "local" && testutil.RaceEnabled {
		b.Skip("several remotes in one process race inside protoactor")
	}
	from, to := testutil.QuietSystem(), testutil.QuietSystem()
	if carrier == "local" {
		to = from
	} else {
		for _, sys := range []*actor.ActorSystem{from, to} {
			r := remote.NewRemote(sys, remoteguard.Config("127.0.0.1", 0))
			r.Start()
			b.Cleanup(func() { r.Shutdown(false) })
			if carrier == "link" {
				l, err := link.Start(sys, link.Config{Listen: "127.0.0.1:0"})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = l.Close() })
			}
		}
	}
	b.Cleanup(func() {
		from.Shutdown()
		if to != from {
			to.Shutdown()
		}
	})
	receiver := &tcNodeActor{}
	pid, err := to.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return receiver }), "n2")
	if err != nil {
		b.Fatal(err)
	}
	rt := New(Config{System: to, Group: "g", LocalID: "n2", LocalAddr: wire.AddressOf(pid)})
	rt.SetPeerHandler(func(rpc *wire.RaftRPC, reply Reply) {
		reply(raft.ServerID(rpc.GetLeadershipProbe().GetId()), &wire.RaftRPCReply{Body: &wire.RaftRPCReply_LeadershipProbe{LeadershipProbe: &wire.LeadershipProbeAnswer{Term: 1}}})
	})
	receiver.trans.Store(rt)
	st := New(Config{System: from, Group: "g", LocalID: "n1", LocalAddr: raft.ServerAddress(from.Address() + "/n1")})
	b.Cleanup(func() {
		_ = st.Close()
		_ = rt.Close()
	})
	if follower != nil {
		follower(rt)
	}
	return st, wire.AddressOf(pid)
}

// warmUp calls op until, on a link carrier, the link carries it: the first
// calls go through remote while the link is found and dialed.
func warmUp(b *testing.B, carrier string, st *Transport, op func()) {
	b.Helper()
	op()
	if carrier != "link" {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for link.Of(st.cfg.System).Stats().Connections == 0 {
		if time.Now().After(deadline) {
			b.Fatal("the link was never dialed")
		}
		op()
	}
}

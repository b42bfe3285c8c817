package raftactor

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// BenchmarkProbeRoundTrip is one LeadershipProbe and its answer, the round
// trip a linearizable read waits for, on each carrier: between local PIDs
// of one ActorSystem, over protoactor remote between two ActorSystems, and
// on a Raft link between them. Whatever a carrier adds to it, it adds to
// every AppendEntries round of a write too.
func BenchmarkProbeRoundTrip(b *testing.B) {
	for _, carrier := range []string{"local", "remote", "link"} {
		b.Run(carrier, func(b *testing.B) {
			if carrier != "local" && RaceEnabled {
				b.Skip("several remotes in one process race inside protoactor")
			}
			from, to := newTCSystem(), newTCSystem()
			if carrier == "local" {
				to = from
			} else {
				for _, sys := range []*actor.ActorSystem{from, to} {
					r := remote.NewRemote(sys, RemoteConfig("127.0.0.1", 0))
					r.Start()
					b.Cleanup(func() { r.Shutdown(false) })
					if carrier == "link" {
						l, err := StartLink(sys, LinkConfig{Listen: "127.0.0.1:0"})
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
			rt := NewTransport(TransportConfig{System: to, Group: "g", LocalID: "n2", LocalAddr: AddressOf(pid)})
			rt.SetProbeHandler(func(raft.ServerID) *actors.LeadershipProbeAnswer { return &actors.LeadershipProbeAnswer{Term: 1} })
			receiver.trans.Store(rt)
			st := NewTransport(TransportConfig{System: from, Group: "g", LocalID: "n1", LocalAddr: raft.ServerAddress(from.Address() + "/n1")})
			b.Cleanup(func() {
				_ = st.Close()
				_ = rt.Close()
			})
			probe := func() {
				if _, err := st.ProbeLeadership("n2", AddressOf(pid)); err != nil {
					b.Fatal(err)
				}
			}
			probe()
			if carrier == "link" {
				// The first probes went through remote while the link was
				// found and dialed.
				deadline := time.Now().Add(10 * time.Second)
				for LinkOf(from).Stats().Connections == 0 {
					if time.Now().After(deadline) {
						b.Fatal("the link was never dialed")
					}
					probe()
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				probe()
			}
		})
	}
}

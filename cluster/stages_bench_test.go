package cluster_test

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// benchGroup is a one-node group in memory with a leader and one key.
func benchGroup(b *testing.B) (*actor.ActorSystem, *cluster.Group) {
	b.Helper()
	h := grouptest.NewGroups(b)
	cfg := h.Config("bench", "n1", grouptest.Peers("n1"))
	cfg.Node.InMemory, cfg.Node.DataDir = true, ""
	g := h.Spawn(cfg)
	h.Put(g.FrontDoor(), "k", "v")
	return h.System, g
}

// benchAsk sends req to pid and fails the benchmark on any error.
func benchAsk(b *testing.B, system *actor.ActorSystem, pid *actor.PID, req actors.Request) {
	res, err := system.Root.RequestFuture(pid, req, 5*time.Second).Result()
	if err != nil {
		b.Fatal(err)
	}
	if e := res.(actors.Response).GetError().Err(); e != nil {
		b.Fatal(e)
	}
}

// BenchmarkRequestThroughStages is one request through the message path of
// a one-node group in memory: front door, limiter, node and the reply, with
// the outcome told to the stages. A stale read touches no Raft future, so
// front-door vs node-direct is the cost of the stages; a write adds the
// Raft apply (in-memory log, no fsync, no peers).
func BenchmarkRequestThroughStages(b *testing.B) {
	system, g := benchGroup(b)
	read := func() actors.Request {
		return &actors.ReadRequest{Meta: actors.NewMeta(5 * time.Second), Query: kvstore.Get("k"), Consistency: actors.Consistency_STALE}
	}
	value := make([]byte, 16)
	write := func() actors.Request {
		return &actors.WriteRequest{Meta: actors.NewMeta(5 * time.Second), Command: kvstore.Put("k", value)}
	}
	for _, tc := range []struct {
		name string
		pid  *actor.PID
		req  func() actors.Request
	}{
		{"stale-read/front-door", g.FrontDoor(), read},
		{"stale-read/node-direct", g.Node(), read},
		{"linearizable-read/front-door", g.FrontDoor(), func() actors.Request {
			return &actors.ReadRequest{Meta: actors.NewMeta(5 * time.Second), Query: kvstore.Get("k"), Consistency: actors.Consistency_LINEARIZABLE}
		}},
		{"write-16B/front-door", g.FrontDoor(), write},
		{"write-16B/node-direct", g.Node(), write},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchAsk(b, system, tc.pid, tc.req())
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchAsk(b, system, tc.pid, tc.req())
				}
			})
		})
	}
}

package raftactor_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// TestClusterOverRemote runs three nodes in three ActorSystems that talk
// only through protoactor remote on 127.0.0.1: the same node actor and
// transport, remote PIDs instead of local ones.
func TestClusterOverRemote(t *testing.T) {
	if raftactor.RaceEnabled {
		t.Skip("several remotes in one process race inside protoactor (grpclog.SetLoggerV2 on every start); covered without -race")
	}
	const group = "rg"
	type proc struct {
		system *actor.ActorSystem
		remote *remote.Remote
		pid    *actor.PID
	}
	procs := make([]*proc, 3)
	var peers []raftactor.Peer
	for i := range procs {
		sys := raftactor.NewTestSystem()
		r := remote.NewRemote(sys, raftactor.RemoteConfig("127.0.0.1", 0))
		r.Start()
		procs[i] = &proc{system: sys, remote: r}
		id := fmt.Sprintf("n%d", i+1)
		peers = append(peers, raftactor.Peer{ID: id, Address: sys.Address() + "/" + nodeName(group, id)})
	}
	dir := t.TempDir()
	for i, p := range procs {
		id := fmt.Sprintf("n%d", i+1)
		props, err := raftactor.Props(raftactor.Config{
			Group: group, ID: id, DataDir: fmt.Sprintf("%s/%s", dir, id),
			NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
			Bootstrap:       peers,
			Timeouts:        fastTimeouts,
			WALSegmentSize:  1 << 20,
			RPCTimeout:      time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		pid, err := p.system.Root.SpawnNamed(props, nodeName(group, id))
		if err != nil {
			t.Fatal(err)
		}
		p.pid = pid
	}
	t.Cleanup(func() {
		for _, p := range procs {
			_ = p.system.Root.StopFuture(p.pid).Wait()
			p.remote.Shutdown(false)
			p.system.Shutdown()
		}
	})

	// Ask through remote, from the first system, as a client elsewhere would.
	client := procs[0].system.Root
	ask := func(pid *actor.PID, msg any) any {
		t.Helper()
		res, err := client.RequestFuture(pid, msg, 10*time.Second).Result()
		if err != nil {
			t.Fatalf("ask %v: %v", pid, err)
		}
		return res
	}
	var leader *actor.PID
	deadline := time.Now().Add(30 * time.Second)
	for leader == nil && time.Now().Before(deadline) {
		for _, p := range procs {
			if lr := ask(p.pid, &actors.LeaderRequest{}).(*actors.LeaderResponse); lr.IsLeader {
				leader = p.pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if leader == nil {
		t.Fatal("no leader over remote")
	}
	for i := 0; i < 20; i++ {
		wr := ask(leader, &actors.WriteRequest{Meta: meta(5 * time.Second), Command: kvstore.Put(fmt.Sprintf("k%d", i), []byte("v"))}).(*actors.WriteResponse)
		if wr.Error.Err() != nil {
			t.Fatalf("write over remote: %v", wr.Error)
		}
	}
	for _, p := range procs {
		for time.Now().Before(deadline) {
			rr := ask(p.pid, &actors.ReadRequest{Query: kvstore.Get("k19"), Consistency: actors.Consistency_STALE}).(*actors.ReadResponse)
			if qr, err := kvstore.DecodeQueryResult(rr.Result); err == nil && qr.Found {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %v never replicated", p.pid)
		}
	}
}

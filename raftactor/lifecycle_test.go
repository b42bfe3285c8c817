package raftactor_test

import (
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// gatedRestore is a state machine whose Restore waits for its gate: a
// node that restores its snapshot at start is then starting for as long as
// the test wants.
type gatedRestore struct {
	raftactor.StateMachine
	gate chan struct{}
}

func (g gatedRestore) Restore(r io.Reader) error {
	<-g.gate
	return g.StateMachine.Restore(r)
}

// While a node starts (here: its state machine restores a snapshot), a
// request is answered UNAVAILABLE at once instead of waiting in the mailbox
// behind the start; AwaitStart answers when the start has ended.
func TestRequestsDuringAStartAreAnsweredUnavailable(t *testing.T) {
	c := grouptest.New(t, 1, nil)
	c.WaitLeader()
	c.Put("k", "v")
	if sr := c.MustAsk("n1", &actors.SnapshotRequest{Meta: grouptest.Meta(5 * time.Second)}).(*actors.SnapshotResponse); sr.Error.Err() != nil {
		t.Fatal(sr.Error)
	}
	c.Stop("n1")
	gate := make(chan struct{})
	n1 := c.Node("n1")
	var starts atomic.Int32
	n1.Config.NewStateMachine = func() raftactor.StateMachine {
		starts.Add(1)
		return gatedRestore{StateMachine: kvstore.New(), gate: gate}
	}
	props, err := raftactor.Props(n1.Config)
	if err != nil {
		t.Fatal(err)
	}
	if n1.PID, err = c.System.Root.SpawnNamed(props, grouptest.Name("n1")); err != nil {
		t.Fatal(err)
	}
	started := c.System.Root.RequestFuture(n1.PID, raftactor.AwaitStart{}, 30*time.Second)
	c.System.Root.Send(n1.PID, raftactor.AwaitStart{}) // no one to answer: ignored

	res, err := c.System.Root.RequestFuture(n1.PID, &actors.LeaderRequest{}, 5*time.Second).Result()
	if err != nil {
		t.Fatalf("a request while the node starts got no answer: %v", err)
	}
	if code := actors.CodeOf(res.(*actors.LeaderResponse).GetError()); code != actors.Code_UNAVAILABLE {
		t.Fatalf("a request while the node starts: %v, want UNAVAILABLE", code)
	}
	close(gate)
	sres, err := started.Result()
	if err != nil || sres.(*raftactor.StartResult).Err != nil {
		t.Fatalf("start: %v %v", err, sres)
	}
	c.WaitLeader()
	if rr, qr := c.Get("n1", "k", actors.Consistency_LINEARIZABLE); rr.Error.Err() != nil || string(qr.Value) != "v" {
		t.Fatalf("after the start: %v %v", rr.Error, qr)
	}
	if n := starts.Load(); n != 1 {
		t.Fatalf("the node started %d times: it restarted", n)
	}
}

// While a leader stops (here: it tries to hand leadership to followers it
// cannot reach), a request is answered UNAVAILABLE at once; the stop ends
// only once the node's files are closed, so the node can start again on
// them right away.
func TestRequestsDuringAStopAreAnsweredUnavailable(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	c.Put("k", "v")
	c.Faults.Isolate(raft.ServerID(leader))
	pid := c.Node(leader).PID
	stopped := c.System.Root.StopFuture(pid)
	res, err := c.System.Root.RequestFuture(pid, &actors.LeaderRequest{}, 5*time.Second).Result()
	if err != nil {
		t.Fatalf("a request while the leader stops got no answer: %v", err)
	}
	if code := actors.CodeOf(res.(*actors.LeaderResponse).GetError()); code != actors.Code_UNAVAILABLE {
		t.Fatalf("a request while the leader stops: %v, want UNAVAILABLE", code)
	}
	if err := stopped.Wait(); err != nil {
		t.Fatal(err)
	}
	c.Node(leader).PID = nil
	c.Faults.Heal()
	c.Start(leader)
	c.WaitValue(leader, "k", "v")
}

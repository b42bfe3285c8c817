package raftactor_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// whileSuspended queues messages in node id's mailbox while it processes
// nothing, then lets it run: the node then finds them waiting together.
func whileSuspended(c *grouptest.Nodes, id string, queue func(pid *actor.PID)) {
	c.T().Helper()
	pid := c.Node(id).PID
	proc, ok := c.System.ProcessRegistry.Get(pid)
	if !ok {
		c.T().Fatalf("%s not registered", id)
	}
	proc.SendSystemMessage(pid, &actor.SuspendMailbox{})
	queue(pid)
	proc.SendSystemMessage(pid, &actor.ResumeMailbox{})
}

// acknowledged waits for every write's reply and fails the test unless
// each one succeeded.
func acknowledged(t *testing.T, futures []*actor.Future) []*actors.WriteResponse {
	t.Helper()
	var resps []*actors.WriteResponse
	for i, f := range futures {
		r, err := f.Result()
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		wr := r.(*actors.WriteResponse)
		if wr.Error.Err() != nil {
			t.Fatalf("write %d: %v", i, wr.Error)
		}
		resps = append(resps, wr)
	}
	return resps
}

func TestWritesWaitingTogetherShareOneLogEntry(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	c.Put("warm-up", "x")
	before := c.Status(leader).LastIndex

	const puts = 40
	var futures []*actor.Future
	whileSuspended(c, leader, func(pid *actor.PID) {
		for i := range puts {
			w := &actors.WriteRequest{Meta: grouptest.Meta(5 * time.Second), Command: kvstore.Put("k", []byte(fmt.Sprint(i)))}
			futures = append(futures, c.System.Root.RequestFuture(pid, w, 10*time.Second))
		}
		// The same session write twice, as a retry racing its original.
		for range 2 {
			m := grouptest.Meta(5 * time.Second)
			m.ClientId, m.Sequence = "client-a", 1
			futures = append(futures, c.System.Root.RequestFuture(pid, &actors.WriteRequest{Meta: m, Command: kvstore.Put("s", []byte("once"))}, 10*time.Second))
		}
	})
	resps := acknowledged(t, futures)
	// Every put has its own index, in the order the leader received them,
	// and its own result.
	for i := 1; i < puts; i++ {
		if resps[i].Index <= resps[i-1].Index {
			t.Fatalf("put %d at index %d, put %d at %d: not strictly increasing", i-1, resps[i-1].Index, i, resps[i].Index)
		}
	}
	for i := range puts {
		res, err := kvstore.DecodeResult(resps[i].Result)
		if err != nil || !res.Ok || res.Revision != resps[i].Index {
			t.Fatalf("put %d: result %+v (%v), index %d", i, res, err, resps[i].Index)
		}
	}
	if a, b := resps[puts], resps[puts+1]; b.Index != a.Index || string(b.Result) != string(a.Result) {
		t.Fatalf("the retried session write: index %d vs %d", a.Index, b.Index)
	}
	// All of them went into the log as one entry.
	if after := c.Status(leader).LastIndex; after != before+1 {
		t.Fatalf("%d writes took log entries %d..%d, want one entry", len(futures), before+1, after)
	}
	last := resps[puts-1]
	rr, qr := c.Get(leader, "k", actors.Consistency_LINEARIZABLE)
	if string(qr.Value) != fmt.Sprint(puts-1) || qr.Revision != last.Index || rr.AppliedIndex < last.Index {
		t.Fatalf("k = %q at revision %d (read reflects %d), want %d at %d", qr.Value, qr.Revision, rr.AppliedIndex, puts-1, last.Index)
	}

	// Every node, restarted, replays the batch from its log to the same
	// state and the same revisions.
	for _, id := range c.IDs() {
		c.Stop(id)
	}
	for _, id := range c.IDs() {
		c.Start(id)
	}
	c.WaitLeader()
	c.Put("after-restart", "x")
	for _, id := range c.IDs() {
		testutil.Eventually(t, fmt.Sprintf("%s replays k=%d at %d after a restart", id, puts-1, last.Index), func() bool {
			_, qr := c.Get(id, "k", actors.Consistency_STALE)
			return qr != nil && qr.Revision == last.Index && string(qr.Value) == fmt.Sprint(puts-1)
		})
		if st := c.Status(id); st.CommandIndex < last.Index {
			t.Fatalf("%s reports command index %d, below the applied write's %d", id, st.CommandIndex, last.Index)
		}
	}
}

func TestWritesOfOneSenderApplyInTheOrderSent(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	pid := c.Node(leader).PID
	// Pipelined: every write is sent before the first is answered, so the
	// leader closes many batches while more arrive; one in ten is too large
	// for a batch and goes into an entry of its own.
	const writes = 300
	var futures []*actor.Future
	for i := range writes {
		value := []byte(fmt.Sprint(i))
		if i%10 == 9 {
			value = append(value, make([]byte, 300<<10)...)
		}
		w := &actors.WriteRequest{Meta: grouptest.Meta(10 * time.Second), Command: kvstore.Put("k", value)}
		futures = append(futures, c.System.Root.RequestFuture(pid, w, 15*time.Second))
	}
	var prev uint64
	for i, wr := range acknowledged(t, futures) {
		if wr.Index <= prev {
			t.Fatalf("write %d applied at index %d, after the write before it at %d", i, wr.Index, prev)
		}
		prev = wr.Index
	}
	if _, qr := c.Get(leader, "k", actors.Consistency_LINEARIZABLE); qr.Revision != prev {
		t.Fatalf("k at revision %d, the last write was applied at %d", qr.Revision, prev)
	}
}

// Every entry enters the log in the order the leader received its request,
// policy entries as writes: a policy update that arrives after a write
// commits after it, however long the write's batch takes to close (here:
// the leader's mailbox holds many more requests behind the two, so the
// batch closes only after them). A policy that went to Raft on a goroutine
// of its own would overtake the write.
func TestPolicyEntriesKeepTheirPlaceAmongWrites(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	c.Put("warm", "up")
	for round := range 5 {
		var write, policy *actor.Future
		whileSuspended(c, leader, func(pid *actor.PID) {
			write = c.System.Root.RequestFuture(pid, &actors.WriteRequest{Meta: grouptest.Meta(5 * time.Second), Command: kvstore.Put("k", []byte("v"))}, 10*time.Second)
			policy = c.System.Root.RequestFuture(pid, &actors.PolicyUpdateRequest{Meta: grouptest.Meta(5 * time.Second), Document: []byte("policy")}, 10*time.Second)
			for range 200 {
				c.System.Root.Send(pid, &actors.GetTimeoutsRequest{})
			}
		})
		wres, err := write.Result()
		if err != nil {
			t.Fatal(err)
		}
		pres, err := policy.Result()
		if err != nil {
			t.Fatal(err)
		}
		wr, pr := wres.(*actors.WriteResponse), pres.(*actors.PolicyUpdateResponse)
		if wr.Error.Err() != nil || pr.Error.Err() != nil {
			t.Fatalf("round %d: write %v, policy %v", round, wr.Error, pr.Error)
		}
		if pr.Index <= wr.Index {
			t.Fatalf("round %d: the policy that arrived after the write is at index %d, the write at %d", round, pr.Index, wr.Index)
		}
	}
}

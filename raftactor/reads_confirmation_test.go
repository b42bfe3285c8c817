package raftactor_test

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/wire"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// A leader confirms a read only with acknowledgements of messages its
// followers received after the read arrived.
//
// Here the old leader is cut off, but for a while it keeps receiving
// acknowledgements of appends that one follower took before the cut: its
// replies are held on the way back. They keep the old leader's lease alive
// and each one would satisfy Raft's VerifyLeader, while the other two nodes
// elect a new leader and commit a write. A linearizable read on the old
// leader must then see that write or fail; it must never return the value
// the write replaced.
func TestReadIsNotConfirmedByAcknowledgementsOlderThanIt(t *testing.T) {
	const lag = 1200 * time.Millisecond
	c := grouptest.New(t, 3, func(cfg *raftactor.Config) {
		cfg.RPCTimeout = 2 * lag
		cfg.MaxAppendsInFlight = 128 // the most the followers' inbound queue takes
		// Appends only for new entries, so the pipeline holds a lag's worth.
		cfg.Timeouts.Commit = 50 * time.Millisecond
	})
	old := c.WaitLeader()
	c.Put("k", "old")
	var late, cutOff string
	for _, id := range c.IDs() {
		switch {
		case id == old:
		case late == "":
			late = id
		default:
			cutOff = id
		}
	}
	c.WaitValue(late, "k", "old")
	c.WaitValue(cutOff, "k", "old")
	if rr, _ := c.Get(old, "k", actors.Consistency_LINEARIZABLE); rr.Error.Err() != nil {
		t.Fatalf("linearizable read on the leader before any fault: %v", rr.Error)
	}
	t.Logf("%s leads; %s's replies lag; %s is cut off", old, late, cutOff)

	// Fill late's append pipeline, so that after the cut its held replies
	// reach the old leader every few milliseconds for about lag.
	c.Faults.Delay(raft.ServerID(late), raft.ServerID(old), lag, 0)
	for end := time.Now().Add(lag); time.Now().Before(end); {
		c.Ask(old, &actors.WriteRequest{Meta: grouptest.Meta(time.Second), Command: kvstore.Put("filler", []byte("x"))})
		time.Sleep(20 * time.Millisecond)
	}
	c.Faults.Cut(raft.ServerID(old), raft.ServerID(late))
	c.Faults.Cut(raft.ServerID(old), raft.ServerID(cutOff))
	c.Faults.Cut(raft.ServerID(cutOff), raft.ServerID(old))

	written := false
	for end := time.Now().Add(10 * time.Second); !written && time.Now().Before(end); {
		for _, id := range []string{late, cutOff} {
			r, err := c.Ask(id, &actors.WriteRequest{Meta: grouptest.Meta(300 * time.Millisecond), Command: kvstore.Put("k", []byte("new"))})
			if err == nil && r.(*actors.WriteResponse).Error.Err() == nil {
				written = true
				break
			}
		}
	}
	if !written {
		t.Fatal("the two connected nodes never acknowledged a write")
	}
	rr, qr := c.Get(old, "k", actors.Consistency_LINEARIZABLE)
	if rr.Error.Err() == nil && string(qr.Value) != "new" {
		t.Fatalf("the cut-off leader %s answered a linearizable read with k=%q at applied index %d after k=new was acknowledged", old, qr.Value, rr.AppliedIndex)
	}
	t.Logf("the cut-off leader answered: %v", rr.Error)
}

// A follower answers a leadership probe with its term, and vouches for a
// lease (a contact age) only to the leader it follows: a node that is not
// its leader, even one in the same term, gets no age, because the follower
// may vote for someone else at once as far as that node knows.
func TestFollowerAnswersAProbeWithItsTermAndItsLeadersContact(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	c.Put("k", "v")
	follower, other := "", ""
	for _, id := range c.IDs() {
		switch {
		case id == leader:
		case follower == "":
			follower = id
		default:
			other = id
		}
	}
	term := c.Status(leader).GetTerm()
	probe := func(from string) *wire.LeadershipProbeAnswer {
		t.Helper()
		res := c.MustAsk(follower, &wire.RaftRPC{Group: grouptest.Group, From: c.Address(from),
			Body: &wire.RaftRPC_LeadershipProbe{LeadershipProbe: &wire.LeadershipProbe{Id: from}}})
		reply, ok := res.(*wire.RaftRPCReply)
		if !ok || reply.GetLeadershipProbe() == nil {
			t.Fatalf("probe from %s answered %v", from, res)
		}
		return reply.GetLeadershipProbe()
	}
	a := probe(leader)
	if a.GetTerm() != term || a.GetContactAgeNanos() < 0 {
		t.Fatalf("probe from the leader: %v, want term %d and a contact age", a, term)
	}
	if a := probe(other); a.GetTerm() != term || a.GetContactAgeNanos() != -1 {
		t.Fatalf("probe from %s, which does not lead: %v, want term %d and no contact age", other, a, term)
	}
}

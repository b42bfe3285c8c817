package raftactor_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
)

// membersOf is the configuration node id knows.
func membersOf(t *testing.T, c *grouptest.Nodes, id string) []*actors.Server {
	t.Helper()
	ms := c.MustAsk(id, &actors.MembersRequest{Meta: grouptest.Meta(3 * time.Second)}).(*actors.MembersResponse)
	if err := ms.Error.Err(); err != nil {
		t.Fatalf("members of %s: %v", id, err)
	}
	return ms.Members
}

// Adding a voter that nothing serves must not take the group's quorum away:
// on a one-voter group a second voter that never answers would make every
// later commit, its own removal included, wait for it forever. The add
// leaves it a non-voter, refused as not caught up, and the group keeps
// committing, removes it, and restarts.
func TestAddVoterThatNeverAnswersLeavesANonvoter(t *testing.T) {
	c := grouptest.New(t, 1, nil)
	leader := c.WaitLeader()
	c.Put("before", "1")

	// Nothing runs at n9's address.
	mr := c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(2 * time.Second), Op: actors.MembershipOp_ADD_VOTER, Id: "n9", Address: c.Address("n9")}).(*actors.MembershipResponse)
	if actors.CodeOf(mr.Error) != actors.Code_UNAVAILABLE || !strings.Contains(mr.Error.GetMessage(), "n9") {
		t.Fatalf("adding a voter nothing serves: %v, want UNAVAILABLE naming n9", mr.Error)
	}
	t.Logf("refused: %v", mr.Error)
	assertMember(t, membersOf(t, c, leader), "n9", actors.Suffrage_NONVOTER)
	assertMember(t, membersOf(t, c, leader), leader, actors.Suffrage_VOTER)

	if _, err := c.TryPut("after-add", "2", 5*time.Second); err != nil {
		t.Fatalf("write after the refused add: %v", err)
	}
	c.Stop(leader)
	c.Start(leader)
	leader = c.WaitLeader()
	if _, err := c.TryPut("after-restart", "3", 5*time.Second); err != nil {
		t.Fatalf("write after a restart: %v", err)
	}

	mr = c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(3 * time.Second), Op: actors.MembershipOp_REMOVE, Id: "n9"}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("removing the non-voter: %v", mr.Error)
	}
	for _, m := range mr.Members {
		if m.Id == "n9" {
			t.Fatalf("removed n9 still a member: %v", mr.Members)
		}
	}
	c.Put("after-remove", "4")
}

// A running node added as a voter becomes one, and only once it holds what
// the group had committed: the reply comes after it caught up, so it holds
// the data at once, even over a slow link from the leader.
func TestAddVoterPromotesOnceCaughtUp(t *testing.T) {
	c := grouptest.New(t, 3, nil)
	leader := c.WaitLeader()
	for i := 0; i < 20; i++ {
		c.Put(fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	c.Add("n4", nil)
	c.Start("n4")
	// The new node hears the leader late: a promotion that did not wait
	// for it would reply long before it holds anything.
	c.Faults.Delay(raft.ServerID(leader), "n4", 50*time.Millisecond, 0)
	committed := c.Status(leader).CommitIndex

	mr := c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(10 * time.Second), Op: actors.MembershipOp_ADD_VOTER, Id: "n4", Address: c.Address("n4")}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("add voter: %v", mr.Error)
	}
	assertCommitted(t, c, leader, mr.Index)
	assertMember(t, mr.Members, "n4", actors.Suffrage_VOTER)
	if st := c.Status("n4"); st.AppliedIndex < committed {
		t.Fatalf("n4 promoted having applied %d, below the %d committed before the add", st.AppliedIndex, committed)
	}
	for i := 0; i < 20; i++ {
		rr, qr := c.Get("n4", fmt.Sprintf("k%d", i), actors.Consistency_STALE)
		if rr.Error.Err() != nil || !qr.Found || string(qr.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d on n4 right after its promotion: %v %v", i, rr.Error, qr)
		}
	}
	c.Faults.Heal()

	// Adding it again is a no-op that succeeds.
	mr = c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(5 * time.Second), Op: actors.MembershipOp_ADD_VOTER, Id: "n4", Address: c.Address("n4")}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("adding the voter again: %v", mr.Error)
	}
	assertMember(t, mr.Members, "n4", actors.Suffrage_VOTER)
	c.Put("after", "ok")
	c.WaitValue("n4", "after", "ok")
}

// A non-voter the leader cannot reach is not promoted: on a one-voter
// group it would take the quorum with it. Once it is reachable again and
// has caught up, the promotion goes through.
func TestPromoteOfACutOffNonvoterRefused(t *testing.T) {
	c := grouptest.New(t, 1, nil)
	leader := c.WaitLeader()
	c.Put("k", "v")
	c.Add("n2", nil)
	c.Start("n2")
	mr := c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(5 * time.Second), Op: actors.MembershipOp_ADD_NONVOTER, Id: "n2", Address: c.Address("n2")}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("add nonvoter: %v", mr.Error)
	}
	c.WaitValue("n2", "k", "v")

	c.Faults.Isolate("n2")
	testutil.Eventually(t, "n2 follows no leader once cut off", func() bool { return c.Status("n2").GetLeader() == nil })
	mr = c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(2 * time.Second), Op: actors.MembershipOp_PROMOTE, Id: "n2"}).(*actors.MembershipResponse)
	if actors.CodeOf(mr.Error) != actors.Code_UNAVAILABLE || !strings.Contains(mr.Error.GetMessage(), "n2") {
		t.Fatalf("promoting a cut-off non-voter: %v, want UNAVAILABLE naming n2", mr.Error)
	}
	t.Logf("refused: %v", mr.Error)
	assertMember(t, membersOf(t, c, leader), "n2", actors.Suffrage_NONVOTER)
	if _, err := c.TryPut("while-cut", "1", 5*time.Second); err != nil {
		t.Fatalf("write after the refused promotion: %v", err)
	}

	c.Faults.Heal()
	mr = c.MustAsk(leader, &actors.MembershipRequest{Meta: grouptest.Meta(10 * time.Second), Op: actors.MembershipOp_PROMOTE, Id: "n2"}).(*actors.MembershipResponse)
	if mr.Error.Err() != nil {
		t.Fatalf("promoting n2 once healed: %v", mr.Error)
	}
	assertMember(t, mr.Members, "n2", actors.Suffrage_VOTER)
	if rr, qr := c.Get("n2", "while-cut", actors.Consistency_STALE); rr.Error.Err() != nil || !qr.Found {
		t.Fatalf("n2 promoted without the write made while it was cut off: %v %v", rr.Error, qr)
	}
	c.Put("after", "ok")
}

package protocluster_test

import (
	"context"
	"strings"
	"testing"
	"time"

	clustering "github.com/asynkron/protoactor-go/cluster"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/protocluster"
)

func nonVoters(c *protocluster.Config) { c.NonVoters = true }

// configuration returns the group's Raft configuration as member c's
// client reads it: voters and non-voters by node ID, and the leader's ID
// ("" when none is known).
func configuration(c *clustering.Cluster, w *world) (voters, others []string, leader string) {
	p := w.provider(c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	mr, err := p.Client().Members(ctx)
	if err != nil {
		return nil, nil, ""
	}
	for _, s := range mr.GetMembers() {
		if s.Suffrage == actors.Suffrage_VOTER {
			voters = append(voters, s.Id)
		} else {
			others = append(others, s.Id)
		}
	}
	if lr, err := p.Client().Leader(ctx); err == nil {
		leader = lr.GetLeader().GetId()
	}
	return voters, others, leader
}

// waitConfiguration waits until member c reads a configuration with
// voters voters, nonvoters non-voters, a leader among the voters, and none
// of the nodes in gone.
func waitConfiguration(t *testing.T, w *world, c *clustering.Cluster, voters, nonvoters int, gone ...string) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, o, leader := configuration(c, w)
		ok := len(v) == voters && len(o) == nonvoters && leader != "" && strings.Contains(","+strings.Join(v, ",")+",", ","+leader+",")
		for _, g := range gone {
			if strings.Contains(","+strings.Join(append(v, o...), ",")+",", ","+g+",") {
				ok = false
			}
		}
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("configuration: voters %v, non-voters %v, leader %q; want %d voters, %d non-voters, a leader, none of %v", v, o, leader, voters, nonvoters, gone)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMembersBeyondTheVotersReplaceAVoterThatDies: with NonVoters, five
// members run three voters and two non-voters; a voter's member crashes
// (no graceful leave), a follower's or the leader's; once the table
// expired it, the leader (a new one, when the leader crashed) removes its
// node and promotes a live member's non-voter, so the group has three
// voters and a leader again, and every identity answers from a live
// member, never from two activations at once.
func TestMembersBeyondTheVotersReplaceAVoterThatDies(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("several protoactor remotes in one process race inside protoactor")
	}
	t.Parallel()
	for _, leads := range []bool{false, true} {
		name := "follower"
		if leads {
			name = "leader"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			replaceDeadVoter(t, leads)
		})
	}
}

// replaceDeadVoter crashes a voter's member, the leader's when leads is
// set, and checks that a non-voter takes its place.
func replaceDeadVoter(t *testing.T, leads bool) {
	w := newTunedWorld(t, 5, true, nonVoters)
	members := w.fixture.GetMembers()
	waitTopology(t, members, 5)
	voters := waitConfiguration(t, w, members[4], 3, 2)
	for i, c := range members[3:] {
		if g := w.provider(c).Group(); g == nil || strings.Contains(strings.Join(voters, ","), g.Self().ID) {
			t.Fatalf("extra member %d runs no non-voter (%v; voters %v)", i+4, g, voters)
		}
	}
	ids := identities(20)
	owners(t, members[4], ids)

	_, _, leader := configuration(members[4], w)
	var victim *clustering.Cluster
	for _, c := range members[:3] {
		if id := w.provider(c).Group().Self().ID; (id == leader) == leads {
			victim = c
		}
	}
	if victim == nil {
		t.Fatalf("no voter's member to crash (leader %q, leads %v)", leader, leads)
	}
	dead := w.provider(victim).Group().Self().ID
	w.kill(victim)
	live := without(members, victim)
	waitTopology(t, live, 4)
	after := waitConfiguration(t, w, live[3], 3, 1, dead)
	promoted := 0
	for _, v := range after {
		if strings.HasPrefix(v, "m-") {
			promoted++
		}
	}
	if promoted != 1 {
		t.Fatalf("voters after the crash %v: want one promoted member's node", after)
	}
	addr := victim.ActorSystem.Address()
	for _, c := range live {
		for _, id := range ids {
			got, err := call(c, id, 5*time.Second)
			if err != nil {
				t.Fatalf("%s via %s after the replacement: %v", id, c.ActorSystem.Address(), err)
			}
			if strings.HasPrefix(got, addr+"#") {
				t.Fatalf("%s answered by the dead member", id)
			}
		}
	}
	if _, overlaps, tokens := w.ledger.check(); len(overlaps) > 0 || len(tokens) > 0 {
		t.Fatalf("overlaps %v, token faults %v", overlaps, tokens)
	}
}

// TestExpiredMemberLearnsItAndRunsNothing: a member cut from the group is
// expired by the others; once the cut heals, its next renewal is refused
// and Provider.Expired is closed, and by then none of its grains runs.
func TestExpiredMemberLearnsItAndRunsNothing(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("several protoactor remotes in one process race inside protoactor")
	}
	t.Parallel()
	w := newWorld(t, 4, true)
	members := w.fixture.GetMembers()
	waitTopology(t, members, 4)
	victim := members[3]
	addr := victim.ActorSystem.Address()
	hosted := 0
	for _, a := range owners(t, members[0], identities(20)) {
		if a == addr {
			hosted++
		}
	}
	if hosted == 0 {
		t.Fatalf("no identity on %s", addr)
	}
	p := w.provider(victim)
	select {
	case <-p.Expired():
		t.Fatal("Expired closed before any expiry")
	default:
	}
	cutMember(w, victim)
	waitTopology(t, members[:3], 3)
	w.net.Heal()
	select {
	case <-p.Expired():
	case <-time.After(15 * time.Second):
		t.Fatal("the expired member did not learn it within 15s of the cut healing")
	}
	w.ledger.mu.Lock()
	running := map[string]bool{}
	for _, e := range w.ledger.events {
		if e.member == addr {
			running[e.pid] = e.start
		}
	}
	w.ledger.mu.Unlock()
	for pid, up := range running {
		if up {
			t.Fatalf("grain %s still runs on the expired member", pid)
		}
	}
	if _, overlaps, _ := w.ledger.check(); len(overlaps) > 0 {
		t.Fatalf("overlaps %v", overlaps)
	}
}

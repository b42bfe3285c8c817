package protocluster_test

import (
	"testing"
	"time"

	clustering "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/protocluster"
)

// singletonRuns returns the singleton's activations the ledger shows
// running (started, not stopped), by member address and token.
func singletonRuns(l *ledger) []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	open := map[string]event{}
	for _, e := range l.events {
		if e.identity != protocluster.SingletonIdentity {
			continue
		}
		if e.start {
			open[e.member+"|"+e.pid] = e
		} else {
			delete(open, e.member+"|"+e.pid)
		}
	}
	var out []event
	for _, e := range open {
		out = append(out, e)
	}
	return out
}

// TestSingletonRunsOnceAndMovesWithALargerToken: every member keeps the
// singleton of one kind alive; it runs on exactly one member, every
// member's Singleton names that one activation; when its member crashes,
// it comes up on another member with a larger fencing token, and the
// ledger never shows two activations alive at once.
func TestSingletonRunsOnceAndMovesWithALargerToken(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("several protoactor remotes in one process race inside protoactor")
	}
	t.Parallel()
	w := newWorld(t, 4, true)
	members := w.fixture.GetMembers()
	waitTopology(t, members, 4)
	keepers := map[*clustering.Cluster]*protocluster.Singleton{}
	for _, c := range members {
		s, err := protocluster.StartSingleton(c, grainKind, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		keepers[c] = s
		t.Cleanup(s.Stop)
	}
	// agreed waits until every live member's Singleton names one
	// activation other than on the member at avoid, and returns it.
	agreed := func(live []*clustering.Cluster, avoid string) (string, uint64) {
		t.Helper()
		var pid string
		var token uint64
		testutil.Eventually(t, "every member's Singleton names one activation", func() bool {
			pid = ""
			for _, c := range live {
				p := keepers[c].PID()
				if p == nil || p.Address == avoid || (pid != "" && p.String() != pid) {
					return false
				}
				pid = p.String()
				token, _ = protocluster.FencingTokenOf(p)
			}
			return true
		})
		return pid, token
	}
	first, firstToken := agreed(members, "")
	// The grain records its start as it processes Started, which may
	// follow the activator's answer.
	var runs []event
	testutil.Eventually(t, "the singleton's start in the ledger", func() bool {
		runs = singletonRuns(w.ledger)
		return len(runs) > 0
	})
	if len(runs) != 1 || runs[0].token != firstToken {
		t.Fatalf("singleton activations running: %v, want one with token %d", runs, firstToken)
	}
	owner := runs[0].member
	res, err := keepers[members[0]].Request(wrapperspb.String("hi"), 5*time.Second)
	if err != nil {
		t.Fatalf("request to the singleton: %v", err)
	}
	if got := res.(*wrapperspb.StringValue).Value; got == "" {
		t.Fatal("empty answer")
	}
	var victim *clustering.Cluster
	for _, c := range members {
		if c.ActorSystem.Address() == owner {
			victim = c
		}
	}
	w.kill(victim)
	live := without(members, victim)
	second, secondToken := agreed(live, owner)
	if secondToken <= firstToken {
		t.Fatalf("singleton moved from %s (token %d) to %s with token %d: not larger", first, firstToken, second, secondToken)
	}
	testutil.Eventually(t, "the new singleton's start in the ledger", func() bool {
		runs = singletonRuns(w.ledger)
		return len(runs) > 0 && runs[0].member != owner
	})
	if len(runs) != 1 || runs[0].member == owner || runs[0].token != secondToken {
		t.Fatalf("singleton activations running after the crash: %v, want one with token %d", runs, secondToken)
	}
	if n, overlaps, tokens := w.ledger.check(); len(overlaps) > 0 || len(tokens) > 0 || n != 2 {
		t.Fatalf("%d activations (want 2), overlaps %v, token faults %v", n, overlaps, tokens)
	}
}

package protocluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/protoraft/protoraft/internal/testutil"
)

// TestFixtureMembersAgreeAndGrainsAreSingle runs protoactor's own cluster
// fixture (cluster_test_tool.NewBaseClusterFixture, which waits for the
// members' topology consensus) with this package's provider and lookup:
// four members, three of them voters; every member sees the same topology;
// an identity called through every member answers from one activation.
func TestFixtureMembersAgreeAndGrainsAreSingle(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("several protoactor remotes in one process race inside protoactor")
	}
	t.Parallel()
	w := newWorld(t, 4, true)
	members := w.fixture.GetMembers()
	waitTopology(t, members, 4)
	for i := range 20 {
		id := fmt.Sprintf("id-%d", i)
		var first string
		for _, c := range members {
			got, err := call(c, id, 5*time.Second)
			if err != nil {
				t.Fatalf("%s via %s: %v", id, c.ActorSystem.Address(), err)
			}
			if first == "" {
				first = got
			} else if got != first {
				t.Fatalf("%s answered by %s and by %s", id, first, got)
			}
		}
	}
	n, overlaps, tokens := w.ledger.check()
	if n != 20 || len(overlaps) > 0 || len(tokens) > 0 {
		t.Fatalf("%d activations (want 20), overlaps %v, token faults %v", n, overlaps, tokens)
	}
	// Placement spreads identities over the members.
	hosts := map[string]bool{}
	w.ledger.mu.Lock()
	for _, e := range w.ledger.events {
		hosts[e.member] = true
	}
	w.ledger.mu.Unlock()
	if len(hosts) < 3 {
		t.Fatalf("20 identities on %d members", len(hosts))
	}
	_ = strings.Join
}

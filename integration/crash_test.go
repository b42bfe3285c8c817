package integration

import (
	"context"
	"testing"
	"time"
)

// TestInjectedNodeFailureRestartsTheNode checks the crash nemesis itself:
// the supervisor must really restart the node actor (Raft shut down without
// handover), so a crashed leader's term ends (a newer term elects a leader,
// possibly the restarted node itself) and the node answers again.
func TestInjectedNodeFailureRestartsTheNode(t *testing.T) {
	c, err := newInproc(42, 3, t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, err := waitLeader(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.status(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.crash(old); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		// The restarted node may well win the next election itself: what
		// matters is that its old term ended and it answers again.
		if l := leaderOf(ctx, c); l != "" {
			if lst, err := c.status(ctx, l); err == nil && lst.Term > st.Term {
				if _, err := c.status(ctx, old); err == nil {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader of a newer term, or %s did not answer again, after its injected failure", old)
}

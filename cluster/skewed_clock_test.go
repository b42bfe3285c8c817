package cluster_test

import (
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// A request from a caller whose wall clock is two hours off the nodes' is
// served: its timeout counts from its arrival on the node's own clock,
// whatever its absolute deadline (read by earlier releases) says. Without
// the timeout the same deadlines are refused, which is what a node would
// do to every caller, and every peer, if its own clock jumped.
func TestRequestsFromASkewedClockAreServed(t *testing.T) {
	h := grouptest.NewGroups(t)
	_, groups := h.SpawnVoters("g", 3, nil)
	leader := h.WaitLeader(groups...)
	skewed := func(skew time.Duration, withTimeout bool) *actors.RequestMeta {
		m := &actors.RequestMeta{DeadlineUnixNano: time.Now().Add(skew + 3*time.Second).UnixNano()}
		if withTimeout {
			m.TimeoutNanos = int64(3 * time.Second)
		}
		return m
	}
	for _, skew := range []time.Duration{-2 * time.Hour, 2 * time.Hour} {
		w := h.Ask(leader.FrontDoor(), &actors.WriteRequest{Meta: skewed(skew, true), Command: kvstore.Put("k", []byte(skew.String()))})
		if err := w.GetError(); err.Err() != nil {
			t.Fatalf("write from a clock %v off with a timeout: %v", skew, err)
		}
		r := h.Ask(leader.FrontDoor(), &actors.ReadRequest{Meta: skewed(skew, true), Query: kvstore.Get("k")})
		if err := r.GetError(); err.Err() != nil {
			t.Fatalf("read from a clock %v off with a timeout: %v", skew, err)
		}
		// The deadline alone, as earlier callers send it, is refused:
		// what the timeout spares them.
		old := h.Ask(leader.FrontDoor(), &actors.WriteRequest{Meta: skewed(skew, false), Command: kvstore.Put("k", []byte("old"))})
		if old.GetError().Err() == nil {
			t.Fatalf("a deadline %v off was served without a timeout: the test shows nothing", skew)
		}
	}
	// A timeout is bounded like a deadline.
	tooLong := &actors.RequestMeta{TimeoutNanos: int64(actors.MaxRequestTimeout + time.Second)}
	if w := h.Ask(leader.FrontDoor(), &actors.WriteRequest{Meta: tooLong, Command: kvstore.Put("k", []byte("v"))}); w.GetError().GetField() != "meta.timeout_nanos" {
		t.Fatalf("a timeout above the maximum: %v", w.GetError())
	}
}

package telemetry

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
)

// The read confirmation counters grow by what a node's cumulative counts
// grew since the last poll, and by all of them after the node actor
// restarted and began counting from zero.
func TestReadGrowth(t *testing.T) {
	rc := func(w, r, ns, p, h uint64) *actors.ReadConfirmations {
		return &actors.ReadConfirmations{Waits: w, Rounds: r, RoundNanos: ns, Probes: p, Hedges: h}
	}
	for _, tc := range []struct {
		name            string
		prev, cur, want *actors.ReadConfirmations
	}{
		{"first poll", nil, rc(10, 4, 400, 5, 1), rc(10, 4, 400, 5, 1)},
		{"growth", rc(10, 4, 400, 5, 1), rc(25, 9, 950, 11, 1), rc(15, 5, 550, 6, 0)},
		{"no change", rc(10, 4, 400, 5, 1), rc(10, 4, 400, 5, 1), rc(0, 0, 0, 0, 0)},
		{"restart", rc(10, 4, 400, 5, 1), rc(3, 1, 90, 1, 0), rc(3, 1, 90, 1, 0)},
	} {
		if got := readGrowth(tc.prev, tc.cur); !proto.Equal(got, tc.want) {
			t.Errorf("%s: growth %v, want %v", tc.name, got, tc.want)
		}
	}
}

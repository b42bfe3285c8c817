package raftactor

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/protoraft/protoraft/internal/transport"
)

// Only the records of a planned leader change leave ERROR; a real failure
// (a disk error, an RPC that timed out) stays an error, and lower levels
// stay what they were.
func TestRaftLogLevelDemotesOnlyRoutineRecords(t *testing.T) {
	closed := fmt.Errorf("peer: %w", transport.ErrTransportClosed)
	gone := fmt.Errorf("%w (nonhost/protoraft/g/n3/node)", transport.ErrDeadLetter)
	cases := []struct {
		level hclog.Level
		msg   string
		args  []any
		want  hclog.Level
	}{
		{hclog.Error, "peer has newer term, stopping replication", []any{"peer", "n3"}, hclog.Info},
		{hclog.Error, "failed to make requestVote RPC", []any{"target", "n1", "error", closed}, hclog.Warn},
		{hclog.Error, "failed to heartbeat to", []any{"peer", "n3", "error", gone}, hclog.Warn},
		{hclog.Error, "failed to appendEntries to", []any{"peer", "n2", "error", fmt.Errorf("peer: %w", transport.ErrNotReady)}, hclog.Warn},
		{hclog.Error, "failed to appendEntries to", []any{"peer", "n3", "error", transport.ErrRPCTimeout}, hclog.Error},
		// A peer failing fast is down for the reason its last failure says.
		{hclog.Error, "failed to heartbeat to", []any{"peer", "n3", "error", fmt.Errorf("%w: n3 (last failure: %w)", transport.ErrPeerDown, gone)}, hclog.Warn},
		{hclog.Error, "failed to appendEntries to", []any{"peer", "n3", "error", fmt.Errorf("%w: n3 (last failure: %w)", transport.ErrPeerDown, transport.ErrRPCTimeout)}, hclog.Error},
		{hclog.Error, "failed to append to logs", []any{"error", errors.New("disk full")}, hclog.Error},
		{hclog.Error, "failed to make requestVote RPC", []any{"error"}, hclog.Error},
		{hclog.Warn, "heartbeat timeout reached, starting election", nil, hclog.Warn},
	}
	for _, c := range cases {
		if got := raftLogLevel(c.level, c.msg, c.args); got != c.want {
			t.Errorf("%s %q %v: logged at %s, want %s", c.level, c.msg, c.args, got, c.want)
		}
	}
}

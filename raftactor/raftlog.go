package raftactor

import (
	"errors"

	"github.com/hashicorp/go-hclog"

	"github.com/protoraft/protoraft/internal/transport"
)

// raftLogLevel moves hashicorp/raft's routine records of a leader change
// off ERROR, so that a planned handover logs no error: an old leader that
// meets its successor's term ("peer has newer term") logs it as an error,
// and so does any node whose RPC reaches a peer that is stopping, starting
// or has stopped on purpose (its transport answers closed or not ready, or
// its process runs without the node actor: a dead letter; a crashed peer
// times out instead), also once its transport fails fast on such a peer
// (ErrPeerDown wraps the last failure). Both are what a leadership
// transfer or a planned stop looks
// like; a real failure still logs as raft decides.
func raftLogLevel(level hclog.Level, msg string, args []any) hclog.Level {
	if level < hclog.Error {
		return level
	}
	if msg == "peer has newer term, stopping replication" {
		return hclog.Info
	}
	for i := 0; i+1 < len(args); i += 2 {
		if err, ok := args[i+1].(error); ok && args[i] == "error" && (errors.Is(err, transport.ErrTransportClosed) || errors.Is(err, transport.ErrDeadLetter) || errors.Is(err, transport.ErrNotReady)) {
			return hclog.Warn
		}
	}
	return level
}

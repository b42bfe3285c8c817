package raftactor

import (
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/internal/wire"
)

// systemBatch is the EntryMeta.system value of a write batch: the entry's
// data is an wire.WriteBatch, several user commands the leader packed
// into one log entry. Builds before batching ignore entries of a system
// they do not know, so a group must run a build that reads batches on
// every node before any node writes one (Config.MaxWriteBatch = 1 keeps a
// node from writing them).
const systemBatch = "batch"

// systemSession is the EntryMeta.system value of a session open: the
// entry opens the session client_id with sequence as its floor, and its
// data is empty. Builds before explicit opens skip it, so a group must run
// a build that reads it on every node before a client opens sessions
// (docs/operations.md).
const systemSession = "session"

// commandResult is what applying a user command returns: the state
// machine's result and the command index it was applied at.
type commandResult struct {
	result []byte
	index  uint64
}

// batchResults is what applying a batch entry returns: one result per
// command, in the batch's order (commandResult, duplicateWrite,
// staleSequence or sessionExpired), or nil when the batch could not be
// decoded.
type batchResults []any

// decodeEntryMeta decodes a log entry's metadata; nil when it has none. An
// extension that does not decode is treated as absent: every node sees the
// same bytes and decides the same.
func decodeEntryMeta(ext []byte) *wire.EntryMeta {
	if len(ext) == 0 {
		return nil
	}
	m := &wire.EntryMeta{}
	if err := proto.Unmarshal(ext, m); err != nil {
		return nil
	}
	return m
}

// applyEntry applies one command entry of the log. The caller holds the
// fsm's write lock.
func (f *fsm) applyEntry(l *raft.Log) any {
	m := decodeEntryMeta(l.Extensions)
	switch m.GetSystem() {
	case "":
		return f.applyCommand(l.Index, l.Data, m)
	case systemBatch:
		return f.applyBatch(l, m)
	case systemPolicy:
		f.system.setPolicy(l.Data, l.Index)
		return nil
	case systemSession:
		if m.GetClientId() == "" {
			return nil
		}
		return f.sessions.open(m, l.Index)
	default:
		// A newer build's system entry: not for the user's state machine,
		// and nothing this build can do with it.
		return nil
	}
}

// applyCommand applies one user command found at logIndex, through the
// session table when it carries a session.
func (f *fsm) applyCommand(logIndex uint64, command []byte, m *wire.EntryMeta) any {
	run := func() commandResult {
		index := f.nextCommandIndex(logIndex)
		return commandResult{result: f.sm.Apply(index, command), index: index}
	}
	if m.GetClientId() == "" {
		return run()
	}
	return f.sessions.apply(m, run)
}

// applyBatch applies the commands of a batch entry in order, each with its
// own command index and session check.
func (f *fsm) applyBatch(l *raft.Log, m *wire.EntryMeta) any {
	b := &wire.WriteBatch{}
	if err := proto.Unmarshal(l.Data, b); err != nil {
		return batchResults(nil)
	}
	out := make(batchResults, len(b.Writes))
	for i, w := range b.Writes {
		var wm *wire.EntryMeta
		if w.ClientId != "" {
			wm = &wire.EntryMeta{ClientId: w.ClientId, Sequence: w.Sequence, AckedBelow: w.AckedBelow,
				Registered: w.Registered, OpenIndex: w.OpenIndex, LeaderUnixNano: m.GetLeaderUnixNano()}
		}
		out[i] = f.applyCommand(l.Index, w.Command, wm)
	}
	return out
}

// nextCommandIndex gives the next command its index: the log index of its
// entry, unless earlier commands of a batch already took that number, in
// which case the one after the last. So command indexes increase strictly,
// are the same on every node, and equal the log index in any log without
// batches (every log a build before batching wrote).
func (f *fsm) nextCommandIndex(logIndex uint64) uint64 {
	index := max(f.lastCommand.Load()+1, logIndex)
	f.lastCommand.Store(index)
	return index
}

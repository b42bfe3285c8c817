package raftactor

import (
	"sync/atomic"

	"github.com/protoraft/protoraft/actors"
)

// readFloor is the highest command index a read of this node answered
// from, in this process: across its reopens of the data directory and its
// supervisor restarts. Each of those starts a new state machine from the
// last snapshot, and Raft applies the rest of the log only once a leader
// says what is committed; a STALE read answered meanwhile would show a
// client that read here before an older state (the process mode's full
// disk found a client's index going from 822 back to 0). A STALE read
// waits for nothing, so it is refused, UNAVAILABLE, while the state
// machine is behind the floor, and the client can read elsewhere.
//
// The floor counts command indexes, the index every read reports
// (ReadResponse.applied_index), not log indexes, for two reasons:
//   - The state a query sees is the commands applied, and a state machine
//     that restored a snapshot and applied the log after it reaches the
//     same command index for the same entries (the snapshot carries it).
//     A log index cannot be compared that way: several writes share one
//     entry, so a command index can be above every log index the state
//     machine will ever apply (an earlier floor refused reads forever for
//     it), and the state machine never sees no-ops and barriers, so its
//     log index can stay below an entry it reflects.
//   - raft.AppliedIndex moves when Raft hands entries to the state
//     machine's goroutine, before they are applied: it vouches for
//     nothing a query sees.
//
// The floor cannot hold reads back for good from a member: the old state
// machine applied committed entries only, every later leader holds those
// (or a snapshot that covers them and carries their command index), so a
// member that catches up passes the floor. That holds for a member whose
// directory was wiped and which joined again, too: it catches up with the
// group's state. A node that is no longer a member hears from no leader and
// stays refused, which is right: what it would answer is older than what
// it answered. Operations that make a group lose committed entries
// (RequestRecovery, RestoreDataDir) work on a stopped node's directory, and
// the node spawned on it afterwards starts with a floor of its own.
type readFloor struct{ index atomic.Uint64 }

// raise notes that a read answered from command index index. A read raises
// it before it is answered, so a reopen that follows the answer cannot
// miss it.
func (f *readFloor) raise(index uint64) {
	for {
		known := f.index.Load()
		if known >= index || f.index.CompareAndSwap(known, index) {
			return
		}
	}
}

// admitStale refuses a STALE read while sm reflects less than a read of
// this node answered from before. The state machine only moves forward
// within an incarnation, so the query that follows sees at least what was
// checked.
func (f *readFloor) admitStale(sm *fsm) *actors.Error {
	floor := f.index.Load()
	if at := sm.lastCommand.Load(); at < floor {
		return actors.Errorf(actors.Code_UNAVAILABLE,
			"the state machine is at command index %d, behind the %d this node answered from before it reopened its data directory or restarted: it is catching up", at, floor)
	}
	return nil
}

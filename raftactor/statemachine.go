package raftactor

import "io"

// StateMachine is the replicated state users write. protoraft calls Apply
// with every committed command in log order on every node, so Apply must be
// deterministic: the same commands in the same order give the same state and
// the same results everywhere. It must do no I/O and read no clock; anything
// that varies between nodes (time, randomness) belongs in the command.
//
// Apply and Restore are never called concurrently with each other. Query and
// Snapshot may run concurrently with Apply: protoraft serialises them with a
// read lock around Query and Snapshot and a write lock around Apply, so a
// state machine needs no locking of its own.
type StateMachine interface {
	// Apply applies one committed command and returns its result. index is
	// the command's index: it increases strictly from one command to the
	// next and is the same on every node, so it serves as a revision. It
	// is the command's Raft log index, except that commands the leader
	// batched into one log entry are numbered on from the entry's index
	// (WriteResponse.index and ReadResponse.applied_index report it too).
	// A command the machine refuses (a failed compare-and-set, an unknown
	// operation) is a result, not an error: it is still part of the log
	// and must leave the state as every other node leaves it.
	Apply(index uint64, command []byte) []byte

	// Query answers a read-only query against the current state. An error is
	// returned to the caller as INVALID_ARGUMENT.
	Query(query []byte) ([]byte, error)

	// Snapshot captures the current state. It must be fast: the returned
	// Snapshot is written out later, concurrently with further Applies, so it
	// must not share mutable memory with the live state.
	Snapshot() (Snapshot, error)

	// Restore replaces the whole state with a snapshot written by
	// Snapshot.Persist, possibly by another node or an earlier version.
	Restore(r io.Reader) error
}

// Snapshot is a point-in-time copy of a StateMachine's state.
type Snapshot interface {
	// Persist writes the snapshot. It runs on its own goroutine while the
	// state machine keeps applying commands.
	Persist(w io.Writer) error

	// Release frees the snapshot; it is called once, after Persist or when
	// the snapshot is abandoned.
	Release()
}

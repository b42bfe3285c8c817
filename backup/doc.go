// Package backup is protoraft's backup file: a consistent snapshot of a
// running group, written to a file that says what it holds and proves it
// is whole, and the restore that builds the data directories of a new
// group from it.
//
// It owns:
//   - the file format (format.go): a versioned header, the snapshot's
//     bytes exactly as a node of the group wrote them (protoraft's
//     snapshot envelope: the session table, the committed policy and the
//     state machine's own bytes), and a SHA-256 of everything before it.
//     Every later release reads every version this one writes; a file
//     written by this build is kept in testdata and read by the tests;
//   - Save: a backup of a running group through a cluster.Client (the
//     leader takes the snapshot after a barrier, so it holds every write
//     acknowledged before Save began), written to a temporary file,
//     synced and renamed, so a file of the name is always complete; a
//     snapshot the node replaces while it streams is followed by a new
//     one, in a fresh temporary file, up to SaveAttempts snapshots;
//   - Restore: a checked file into the data directories of a new group
//     (raftactor.RestoreDataDir), every node of it built from the same
//     snapshot and the same members.
//
// It must never: implement Raft or change a data directory other than
// through raftactor; write a backup file under its final name before it
// is complete; restore from a file whose checksum, format version or
// sizes it has not checked; or restore into a directory that holds a
// node's state.
package backup

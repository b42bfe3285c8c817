// Package raftactor is a Raft node as a protoactor actor. A node actor
// (Props, Node) owns one hashicorp/raft instance, its durable stores in the
// node's data directory (raft-wal and file snapshots, in a versioned
// format), and the adapter between Raft and the user's StateMachine with
// the replicated session table that makes client retries exactly-once. Its
// Raft RPCs travel as actor messages through its transport
// (internal/transport): to local PIDs, over protoactor remote, or on the
// system's Raft link (StartLink).
//
// The node actor answers the protocol of package actors: writes, reads at
// three consistencies, leadership, membership, timeouts, status, snapshots
// and policy updates. Leadership is always read from Raft's own state;
// every write goes through the Raft log, a one-node group included;
// membership changes are Raft configuration changes replied to only after
// they commit.
//
// Invariants this package keeps:
//   - Receive never blocks on a Raft future, a channel send into Raft, or
//     I/O. Work that waits runs on a goroutine that replies to the original
//     sender when it completes or when the request's deadline passes,
//     whichever is first; the caller gets exactly one reply.
//   - Starting and stopping are states, not work in Receive (lifecycle.go):
//     the data directory is opened and closed on goroutines of their own,
//     and meanwhile every request is answered UNAVAILABLE and every Raft RPC
//     refused at once. The only blocking wait is the Stopping of the node's
//     closer child, which receives no requests: it holds back the node's
//     stop until its files are closed.
//   - A linearizable read is served only after the leader confirmed with a
//     quorum that it leads, in a term in which it has committed an entry,
//     and after the serving node's state machine applied every entry up to
//     the leader's commit index seen after the read arrived (ReadIndex; a
//     follower gets that index from the leader with a ReadIndexRequest).
//     The confirmation counts only answers to leadership probes sent after
//     that index was noted (probes.go), never Raft's own acknowledgements,
//     which may describe messages taken before the read arrived. A read
//     that cannot tell whether the state reflects the index (a log store
//     error) fails with INTERNAL; it is never served.
//   - Every entry the node writes enters the log in the order the leader
//     received its request: writes waiting in its mailbox together become
//     one batch entry, and a single appender goroutine hands entries to
//     Raft in order, policy entries included. Every command gets its own
//     result and its own command index, which increases strictly and
//     equals the log index in any log without batch entries.
//   - A read batch (a ReadRequest with several queries) waits once, as one
//     read would, and answers every query after that wait; every read is
//     answered by its own deadline, without a timer of its own.
//   - A voter is removed or demoted only while the voters left hold a
//     reachable quorum, found with the same leadership probes as reads use.
//   - A node restarted by its supervisor recovers from its data directory
//     alone; nothing in memory survives a restart but the runtime timeouts
//     and the read floor.
//   - A node answers no read from a state older than one it answered from
//     before, in this process: after it reopens its data directory or its
//     supervisor restarts it, STALE reads are refused UNAVAILABLE until its
//     new state machine is back at the highest command index a read
//     answered from (reads_floor.go), and a read index the old state
//     machine was known to reflect says nothing of the new one.
//   - What an operator does to a stopped node's data directory goes
//     through this package too (datadir_offline.go): RestoreDataDir builds
//     one from a backed-up snapshot, InspectDataDir reads one, and
//     RequestRecovery asks a survivor to become a group of one, which the
//     node carries out with hashicorp/raft's RecoverCluster at its next
//     start, before Raft runs. None of them touches a directory a running
//     node holds.
//
// It must never import cluster, policies, limiter or telemetry, never decide
// leadership itself, and never apply a write outside the Raft log.
package raftactor

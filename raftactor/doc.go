// Package raftactor is the Raft node as a protoactor actor: it owns one
// hashicorp/raft instance, its durable stores in the node's data directory,
// the adapter between Raft and the user's StateMachine, and the transport
// that carries Raft RPCs as actor messages between the node actors of a
// group (local PIDs in one ActorSystem, remote PIDs over protoactor remote),
// and the Raft link (StartLink) that carries the same messages between
// processes on direct connections when both serve one.
//
// The node actor answers the protocol of package actors: writes, reads at
// three consistencies, leadership, membership, timeouts, status and
// snapshots. Leadership is always read from Raft's own state; every write
// goes through the Raft log, a one-node group included; membership changes
// are Raft configuration changes replied to only after they commit.
//
// Invariants this package keeps:
//   - Receive never blocks on a Raft future, a channel send into Raft, or
//     I/O. Work that waits runs on a goroutine that replies to the original
//     sender when it completes or when the request's deadline passes,
//     whichever is first; the caller gets exactly one reply.
//   - A linearizable read is served only after the leader confirmed with a
//     quorum that it leads, in a term in which it has committed an entry,
//     and after the serving node's state machine applied every entry up to
//     the leader's commit index seen after the read arrived (ReadIndex; a
//     follower gets that index from the leader with a ReadIndexRequest).
//     The confirmation counts only answers to LeadershipProbes sent after
//     that index was noted, never Raft's own acknowledgements, which may
//     describe messages taken before the read arrived.
//   - Writes enter the log in the order the leader received them: writes
//     waiting in its mailbox together become one batch entry, and a single
//     appender goroutine hands entries to Raft in order. Every command gets
//     its own result and its own command index, which increases strictly
//     and equals the log index in any log without batch entries.
//   - A read batch (a ReadRequest with several queries) waits once, as one
//     read would, and answers every query after that wait; every read is
//     answered by its own deadline, without a timer of its own.
//   - The transport hands a follower's RPCs to Raft in the order the leader
//     sent them on one carrier (remote, or a link), and a pipeline (at most
//     MaxAppendsInFlight AppendEntries in flight) gives Raft their replies
//     in that order too. When a leader's RPCs move between remote and a
//     link, one may overtake another sent on the other carrier; Raft takes
//     that as any reordering: the follower refuses an append with a gap and
//     the leader sends again from where the follower is.
//   - A link delivers an RPC only to the transport of a node actor of its
//     own system, and only while that transport is open. Every RPC sent on
//     a link ends once: answered, timed out, or failed with ErrLinkClosed
//     when its connection breaks.
//   - A node restarted by its supervisor recovers from its data directory
//     alone; nothing in memory survives a restart but the runtime timeouts.
//
// It must never import cluster, policies, limiter or telemetry, never decide
// leadership itself, and never apply a write outside the Raft log.
package raftactor

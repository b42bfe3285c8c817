// Package transport is the raft.Transport of a protoraft node: it carries
// Raft's RPCs as actor messages (wire.RaftRPC) between the node actors of
// one group, to local PIDs in one ActorSystem or to remote PIDs over
// protoactor remote, and on the system's Raft link (package link) when one
// is up to the peer's process. It owns what every RPC goes through: the
// group check, the cluster key MAC (auth.go), fault injection (a
// faults.Network), fail-fast on dead peers, timeouts, the AppendEntries
// pipeline (pipeline.go) and snapshots in bounded chunks (snapshot.go). It
// also carries the node's own peer RPCs (leadership probes, read indexes)
// without knowing what they mean: Call sends one, a PeerHandler answers.
//
// Invariants:
//   - HandleRPC never blocks: RPCs wait in a bounded queue for one
//     dispatcher goroutine, which hands them to Raft in arrival order; a full
//     queue fails the RPC with ErrQueueFull, at the sender too.
//   - A pipeline hands Raft the replies in the order it sent the RPCs, and
//     keeps at most MaxAppendsInFlight of them in flight.
//   - Every outbound RPC ends once: answered, failed, or timed out; Close
//     fails every one still waiting and returns once every goroutine the
//     transport started has ended.
//   - An error a peer's transport answers with arrives as the same error
//     value (ErrQueueFull, ErrRPCAuth, ...), carried as a code on the wire.
//
// It must never import the node (package raftactor), decide anything about
// leadership or reads, or let Raft wait on it without a timeout.
package transport

// Package link is the Raft link: a carrier of a group's Raft RPCs between
// two processes on one TCP connection each way (optionally mutual TLS), in
// place of protoactor remote, whose gRPC streams cost several goroutine
// hand-offs on each side of every message. One Link serves an ActorSystem;
// node transports register as its Handlers (Serve) and send on its
// connections (Route, Conn.Request). The frames carry the same RaftRPC
// messages as remote, so authentication (the cluster key) and fault
// injection stay the transport's, and remote stays the fallback whenever a
// link is not up.
//
// Users start a link with raftactor.StartLink; this package is the
// implementation behind it.
//
// Every connection opens with a handshake (handshake.go, wire.LinkHello):
// four hellos of at most 4 KiB each, within the DialTimeout on both sides,
// carrying the protocol version and, when the link has a Key, a mutual
// HMAC-SHA256 challenge-response over both sides' nonces. Until it passed,
// a connection is pending: at most maxLinkPending (16) are, apart from the
// maxLinkAccepted (256) that passed, and a new one evicts the oldest
// pending one, so strangers cannot keep a member out. After it, frames are
// read into a buffer that grows as their bytes arrive, against a budget
// shared by all accepted connections (linkFrameBudget, 64 MiB), and an
// accepted connection on which no frame arrives for linkIdleTimeout (2 min)
// is closed. The accept loop ends only when the link closes; any other
// accept error pauses it (5 ms doubling to 1 s).
//
// Invariants: every RPC sent on a link ends once (answered, forgotten by its
// caller, or failed with ErrClosed when its connection breaks); a link
// delivers an RPC only to a handler registered for its target in its own
// system; a frame larger than remoteguard.MaxMessageSize is never sent and
// ends the connection when received; nothing but hellos is read from a
// connection before its handshake passed.
//
// It must never import the transport or the node (they reach it through
// Handler and the methods here), decide what an RPC means, block a
// connection's reader on a handler, allocate for a frame what has not
// arrived of it (beyond one linkReadStep, or twice what arrived), or stop
// accepting before Close.
package link

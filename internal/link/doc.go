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
// Invariants: every RPC sent on a link ends once (answered, forgotten by its
// caller, or failed with ErrClosed when its connection breaks); a link
// delivers an RPC only to a handler registered for its target in its own
// system; a frame larger than remoteguard.MaxMessageSize is never sent and
// ends the connection when received.
//
// It must never import the transport or the node (they reach it through
// Handler and the methods here), decide what an RPC means, or block a
// connection's reader on a handler.
package link

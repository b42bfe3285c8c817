// Package limiter keeps a protoraft group from being overrun by its own
// clients: token-bucket rates (global and per principal), requests and bytes
// in flight, the size of one request, and backpressure from Raft's backlog,
// each with its own budget for reads, writes and administrative operations.
//
// It owns two things: Limiter, a pure core that admits or refuses a request
// and hands out permits, and the limiter actor (Props), the stage between
// the authorizer and the node that applies the core to every request, gives
// permits back when the node reports a request's end, and reclaims the ones
// whose request outlived its deadline.
//
// It must never: block its mailbox (no waiting on a future or on the node;
// the Raft backlog is polled by a tell and its reply), reply for the node
// once a request is admitted (the node's reply goes straight to the
// original sender), keep a permit past its request's deadline, let client
// traffic spend the administrative budget, or import raftactor, policies,
// telemetry or cluster: it knows the node only as a PID that speaks the
// protocol of package actors.
package limiter

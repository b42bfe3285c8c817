// Package cluster composes a protoraft group: for one node of a Raft group
// it spawns, under one supervisor, the node actor (package raftactor) and
// the stages of the message path in front of it, and it bootstraps, joins
// and leaves groups. The Client that talks to a group lives here too.
//
// # Composition
//
// Spawn starts one node of a group in an ActorSystem. Its actors are named
// "protoraft/<group>/<node ID>" (the supervisor) and below it "node",
// "metrics", "limiter" and "door" (the front door). The names are fixed, so
// a node's Raft address, which is its node actor's PID, also tells where its
// front door is (FrontDoorOf): a NOT_LEADER hint leads a caller straight to
// the leader's front door. Several groups, and several nodes of one group,
// can run in one ActorSystem; each has its own name, data directory,
// supervisor and front door. The groups of one process share the system's
// remote endpoint: start remote (remoteguard.Config) once, before the
// first Spawn, because a node's Raft address is taken from the system's
// address when it starts. They share its Raft link too, when one is started
// (raftactor.StartLink, after remote): the nodes spawned afterwards send
// their Raft RPCs to the peers that serve one on direct connections.
//
// # The stage contract
//
// Every request takes the same path:
//
//	caller ─► authorizer (front door) ─► limiter ─► node ─► hashicorp/raft
//
// Each stage is its own actor supervised by the group's supervisor. A stage
// passes a request on with Forward, which keeps the original sender, so the
// node's reply goes straight back to the caller and no stage ever waits for
// another. A stage that refuses a request answers at once with
// actors.ErrorReply (the response type the caller waits for, carrying the
// error code), and never passes it on. Outcomes go to the metrics actor as
// tells, never on the critical path. Until the authorizer and the limiter
// have their own policies they pass every request through unchanged; the
// wiring, the order and the supervision are already the real ones.
//
// # Supervision
//
// The supervisor restarts a child that panics (the node then recovers from
// its data directory alone). A child that keeps failing, or stops, takes the
// whole group down with it: a group without its node must not keep a front
// door that swallows requests, and a dead front door answers callers with
// a dead letter at once instead of a timeout.
//
// # What this package must never do
//
// It never implements Raft, decides leadership, or changes the state
// machine other than through the node actor's protocol: bootstrap, join and
// leave are Raft configuration changes done by the leader and replied to
// after they commit. It never bootstraps a node that already has state
// (that would make a second cluster), never adds a joining node as a voter
// before it has caught up (a slow joiner must not cost the group its
// quorum), and never follows protoactor's cluster membership blindly: the
// Raft configuration is the only membership. Nothing here imports samples
// or integration.
package cluster

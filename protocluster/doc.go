// Package protocluster is a protoactor-go cluster provider and identity
// lookup backed by a protoraft group: membership and the identity →
// activation table are replicated state, so a protoactor cluster needs no
// Consul, etcd or Kubernetes, and each identity has at most one live
// activation.
//
// # What it owns
//
// Table is the group's state machine: the members in registration order
// (ID, host, port, kinds, the log index of their last renewal) and, per
// identity (kind and identity), its activation (member, address, fencing
// token), the Raft nodes of members that left (departed, until the leader
// removed them from the group) and a small key-value space. Its commands and snapshot are protobuf (table.proto) in a
// versioned snapshot container; both are stored by every voter and read
// by later releases.
//
// Provider is the cluster.ClusterProvider. The group's first voters are
// the members listed in Config.Voters, by the address their remote listens
// on: start those first; a member at such an address runs the voter in its
// own ActorSystem. Every other member reaches the group as a client, or,
// with Config.NonVoters, runs a non-voter of the group, which the leader
// adds once the member registered (each member registers its node's ID and
// Raft address). With NonVoters a voter that leaves is replaced: when the
// table removes a member (Expire, Deregister) its node joins the table's
// departed list, and the leader's keeper removes that node from the Raft
// configuration, forgets it, and promotes the non-voter of the earliest
// registered live member until the group has len(Voters) voters again,
// one Raft membership change at a time (the node actor promotes only a
// node that has caught up). Without NonVoters a voter that leaves is not
// replaced, and the group keeps working while a majority of the voters
// runs. StartMember registers the member through Raft and renews it every
// RenewInterval; the member's voter, while it leads, expires members whose
// renewal stopped; every member reads the committed member list every
// WatchInterval and hands each new version to its MemberList
// (UpdateClusterTopology), in the table's order, so all members see the
// same topology. StartClient only watches. Shutdown deregisters.
//
// IdentityLookup is the cluster.IdentityLookup. Get reads the identity's
// activation; if there is none on a live member it claims one through Raft
// (the table places it on a member that hosts the kind, by rendezvous
// hashing over the committed topology; the claim's log index is its
// fencing token). Then it asks the owner's activator for the grain. The
// owner reads the claim back from the group (linearizably) before it
// spawns the grain, so a stale answer can never start a second one. The
// grain's PID carries its token (FencingToken), so a message for an
// activation that ended is a dead letter, never a delivery to its
// successor. A grain that stops by itself is released through Raft.
//
// Singleton keeps a cluster singleton alive: the singleton of a kind is
// the activation of the identity SingletonIdentity of that kind, so it is
// placed, fenced (FencingToken, larger for every new activation) and moved
// like any grain, and at most one runs. StartSingleton looks it up through
// the IdentityLookup every interval from a member, which activates it
// again elsewhere once its member left the table or it stopped; any
// number of members may do so for one kind. This is the cluster's
// singleton; samples/singleton shows the other kind, a job that runs on a
// bare group's Raft leader, fenced by the term.
//
// KeyValueStore is protoactor's cluster.KeyValueStore on the table's
// key-value space: Set and Clear are Raft writes, Get a linearizable
// read, values at most MaxValueSize. protoactor's pub-sub keeps a topic's
// subscribers in such a store; TopicKind is its topic kind with this one,
// so subscriptions outlive the topic actor's activation. protoactor's
// topic actor calls the store inside its Receive, so a subscription waits
// for its commit in the topic's mailbox (bounded by CallTimeout): the one
// place where an actor of this cluster waits for the group, and it is
// protoactor's actor, not this package's.
//
// # At most one activation
//
// Two rules, both in the log: an activation is created only by a Claim,
// which returns the existing activation if there is one; and the entry
// that removes a member (Expire, Deregister) removes its activations too.
// So the table never holds two activations of one identity, and an
// identity moves only when its member left the table. What remains is the
// member that was expired while it still ran, say, behind a partition. It
// is covered by its lease:
//
//   - A member sends a renewal at time s (its monotonic clock). When the
//     renewal commits, its lease runs until s + LeaseDuration. When the
//     lease runs out the member stops its grains, and from that moment a
//     grain handles no further message (a receiver middleware answers them
//     with a dead letter), even before its stop is processed.
//   - The expirer, on the leader, notes the time f at which it first sees a
//     member's last renewal index r, which is after that renewal committed
//     and so after s. It writes Expire(member, r) only once ExpireAfter has
//     passed since f by its own monotonic clock, and the table applies it
//     only if the member's renewal index is still r: a renewal that
//     committed in between wins. A new leader starts counting afresh,
//     which only delays an expiry.
//   - So the member's identities can start elsewhere no earlier than
//     f + ExpireAfter ≥ s + ExpireAfter, while the member stopped them at
//     s + LeaseDuration. Config.Validate requires ExpireAfter ≥
//     LeaseDuration + max(LeaseDuration/4, 200ms): the margin covers the
//     time a member takes to stop its grains and the rate difference of
//     two monotonic clocks (parts per million). Wall clocks are read
//     nowhere, and the table reads no clock at all.
//
// A graceful Shutdown stops the member's grains first and deregisters
// after. A member that was expired is told so by its next renewal (its
// Provider.Expired channel closes, its grains are told to stop) and hosts
// nothing from then on; it cannot register again under its ID, which the
// other members' remotes block once it left. Restart it (a new
// ActorSystem ID) to bring it back.
//
// # What it must never do
//
// It never spawns a grain the table does not hold for its member with the
// same token, never keeps a grain running past its member's lease, never
// expires a member by any clock but the expirer's monotonic one counting
// from a renewal it saw, and never reads a wall clock. No request waits in
// an actor's mailbox for the group: the activator's reads and writes run
// on goroutines that send their outcome back. It imports protoraft's
// cluster, raftactor and actors packages (and faults, the type of its test
// hook); nothing in this module imports it but samples and tests.
//
// How it compares with protoactor's own providers (its test provider and
// its etcd provider, both with disthash): activation, call, lookup and
// failover numbers, and the opt-in test that measures them, are in
// docs/benchmarks.md.
//
// Regenerate table.pb.go after editing table.proto, from this directory, with
//
//	go generate
package protocluster

//go:generate protoc -I .. --go_out=.. --go_opt=module=github.com/protoraft/protoraft protocluster/table.proto

// Package remoteguard hardens protoactor remote, the gRPC endpoint through
// which the ActorSystems of a protoraft group (and its clients) reach each
// other between processes: Config is a remote configuration whose endpoint
// refuses message batches that would crash protoactor, bounds message sizes
// and queues, and stamps every received message with the verified TLS
// client certificate of its connection (actors.HeaderPeerSubject), so the
// front door can take it as the caller's identity and no sender can forge
// it; MutualTLS puts the endpoint behind mutual TLS, and TLSFiles loads the
// PEM files of a node's identity.
//
// None of it is about Raft: any protoactor program that serves remote to
// peers it does not fully trust can use it. The Raft RPCs that cross the
// endpoint are authenticated separately, by the group's cluster key
// (raftactor.Config.ClusterKey).
//
// It must never import a protoraft package but actors and internal/mtls,
// hold per-message state, or block a stream beyond the validation of one
// batch.
package remoteguard

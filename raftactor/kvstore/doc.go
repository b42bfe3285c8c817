// Package kvstore is a replicated key-value state machine for protoraft: the
// one tests and samples run, and a worked example of a raftactor.StateMachine.
//
// Callers never handle raw bytes: Put, Delete, CompareAndSet and PutIfAbsent
// build encoded commands for the Raft log, Get and List build queries, and
// DecodeResult and DecodeQueryResult read the answers. The wire format lives
// in kv.proto; snapshots use a versioned container (see SnapshotVersion and
// snapshot.go) so that snapshots stored by one release restore in every
// later one.
//
// Regenerate kv.pb.go after editing kv.proto, from this directory, with
//
//	go generate
//
// protoc runs from the repository root, so the file registers as
// "raftactor/kvstore/kv.proto": registered as plain "kv.proto" it
// collided with etcd's client (go.etcd.io/etcd/api/v3/mvccpb registers
// that name), and a program linking both panicked at start.
package kvstore

//go:generate protoc -I ../.. --go_out=../.. --go_opt=module=github.com/protoraft/protoraft raftactor/kvstore/kv.proto

// Package wire is what protoraft's nodes write for each other and for
// themselves, as opposed to the client protocol of package actors: the Raft
// RPCs between the node actors of a group (RaftRPC and its reply, generated
// from proto/raftrpc.proto, one message per hashicorp/raft command, plus the
// leadership probes, read indexes and link frames protoraft adds), and the
// stored formats beside the user's bytes (proto/entry.proto: the session
// metadata of a log entry, the write batch, the session table of a
// snapshot). It also converts between hashicorp/raft's command structs and
// their messages.
//
// The protobuf package stays protoraft.v1, as it was when these messages
// lived in package actors: the type names travel over protoactor remote and
// must not change. Entries and snapshots are on disk, so fields are only
// ever added, never renumbered or reinterpreted.
//
// It must never import another package of this module but actors, hold
// state, or start goroutines: everything here is a message or a pure
// function.
//
// Regenerate after editing proto/*.proto with go generate ./...
package wire

//go:generate protoc -I ../.. --go_out=../.. --go_opt=module=github.com/protoraft/protoraft internal/wire/proto/raftrpc.proto internal/wire/proto/entry.proto

// Package actors is the foundation of protoraft: the message protocol every
// stage and node speaks (generated from proto/*.proto), the error codes and
// their helpers, request metadata, and the pure validation of node IDs and
// addresses.
//
// It owns the wire format and nothing else. It must never import another
// package of this module, start a goroutine, touch the disk or the network,
// or depend on a running ActorSystem: everything here is a value or a pure
// function, so every other package can stand on it.
//
// Regenerate the protocol after editing proto/*.proto with
//
//	go generate ./actors
package actors

//go:generate sh -c "cd .. && protoc -I . --go_out=. --go_opt=module=github.com/protoraft/protoraft actors/proto/*.proto"

// Package protocluster is a protoactor-go cluster provider and identity
// lookup backed by a protoraft group: membership and the identity →
// activation table are replicated state, so a protoactor cluster needs no
// Consul, etcd or Kubernetes, and each identity has at most one live
// activation.
//
// Regenerate table.pb.go after editing table.proto, from this directory, with
//
//	go generate
package protocluster

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative table.proto

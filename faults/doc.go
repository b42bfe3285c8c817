// Package faults is protoraft's fault injection for tests: a Network sits
// between the node actors of a group (raftactor.Config.Faults) and drops,
// delays or cuts their Raft RPCs, in one direction or both, by a seeded
// source so that a failing run can be replayed; a Clock is a node's wall
// clock (raftactor.Config.Clock) that a test moves instead of sleeping.
//
// It is a test hook. A node without one delivers every message at once, and
// nothing here is meant for production; the fault-injection suite
// (integration) and the package tests build their nemeses on it.
//
// It must never import another package of this module, start goroutines, or
// do I/O: a Network only answers what happens to one message.
package faults

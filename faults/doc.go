// Package faults is protoraft's fault injection for tests: a Network sits
// between the node actors of a group (raftactor.Config.Faults) and drops,
// delays or cuts their Raft RPCs, in one direction or both, by a seeded
// source so that a failing run can be replayed; a Clock is a node's wall
// clock (raftactor.Config.Clock) that a test moves instead of sleeping; a
// Disk is the file system under a node's log segments
// (raftactor.Config.Disk) that a test cuts the power of (every write since
// the last fsync is lost) or fails writes, fsyncs and reads on.
//
// It is a test hook. A node without one delivers every message at once and
// writes straight to its files, and nothing here is meant for production;
// the fault-injection suite (integration) and the package tests build their
// nemeses on it.
//
// It must never import another package of this module or start
// goroutines. Network and Clock do no I/O (a Network only answers what
// happens to one message); Disk is the one that does, since it is a file
// system.
package faults

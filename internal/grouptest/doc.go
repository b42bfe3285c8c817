// Package grouptest runs whole protoraft groups inside one test process,
// for the tests of every package above raftactor: Nodes is a group of bare
// node actors (raftactor.Props) sharing one ActorSystem and one
// faults.Network, named as package cluster names them so that a
// cluster.Client finds them through the front doors a test gives them; the
// helpers write, read and wait the way a client would, bounded by
// testutil.WaitFor.
//
// It is imported by tests only (external test packages: it imports
// raftactor and kvstore). Tests of the composition (cluster.Spawn) build on
// cluster's own API.
package grouptest

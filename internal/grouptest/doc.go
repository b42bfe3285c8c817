// Package grouptest runs whole protoraft groups inside one test process,
// for the tests of every package above raftactor, in two shapes:
//
//   - Nodes is a group of bare node actors (raftactor.Props) sharing one
//     ActorSystem and one faults.Network, named as package cluster names
//     them so that a cluster.Client finds them through the front doors a
//     test gives them (WithDoor).
//   - Groups spawns group nodes with cluster.Spawn (supervisor, authorizer,
//     limiter, metrics and node) into one ActorSystem, and its Caller talks
//     to them through their front doors, from that system or another one.
//
// The helpers write, read and wait the way a client would, bounded by
// testutil.WaitFor.
//
// It is imported by tests only, and by external test packages only: it
// imports raftactor, kvstore and cluster, and through cluster policies,
// limiter and telemetry, so an internal test of any of those packages that
// imported it would form an import cycle. Internal tests use testutil.
package grouptest

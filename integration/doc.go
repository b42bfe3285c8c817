// Package integration is protoraft's verification suite: it runs whole
// groups under a seeded, bounded workload of concurrent clients while a
// seeded schedule of faults (nemeses) partitions, slows, stops, restarts and
// reconfigures them, and then checks the recorded history.
//
// It owns:
//   - the workload (workload.go): concurrent cluster.Clients doing puts,
//     deletes, compare-and-sets and reads at every consistency on a small key
//     space, each operation recorded with its call and return time, input and
//     outcome (ok, failed, unknown); eight read-only clients share one
//     Client, so reads stalled by a fault go out as read batches;
//   - the nemeses and their schedules (nemesis.go, cluster.go): partitions,
//     one-way cuts, message loss and delay, stopped and restarted nodes,
//     supervisor restarts, membership changes, snapshot catch-up and run-time
//     timeout changes, against an in-process group whose nodes share one
//     ActorSystem and one raftactor.Faults;
//   - the checkers (model.go, check.go): linearizability with porcupine,
//     monotonic stale reads, durability of acknowledged writes, convergence of
//     every node after the final heal, and the stale-read probe on an isolated
//     old leader;
//   - the process mode (process.go): samples/kv nodes as OS processes on
//     127.0.0.1, driven over HTTP by concurrent clients, under SIGKILL (of
//     a random node or the leader, restarted from its data directory),
//     SIGSTOP/SIGCONT of the leader and graceful restarts, checked by the
//     same checkers (TestProcessVerify, TestProcessReplay);
//   - the artifacts of a failed run (run.go): seed, schedule, history and
//     porcupine's HTML visualisation, and the command that replays the seed.
//
// The tests run a short profile inside `go test ./...` and a long one with
// PROTORAFT_SOAK=1 (see README.md, "Verification"). Nothing imports this
// package; it imports cluster and below.
package integration

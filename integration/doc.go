// Package integration is protoraft's verification suite: it runs whole
// groups under a seeded, bounded workload of concurrent clients while a
// seeded schedule of faults (nemeses) partitions, slows, stops, kills,
// pauses, restarts and reconfigures them, and then checks the recorded
// history.
//
// One runner (runner.go) drives every run, whatever carries the group: it
// draws the schedule, runs the workload's clients, plays the nemeses and
// heals after each step (nemesis.go), checks the final state (final.go),
// adds up the report and saves the artifacts of a failed run
// (artifacts.go). A carrier (the carrier interface, carrier.go) is what it
// needs of a group: start, stop and kill a node, ask a node's status and
// state, make the workload's clients, read the final state; the faults
// beyond those are small interfaces a carrier implements or not, and a
// nemesis runs only on carriers that offer what it needs. There are two:
//   - in-process (inproc.go, inproc_workload.go; Run, TestVerify): nodes
//     sharing one ActorSystem, network faults through one faults.Network
//     (partitions, one-way cuts, loss, delay), supervisor restarts,
//     membership changes, snapshot catch-up, run-time timeout changes,
//     power cuts and full disks through each node's faults.Disk, and the
//     stale-read probe on an isolated old leader, under a workload of
//     cluster.Clients (puts, deletes, compare-and-sets, reads at every
//     consistency; eight readers share one Client, so reads stalled by a
//     fault go out as read batches);
//   - processes (process_carrier.go, process_workload.go; RunProcess,
//     TestProcessVerify): samples/kv binaries as OS processes on 127.0.0.1,
//     started by internal/proctest behind forwarders that keep every node's
//     addresses across restarts, under an HTTP workload, with SIGKILL of a
//     random node or the leader (restarted from its data directory),
//     SIGSTOP/SIGCONT of the leader and graceful restarts, and as root
//     (process_disk.go) full disks on a tmpfs per node and power cuts
//     through a FUSE file system that loses unsynced writes
//     (internal/powerfs);
//   - processes in network namespaces (netns_carrier.go, netfaults.go;
//     RunNetns, TestNetnsVerify, root only): the same processes, each in
//     a namespace of its own (internal/netns), with kernel blackholes,
//     one-way blackholes and netem on top of every process step.
//
// It also owns the schedules (schedule.go: Schedule, ProcessSchedule, a
// seed always draws the same kinds), the model and checkers (model.go,
// check.go: linearizability with porcupine, monotonic stale reads,
// durability of acknowledged writes; final.go: convergence of every node
// after the final heal) and the profiles' summary (summary.go).
//
// The tests run short profiles inside `go test ./...` and long ones with
// PROTORAFT_SOAK=1 (see docs/verification.md); PROTORAFT_SEED and
// PROTORAFT_PROC_SEED replay one seed of either carrier.
//
// It must never: be imported (it imports cluster and below; the process
// carrier reaches samples/kv through its binary only); call raftactor or
// cluster outside the in-process carrier's two files; send traffic beyond
// 127.0.0.0/8 and the network namespaces it created itself; pick a port
// for a process on a shared address (proctest hands out listeners it
// holds; a node alone in its namespace has its address to itself); leave
// a mount it made (a node's tmpfs, its power-cut file system) behind a
// run; or count a harness failure (a group that did not start) as a
// violation, or a checker's timeout as a pass.
package integration

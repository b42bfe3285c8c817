// Package proctest runs samples/kv nodes as OS processes on 127.0.0.1 for
// the tests that need real processes: the sample's own end-to-end test and
// the process carrier of package integration.
//
// It owns:
//   - building the sample once per caller (BuildKV), or another main
//     package (Build), and tying a process a test starts itself to the
//     test's life (DieWithTest);
//   - the Forwarder: a listener held for a whole run that joins every
//     connection it accepts to the port a node's current process listens
//     on. Every node's advertised remote address and link address are
//     forwarders, so no port is ever picked free and bound later: the
//     harness binds its ports once and keeps them, a process binds
//     127.0.0.1:0 itself and says which ports it got, and a restarted
//     process, listening on new ports, is reached at the same addresses;
//   - a node's processes, one after another (Node): start with the
//     forwarders routed to its reported ports, SIGKILL, SIGTERM,
//     SIGSTOP/SIGCONT, a kill after a fault that takes the process's world
//     away (KillAfter), its log across restarts, and exits nobody asked
//     for, which a caller may excuse (Config.Excuse);
//   - a group of nodes and its --peers list (Group).
//
// It must never: pick a port to pass on (every listener it hands out it
// holds), reach beyond 127.0.0.1, or let a process outlive Group.Close (and,
// on Linux, the test process itself: the kernel kills every node with it).
// It knows the sample's flags and its startup lines; it knows nothing of
// Raft, of protoraft's packages or of what a test checks.
package proctest

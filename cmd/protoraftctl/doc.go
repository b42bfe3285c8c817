// Command protoraftctl is the operator's tool for protoraft groups: it shows
// the status and health of every member, changes membership, moves
// leadership, reads and changes each node's timeouts and limits and the
// group's RBAC policy, takes snapshots and backups, and, offline, restores
// a backup into the data directories of a new group and turns the survivor
// of a group that lost its majority into a group of one.
//
// It talks to a group like any client: over protoactor remote, behind
// mutual TLS, presenting a bearer token (the kv sample's secrets
// directory: --secrets DIR, or --tls-cert, --tls-key, --tls-ca and
// --token-file; --insecure for a group without TLS). Run it without
// arguments, or see docs/operations.md, for the commands, their flags and
// the exit codes.
//
// It owns the command line only: parsing, the tables and JSON it prints,
// and the mapping of protoraft's error codes to exit codes. Everything it
// does to a group goes through cluster.Client (and cluster.AskMember for
// what is per node), backups and restores through package backup, and
// everything it does to a data directory through raftactor. It must never
// speak Raft, write into a data directory itself, print a token, or send
// a request before its command line was checked whole.
package main

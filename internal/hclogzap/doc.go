// Package hclogzap bridges hclog, the logger of hashicorp/raft and
// raft-wal, into zap, so protoraft has one log. It sits below raftactor
// and telemetry, which both need it and must not import each other.
//
// It owns the adapter and nothing else; it never configures levels or
// outputs of its own.
package hclogzap

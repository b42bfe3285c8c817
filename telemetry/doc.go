// Package telemetry is how a protoraft group tells operators who leads, how
// healthy it is and how fast it runs: Prometheus metrics, a health verdict
// with a score and its reasons, and one zap log that hashicorp/raft's hclog
// and protoactor's slog are bridged into.
//
// It owns:
//   - the metrics actor (Props), the "metrics" stage of a group: it is told
//     every request's actors.Outcome (alone or in an actors.Outcomes batch)
//     by the node and the stages, follows its node's actors.LeaderChanged
//     events, polls its node's (and the other members') status on a
//     ticker, and answers actors.HealthRequest;
//   - the Prometheus collectors (NewMetrics), all named protoraft_* and
//     labelled group and node, registered on the registry the caller passes;
//   - health judgement (Judge), a pure function of polled status;
//   - HTTP handlers (Handler, HealthHandler, StatusHandler) that programs
//     mount where they like;
//   - the log bridges (HCLogger, SlogHandler) and the opt-in bridge of
//     hashicorp/raft's go-metrics (BridgeRaftMetrics);
//   - monitoring/: Prometheus alerting rules (alerts.yml, unit-tested by
//     alerts_test.yml with promtool) and a Grafana dashboard
//     (dashboard.json) over these metrics; the tests check that they name
//     only metrics this package exports.
//
// It must never: import raftactor or cluster (imports point downward: it
// stands on actors only, and raftactor reaches it through the
// raftactor.Metrics interface, which *Metrics satisfies); sit on the
// critical path of a request (outcomes are tells, polls run on their own
// goroutine, Receive never waits); register anything on Prometheus' global
// registry or install a global go-metrics sink unless the caller asks for
// it (BridgeRaftMetrics); log per request at INFO.
package telemetry

package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/protoraft/protoraft/actors"
)

// Config configures the telemetry of one node of a group. The zero value
// works: a private registry and the default thresholds.
type Config struct {
	// Registry receives the protoraft_* collectors. Nodes of one process
	// may share it: their series are told apart by the group and node
	// labels. Nil gives the node a private registry (see
	// Metrics.Registry), so nothing ever lands on Prometheus' global one.
	Registry *prometheus.Registry
	// PollInterval is how often the metrics actor polls its node's status
	// (and every member's, for replication lag and reachability). Default
	// 1s.
	PollInterval time.Duration
	// PollTimeout bounds one poll of one member. Default PollInterval,
	// so a round never overlaps the next.
	PollTimeout time.Duration
	// StaleContactHeartbeats: a follower whose last contact with the
	// leader is older than this many heartbeat timeouts has stale contact
	// (and counts as unreachable from the leader). Default 2: the leader
	// sends a heartbeat every tenth of a heartbeat timeout, so contact that
	// old means many were lost.
	StaleContactHeartbeats float64
	// ElectionHeartbeats: a node without a leader for longer than this many
	// (heartbeat + election) timeouts reports "no quorum reachable"
	// instead of "election in progress". Default 3.
	ElectionHeartbeats float64
	// ApplyLagEntries: a commit index more than this many entries ahead of
	// the applied index degrades health. Default 1024.
	ApplyLagEntries uint64
	// StorageErrorWindow is how long a storage failure (a snapshot that
	// could not be written or restored) keeps health degraded. Default 5m.
	StorageErrorWindow time.Duration
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.PollTimeout == 0 {
		c.PollTimeout = c.PollInterval
	}
	if c.StaleContactHeartbeats == 0 {
		c.StaleContactHeartbeats = 2
	}
	if c.ElectionHeartbeats == 0 {
		c.ElectionHeartbeats = 3
	}
	if c.ApplyLagEntries == 0 {
		c.ApplyLagEntries = 1024
	}
	if c.StorageErrorWindow == 0 {
		c.StorageErrorWindow = 5 * time.Minute
	}
	return c
}

// Validate checks the configuration and names the field at fault under
// "telemetry." as cluster.Config carries it.
func (c Config) Validate() error {
	switch {
	case c.PollInterval < 0 || (c.PollInterval > 0 && c.PollInterval < 10*time.Millisecond):
		return actors.InvalidArgument("telemetry.poll_interval", "must be 0 (default 1s) or at least 10ms")
	case c.PollTimeout < 0:
		return actors.InvalidArgument("telemetry.poll_timeout", "must not be negative")
	case c.StaleContactHeartbeats < 0:
		return actors.InvalidArgument("telemetry.stale_contact_heartbeats", "must not be negative")
	case c.ElectionHeartbeats < 0:
		return actors.InvalidArgument("telemetry.election_heartbeats", "must not be negative")
	case c.StorageErrorWindow < 0:
		return actors.InvalidArgument("telemetry.storage_error_window", "must not be negative")
	}
	return nil
}

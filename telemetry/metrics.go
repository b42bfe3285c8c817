package telemetry

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Metric names. Every one starts with protoraft_ and carries the labels
// group and node, so the nodes of several groups in one process stay apart
// on one registry.
const (
	namespace  = "protoraft"
	labelGroup = "group"
	labelNode  = "node"
)

// collectors are the protoraft_* collectors of one registry, shared by
// every node registered on it: a registry refuses a second collector of
// the same name, and one vector with group and node labels is what
// Prometheus expects anyway.
type collectors struct {
	requests         *prometheus.CounterVec
	latency          *prometheus.HistogramVec
	leaderChanges    *prometheus.CounterVec
	elections        *prometheus.HistogramVec
	leaderless       *prometheus.GaugeVec
	term             *prometheus.GaugeVec
	commitIndex      *prometheus.GaugeVec
	appliedIndex     *prometheus.GaugeVec
	lastIndex        *prometheus.GaugeVec
	isLeader         *prometheus.GaugeVec
	replicationLag   *prometheus.GaugeVec
	fsmApply         *prometheus.HistogramVec
	fsmEntries       *prometheus.CounterVec
	snapshots        *prometheus.CounterVec
	snapshotSize     *prometheus.GaugeVec
	snapshotDuration *prometheus.HistogramVec
	restores         *prometheus.CounterVec
	storageErrors    *prometheus.CounterVec
	refusals         *prometheus.CounterVec
	denials          *prometheus.CounterVec
	healthScore      *prometheus.GaugeVec
	healthStatus     *prometheus.GaugeVec
	failureTolerance *prometheus.GaugeVec
	voters           *prometheus.GaugeVec
	reachableVoters  *prometheus.GaugeVec
	readWaits        *prometheus.CounterVec
	readRounds       *prometheus.CounterVec
	readRoundSeconds *prometheus.CounterVec
	readProbes       *prometheus.CounterVec
	readHedges       *prometheus.CounterVec
}

var nodeLabels = []string{labelGroup, labelNode}

func with(extra ...string) []string { return append(append([]string(nil), nodeLabels...), extra...) }

func newCollectors() *collectors {
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	gauge := func(name, help string, labels []string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, buckets []float64, labels []string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
	}
	return &collectors{
		requests: counter("requests_total",
			"Requests ended, by the stage where they ended (node, limiter, authorizer), operation and result code.", with("stage", "op", "code")),
		latency: histogram("request_duration_seconds",
			"Time from a stage receiving a request to its reply, by stage and operation.",
			prometheus.ExponentialBuckets(0.0002, 2, 17), with("stage", "op")),
		leaderChanges: counter("leader_changes_total",
			"Times this node saw a new leader (a different leader, or the same one in a new term).", nodeLabels),
		elections: histogram("election_duration_seconds",
			"Time this node spent without a leader, from losing one to knowing the next.",
			prometheus.ExponentialBuckets(0.01, 2, 14), nodeLabels),
		leaderless: gauge("leaderless_seconds",
			"How long this node has been without a leader; 0 while it knows one.", nodeLabels),
		term:         gauge("term", "Raft term this node is in.", nodeLabels),
		commitIndex:  gauge("commit_index", "Highest log index this node knows to be committed.", nodeLabels),
		appliedIndex: gauge("applied_index", "Highest log index applied to this node's state machine.", nodeLabels),
		lastIndex:    gauge("last_index", "Last index in this node's log.", nodeLabels),
		isLeader:     gauge("is_leader", "1 when this node is the leader, 0 otherwise.", nodeLabels),
		replicationLag: gauge("replication_lag_entries",
			"On the leader: its last log index minus the follower's applied index, as last polled (approximate, see package doc).",
			with("follower")),
		fsmApply: histogram("fsm_apply_duration_seconds",
			"Time the state machine took to apply one batch of log entries.",
			prometheus.ExponentialBuckets(0.00002, 2, 17), nodeLabels),
		fsmEntries: counter("fsm_applied_entries_total", "Log entries handed to the state machine.", nodeLabels),
		snapshots:  counter("snapshots_total", "Snapshots written by this node.", nodeLabels),
		snapshotSize: gauge("snapshot_size_bytes",
			"Size of the last snapshot this node wrote, as written by the state machine.", nodeLabels),
		snapshotDuration: histogram("snapshot_duration_seconds",
			"Time from capturing a snapshot to the end of writing it.",
			prometheus.ExponentialBuckets(0.001, 4, 10), nodeLabels),
		restores: counter("snapshot_restores_total", "Times this node replaced its state from a snapshot.", nodeLabels),
		storageErrors: counter("storage_errors_total",
			"Storage failures seen by this node, by operation (snapshot_write, snapshot_restore, log_write, log_delete).", with("op")),
		refusals: counter("limiter_refusals_total",
			"Requests the limiter refused, by the limit that refused them.", with("reason")),
		denials: counter("authorization_denials_total",
			"Requests the authorizer refused, by operation and code (UNAUTHENTICATED, PERMISSION_DENIED).", with("op", "code")),
		healthScore: gauge("health_score", "Health score of this node, 0 to 100.", nodeLabels),
		healthStatus: gauge("health_status",
			"1 for the node's current health status (unknown, healthy, degraded, unhealthy), 0 for the others.", with("status")),
		failureTolerance: gauge("failure_tolerance",
			"How many more voters may fail with the quorum intact, as this node sees it.", nodeLabels),
		voters: gauge("voters", "Voters in the group's configuration.", nodeLabels),
		reachableVoters: gauge("reachable_voters",
			"Voters found in contact with the leader at the last poll.", nodeLabels),
		readWaits: counter("read_confirmation_waits_total",
			"Linearizable read requests (a batch counts once) that waited for a leadership confirmation on this node.", nodeLabels),
		readRounds: counter("read_confirmation_rounds_total",
			"Rounds of leadership probes this node ran to confirm linearizable reads.", nodeLabels),
		readRoundSeconds: counter("read_confirmation_round_seconds_total",
			"Time those rounds took together; divided by the rounds, the mean round time.", nodeLabels),
		readProbes: counter("read_confirmation_probes_total",
			"Leadership probes this node sent for its rounds.", nodeLabels),
		readHedges: counter("read_confirmation_hedges_total",
			"Rounds that asked more voters than a quorum needs: one of the first failed, answered from another term or was slower than the hedge.", nodeLabels),
	}
}

// all lists every collector, in a fixed order.
func (c *collectors) all() []prometheus.Collector {
	return []prometheus.Collector{
		c.requests, c.latency, c.leaderChanges, c.elections, c.leaderless, c.term, c.commitIndex,
		c.appliedIndex, c.lastIndex, c.isLeader, c.replicationLag, c.fsmApply, c.fsmEntries, c.snapshots,
		c.snapshotSize, c.snapshotDuration, c.restores, c.storageErrors, c.refusals, c.denials,
		c.healthScore, c.healthStatus, c.failureTolerance, c.voters, c.reachableVoters,
		c.readWaits, c.readRounds, c.readRoundSeconds, c.readProbes, c.readHedges,
	}
}

// deleter is what every vector can do: forget the series of one node.
type deleter interface {
	DeletePartialMatch(prometheus.Labels) int
}

// register registers every collector on reg, or adopts the one already
// there under the same name (another node of this process registered it).
func register(reg prometheus.Registerer) (*collectors, error) {
	c := newCollectors()
	adopt := func(dst any, col prometheus.Collector) error {
		err := reg.Register(col)
		var are prometheus.AlreadyRegisteredError
		if err == nil {
			return nil
		}
		if !errors.As(err, &are) {
			return err
		}
		switch p := dst.(type) {
		case **prometheus.CounterVec:
			v, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return fmt.Errorf("telemetry: a collector of another kind is registered: %w", err)
			}
			*p = v
		case **prometheus.GaugeVec:
			v, ok := are.ExistingCollector.(*prometheus.GaugeVec)
			if !ok {
				return fmt.Errorf("telemetry: a collector of another kind is registered: %w", err)
			}
			*p = v
		case **prometheus.HistogramVec:
			v, ok := are.ExistingCollector.(*prometheus.HistogramVec)
			if !ok {
				return fmt.Errorf("telemetry: a collector of another kind is registered: %w", err)
			}
			*p = v
		}
		return nil
	}
	fields := []any{
		&c.requests, &c.latency, &c.leaderChanges, &c.elections, &c.leaderless, &c.term, &c.commitIndex,
		&c.appliedIndex, &c.lastIndex, &c.isLeader, &c.replicationLag, &c.fsmApply, &c.fsmEntries, &c.snapshots,
		&c.snapshotSize, &c.snapshotDuration, &c.restores, &c.storageErrors, &c.refusals, &c.denials,
		&c.healthScore, &c.healthStatus, &c.failureTolerance, &c.voters, &c.reachableVoters,
		&c.readWaits, &c.readRounds, &c.readRoundSeconds, &c.readProbes, &c.readHedges,
	}
	for i, col := range c.all() {
		if err := adopt(fields[i], col); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Metrics is the telemetry of one node of a group: its series on the
// registry, the raftactor.Metrics hook the node calls from Raft's
// goroutines, and what the metrics actor (Props) records into. Make one per
// node with NewMetrics and Close it when the node is gone.
type Metrics struct {
	cfg         Config
	group, node string
	reg         *prometheus.Registry
	c           *collectors
	log         *zap.Logger

	// lastStorageError is when a storage operation last failed (unix
	// nanoseconds, 0 never); set on Raft's goroutines, read by health.
	lastStorageError atomic.Int64
	// logFailure is why the node's log store fails now ("log store write
	// failed: no space left on device"), nil while it works.
	logFailure atomic.Pointer[string]
	// started is set once a metrics actor runs for this node: only then
	// are the node's series its own to delete (see Close).
	started atomic.Bool
}

// NewMetrics validates cfg and registers the node's collectors on
// cfg.Registry (a private registry when nil). log receives the few lines
// telemetry writes (health changes, storage failures); nil logs nothing.
func NewMetrics(cfg Config, group, node string, log *zap.Logger) (*Metrics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	c, err := register(reg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	m := &Metrics{cfg: cfg, group: group, node: node, reg: reg, c: c,
		log: log.With(zap.String("group", group), zap.String("node", node), zap.String("component", "telemetry"))}
	// Series without labels beyond the node exist from the start, so a
	// dashboard sees 0 rather than nothing.
	for _, v := range []*prometheus.CounterVec{c.leaderChanges, c.fsmEntries, c.snapshots, c.restores} {
		v.WithLabelValues(group, node)
	}
	for _, v := range []*prometheus.HistogramVec{c.elections, c.fsmApply, c.snapshotDuration} {
		v.WithLabelValues(group, node)
	}
	for _, op := range []string{"snapshot_write", "snapshot_restore"} {
		c.storageErrors.WithLabelValues(group, node, op)
	}
	return m, nil
}

// Registry is where the node's collectors are registered: the one passed
// in Config, or the private one made for the node.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Close removes the node's series from the registry, so a node stopped for
// good leaves no stale values behind (and a node spawned again starts from
// zero). The collectors stay registered for the other nodes. If no metrics
// actor ever ran for m (a Spawn that failed, for instance because the same
// node already runs), Close leaves the series alone: they belong to the
// node that does run.
func (m *Metrics) Close() {
	if !m.started.Load() {
		return
	}
	labels := prometheus.Labels{labelGroup: m.group, labelNode: m.node}
	for _, col := range m.c.all() {
		col.(deleter).DeletePartialMatch(labels)
	}
}

// FSMApplied implements raftactor.Metrics.
func (m *Metrics) FSMApplied(entries int, took time.Duration) {
	m.c.fsmApply.WithLabelValues(m.group, m.node).Observe(took.Seconds())
	m.c.fsmEntries.WithLabelValues(m.group, m.node).Add(float64(entries))
}

// SnapshotPersisted implements raftactor.Metrics.
func (m *Metrics) SnapshotPersisted(size int64, took time.Duration, err error) {
	if err != nil {
		m.storageError("snapshot_write", err)
		return
	}
	m.c.snapshots.WithLabelValues(m.group, m.node).Inc()
	m.c.snapshotSize.WithLabelValues(m.group, m.node).Set(float64(size))
	m.c.snapshotDuration.WithLabelValues(m.group, m.node).Observe(took.Seconds())
}

// SnapshotRestored implements raftactor.Metrics.
func (m *Metrics) SnapshotRestored(_ time.Duration, err error) {
	if err != nil {
		m.storageError("snapshot_restore", err)
		return
	}
	m.c.restores.WithLabelValues(m.group, m.node).Inc()
}

// LogStoreFailed reports a failed write to the node's log store
// (raftactor.StorageObserver). Health says UNHEALTHY with err as the reason
// until LogStoreRecovered. A failing disk fails every append, so only the
// first failure of a run is logged; each is counted.
func (m *Metrics) LogStoreFailed(err error) {
	op := "log_write"
	if strings.HasPrefix(err.Error(), "log store delete") {
		op = "log_delete"
	}
	m.c.storageErrors.WithLabelValues(m.group, m.node, op).Inc()
	m.lastStorageError.Store(time.Now().UnixNano())
	reason := err.Error()
	if prev := m.logFailure.Swap(&reason); prev == nil || *prev != reason {
		m.log.Warn("storage failure", zap.String("op", op), zap.Error(err))
	}
}

// LogStoreRecovered reports the first append that succeeded after a
// failure (raftactor.StorageObserver).
func (m *Metrics) LogStoreRecovered() {
	if prev := m.logFailure.Swap(nil); prev != nil {
		m.log.Info("log store writes succeed again", zap.String("after", *prev))
	}
}

// storageError counts a storage failure and keeps health degraded for
// Config.StorageErrorWindow. Failures are rare, so each is logged.
func (m *Metrics) storageError(op string, err error) {
	m.c.storageErrors.WithLabelValues(m.group, m.node, op).Inc()
	m.lastStorageError.Store(time.Now().UnixNano())
	m.log.Warn("storage failure", zap.String("op", op), zap.Error(err))
}

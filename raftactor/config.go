package raftactor

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/hclogzap"
	"github.com/protoraft/protoraft/internal/link"
	"github.com/protoraft/protoraft/internal/transport"
	"github.com/protoraft/protoraft/remoteguard"
)

// Timeouts are a node's Raft timing settings. Zero fields take
// hashicorp/raft's defaults (DefaultTimeouts).
type Timeouts struct {
	// Heartbeat is how long a follower waits without contact from the
	// leader before it starts an election.
	Heartbeat time.Duration
	// Election is how long a candidate waits without winning before it
	// starts a new election.
	Election time.Duration
	// LeaderLease is how long a leader keeps leading without contact from
	// a quorum; it must not exceed Heartbeat. Fixed at start.
	LeaderLease time.Duration
	// Commit bounds how long the leader waits before it tells followers the
	// new commit index. Fixed at start.
	Commit time.Duration
	// SnapshotInterval is how often the node checks whether to snapshot.
	SnapshotInterval time.Duration
	// SnapshotThreshold is how many new log entries trigger a snapshot.
	SnapshotThreshold uint64
	// TrailingLogs is how many entries stay in the log after a snapshot, so
	// a slightly lagging follower catches up without a snapshot install.
	TrailingLogs uint64
}

// DefaultTimeouts returns hashicorp/raft's default timing.
func DefaultTimeouts() Timeouts {
	d := raft.DefaultConfig()
	return Timeouts{
		Heartbeat:         d.HeartbeatTimeout,
		Election:          d.ElectionTimeout,
		LeaderLease:       d.LeaderLeaseTimeout,
		Commit:            d.CommitTimeout,
		SnapshotInterval:  d.SnapshotInterval,
		SnapshotThreshold: d.SnapshotThreshold,
		TrailingLogs:      d.TrailingLogs,
	}
}

// withDefaults fills zero fields from DefaultTimeouts.
func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts()
	if t.Heartbeat == 0 {
		t.Heartbeat = d.Heartbeat
	}
	if t.Election == 0 {
		t.Election = d.Election
	}
	if t.LeaderLease == 0 {
		t.LeaderLease = min(d.LeaderLease, t.Heartbeat)
	}
	if t.Commit == 0 {
		t.Commit = d.Commit
	}
	if t.SnapshotInterval == 0 {
		t.SnapshotInterval = d.SnapshotInterval
	}
	if t.SnapshotThreshold == 0 {
		t.SnapshotThreshold = d.SnapshotThreshold
	}
	if t.TrailingLogs == 0 {
		t.TrailingLogs = d.TrailingLogs
	}
	return t
}

// validate checks the timeouts against each other and against
// hashicorp/raft's bounds, naming the field at fault. field prefixes the
// names ("timeouts" gives "timeouts.heartbeat").
func (t Timeouts) validate(field string) *actors.Error {
	name := func(f string) string {
		if field == "" {
			return f
		}
		return field + "." + f
	}
	const floor = 5 * time.Millisecond
	switch {
	case t.Heartbeat < floor:
		return actors.InvalidArgument(name("heartbeat"), "heartbeat timeout %v is below %v", t.Heartbeat, floor)
	case t.Election < floor:
		return actors.InvalidArgument(name("election"), "election timeout %v is below %v", t.Election, floor)
	case t.Election < t.Heartbeat:
		return actors.InvalidArgument(name("election"), "election timeout %v is below the heartbeat timeout %v", t.Election, t.Heartbeat)
	case t.LeaderLease < floor:
		return actors.InvalidArgument(name("leader_lease"), "leader lease %v is below %v", t.LeaderLease, floor)
	case t.LeaderLease > t.Heartbeat:
		return actors.InvalidArgument(name("leader_lease"), "leader lease %v exceeds the heartbeat timeout %v", t.LeaderLease, t.Heartbeat)
	case t.Commit < time.Millisecond:
		return actors.InvalidArgument(name("commit"), "commit timeout %v is below 1ms", t.Commit)
	case t.SnapshotInterval < floor:
		return actors.InvalidArgument(name("snapshot_interval"), "snapshot interval %v is below %v", t.SnapshotInterval, floor)
	case t.SnapshotThreshold < 1:
		return actors.InvalidArgument(name("snapshot_threshold"), "snapshot threshold must be at least 1")
	case t.Heartbeat > time.Hour:
		return actors.InvalidArgument(name("heartbeat"), "heartbeat timeout %v exceeds 1h", t.Heartbeat)
	case t.Election > time.Hour:
		return actors.InvalidArgument(name("election"), "election timeout %v exceeds 1h", t.Election)
	}
	return nil
}

// Voter is one initial voter of a bootstrapped group: its server ID and
// its Raft address (AddressOf its node actor's PID).
type Voter struct {
	ID      string
	Address string
}

// Config configures one node actor. Zero fields take the defaults their
// comments name.
type Config struct {
	// Group names the Raft group; it travels on every Raft RPC and every
	// event, and a node refuses RPCs of another group. Same rules as a node
	// ID (actors.ValidateNodeID).
	Group string
	// ID is this node's Raft server ID (actors.ValidateNodeID), unique in
	// the group and stable for the life of its data directory.
	ID string
	// DataDir holds the node's log, stable store and snapshots. Required
	// unless InMemory is set.
	DataDir string
	// InMemory keeps everything in memory. For tests only: a restart loses
	// all state, which breaks Raft's safety if the node was a voter.
	InMemory bool
	// NewStateMachine makes a fresh, empty state machine. It is called on
	// every start, restarts by the supervisor included.
	NewStateMachine func() StateMachine
	// Bootstrap, when not empty, is the initial voter list, this node
	// included. It is used only while the data directory holds no state: a
	// node with state never bootstraps again, so restarting with the same
	// list never makes a second group.
	Bootstrap []Voter

	// Timeouts are the Raft timing settings; zero fields take
	// hashicorp/raft's defaults (DefaultTimeouts).
	Timeouts Timeouts
	// RequestTimeout is the deadline of a request that carries none.
	// Default actors.DefaultRequestTimeout.
	RequestTimeout time.Duration
	// RPCTimeout bounds every Raft RPC to a peer. Default 2s; raise it
	// for peers far away.
	RPCTimeout time.Duration
	// SessionTTL is how long the exactly-once session of a client that
	// stopped writing is kept, by the replicated clock (time measured by
	// leaders while they led; see leaderClock). It must be the same on
	// every node. Default 10 minutes.
	SessionTTL time.Duration

	// MaxCommandSize bounds a write's command (and a policy document);
	// MaxQuerySize bounds a read's query. Larger requests are refused with
	// INVALID_ARGUMENT before Raft. Defaults DefaultMaxCommandSize (1 MiB
	// and 64 KiB) and DefaultMaxQuerySize (64 KiB), at most 8 MiB.
	MaxCommandSize int
	MaxQuerySize   int
	// MaxWriteBatch is how many writes waiting together in the leader's
	// mailbox go into one log entry at most. Default 64; 1 writes every
	// command as an entry of its own, which a group upgraded from a build
	// before batching needs until every node runs a build that reads
	// batches.
	MaxWriteBatch int
	// MaxAppendsInFlight bounds the AppendEntries RPCs the leader keeps in
	// flight to one follower once it replicates to it in a pipeline.
	// Default 2; 1 waits for each reply before the next RPC.
	MaxAppendsInFlight int
	// LeaderOnlyReads makes a follower answer a LINEARIZABLE read with
	// NOT_LEADER instead of serving it with a read index from the leader.
	LeaderOnlyReads bool

	// SnapshotChunkSize bounds one message of a snapshot transfer. Default
	// 512 KiB, at most 2 MiB.
	SnapshotChunkSize int
	// SnapshotRetain is how many snapshots are kept on disk. Default 2.
	SnapshotRetain int
	// WALSegmentSize is the size of one log segment file. Default 64 MiB;
	// tests use less.
	WALSegmentSize int
	// LogCacheEntries is how many of the latest log entries the node keeps
	// in memory besides writing them to its log (hashicorp/raft's
	// LogCache): Raft reads every entry back right after writing it, to
	// send it to the followers and to apply it, and the cache spares those
	// reads the log files. Default 64; -1 turns the cache off. An entry
	// holds at most 256 KiB of batched commands or one larger command, so
	// the cache holds about LogCacheEntries × 256 KiB at worst. Not used
	// with InMemory.
	LogCacheEntries int

	// ClusterKey, when set, authenticates every Raft RPC between the nodes
	// of the group (HMAC-SHA256 over each envelope): RPCs without a valid
	// MAC are refused before Raft sees them, so a stranger who can reach a
	// node's port can neither vote nor append. Every node of the group needs
	// the same key, at least 16 bytes. A node whose actor system can be
	// reached over the network (protoactor remote or a Raft link is
	// started in it when the node starts) refuses to start without one,
	// unless InsecureTransport says so.
	ClusterKey []byte
	// InsecureTransport lets a node that can be reached over the network
	// start without a ClusterKey. Anyone who can reach its ports can then
	// send it votes and appends posing as a member: take over leadership,
	// push the term up, stall the group. For trusted test networks only; a
	// node of an actor system without remote or link needs neither.
	InsecureTransport bool
	// Logger receives the node's logs, hashicorp/raft's included. Default
	// no logging.
	Logger *zap.Logger

	// The fields below wire the node into the stages around it; package
	// cluster sets them when it spawns a group, and a program that spawns
	// node actors itself sets what it needs.

	// OutcomeObservers are told how requests end at the node (the group's
	// limiter, to return the request's permit, and its metrics actor): an
	// actors.Outcome per request, or one actors.Outcomes for requests
	// answered together.
	OutcomeObservers []*actor.PID
	// Metrics, when set, is told FSM apply times and snapshot sizes and
	// times (see Metrics).
	Metrics Metrics
	// CheckPolicy, when set, vets the document of a PolicyUpdateRequest
	// before it is written to the log.
	CheckPolicy func(doc []byte) *actors.Error
	// OnPolicy, when set, is called with every committed policy document
	// and its log index: when the entry applies and when a snapshot that
	// holds one is restored. It runs on Raft's FSM goroutine and must be
	// quick (the authorizer swaps a pointer).
	OnPolicy func(doc []byte, index uint64)
	// SpawnPolicy is the policy document this node's door loaded at spawn:
	// what a PolicyGetRequest answers while no policy has been committed
	// (nil: none, the door is insecure).
	SpawnPolicy []byte
	// Faults, when set, sits between this node and its peers and can drop,
	// delay or cut Raft RPCs. A test hook: shared by all nodes of an
	// in-process test, never set in production.
	Faults *faults.Network
	// Clock, when set, is this node's clock as a test moves it: its wall
	// reading (faults.Clock.Jump), which no replicated decision reads, and
	// its monotonic reading (faults.Clock.Advance), from which the node
	// stamps the replicated clock that expires sessions while it leads
	// (leaderClock). A test hook, never set in production; nil reads the
	// real clocks.
	Clock *faults.Clock
	// Disk, when set, is the file system under this node's log segment
	// files, which a test can fail: a power cut that loses every write
	// since the last fsync, write, fsync and read errors (faults.Disk). It
	// also fails the stable store once the power is cut, and raft-wal's
	// commits of its segment list (faults.Disk.FailMetaCommits). A test hook,
	// never set in production; nil uses raft-wal's own file system. Not
	// used with InMemory.
	Disk *faults.Disk
}

// withDefaults fills optional fields.
func (c Config) withDefaults() Config {
	c.Timeouts = c.Timeouts.withDefaults()
	if c.RequestTimeout == 0 {
		c.RequestTimeout = actors.DefaultRequestTimeout
	}
	if c.RPCTimeout == 0 {
		c.RPCTimeout = transport.DefaultRPCTimeout
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = defaultSessionTTL
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = 2
	}
	if c.MaxCommandSize == 0 {
		c.MaxCommandSize = DefaultMaxCommandSize
	}
	if c.MaxQuerySize == 0 {
		c.MaxQuerySize = DefaultMaxQuerySize
	}
	if c.MaxWriteBatch == 0 {
		c.MaxWriteBatch = defaultMaxWriteBatch
	}
	if c.LogCacheEntries == 0 {
		c.LogCacheEntries = defaultLogCacheEntries
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Validate checks the whole configuration, naming the field at fault.
func (c Config) Validate() error {
	if c.Group == "" {
		return actors.InvalidArgument("group", "group name is empty")
	}
	if err := actors.ValidateNodeID("group", c.Group); err != nil {
		return err
	}
	if err := actors.ValidateNodeID("id", c.ID); err != nil {
		return err
	}
	if c.DataDir == "" && !c.InMemory {
		return actors.InvalidArgument("data_dir", "a data directory is required (InMemory is for tests only)")
	}
	if c.NewStateMachine == nil {
		return actors.InvalidArgument("new_state_machine", "a state machine factory is required")
	}
	ids := map[string]bool{}
	addrs := map[string]bool{}
	for i, p := range c.Bootstrap {
		f := fmt.Sprintf("bootstrap[%d]", i)
		if err := actors.ValidateNodeID(f+".id", p.ID); err != nil {
			return err
		}
		if err := actors.ValidateRaftAddress(f+".address", p.Address); err != nil {
			return err
		}
		if ids[p.ID] {
			return actors.InvalidArgument(f+".id", "duplicate node ID %q", p.ID)
		}
		if addrs[p.Address] {
			return actors.InvalidArgument(f+".address", "duplicate address %q", p.Address)
		}
		ids[p.ID], addrs[p.Address] = true, true
	}
	if len(c.Bootstrap) > 0 && !ids[c.ID] {
		return actors.InvalidArgument("bootstrap", "the bootstrap voters do not include this node %q", c.ID)
	}
	if err := c.withDefaults().Timeouts.validate("timeouts"); err != nil {
		return err
	}
	if c.RequestTimeout < 0 || c.RequestTimeout > actors.MaxRequestTimeout {
		return actors.InvalidArgument("request_timeout", "must be between 0 and %v", actors.MaxRequestTimeout)
	}
	if c.RPCTimeout < 0 {
		return actors.InvalidArgument("rpc_timeout", "must not be negative")
	}
	if c.SessionTTL < 0 {
		return actors.InvalidArgument("session_ttl", "must not be negative")
	}
	if c.WALSegmentSize < 0 {
		return actors.InvalidArgument("wal_segment_size", "must not be negative")
	}
	if c.SnapshotChunkSize < 0 || c.SnapshotChunkSize > 2<<20 {
		return actors.InvalidArgument("snapshot_chunk_size", "must be between 0 (default) and 2 MiB")
	}
	if c.MaxCommandSize < 0 || c.MaxCommandSize > remoteguard.MaxMessageSize/2 {
		return actors.InvalidArgument("max_command_size", "must be between 0 (default) and %d", remoteguard.MaxMessageSize/2)
	}
	if c.MaxQuerySize < 0 || c.MaxQuerySize > remoteguard.MaxMessageSize/2 {
		return actors.InvalidArgument("max_query_size", "must be between 0 (default) and %d", remoteguard.MaxMessageSize/2)
	}
	if c.MaxWriteBatch < 0 || c.MaxWriteBatch > 4096 {
		return actors.InvalidArgument("max_write_batch", "must be between 0 (default) and 4096")
	}
	if c.LogCacheEntries < -1 || c.LogCacheEntries > maxLogCacheEntries {
		return actors.InvalidArgument("log_cache_entries", "must be between -1 (off) and %d", maxLogCacheEntries)
	}
	if c.MaxAppendsInFlight < 0 || c.MaxAppendsInFlight > transport.DefaultInboundQueue/2 {
		// More in flight than half the follower's inbound queue would have
		// bursts refused there with ErrQueueFull.
		return actors.InvalidArgument("max_appends_in_flight", "must be between 0 (default) and %d", transport.DefaultInboundQueue/2)
	}
	if len(c.ClusterKey) > 0 && len(c.ClusterKey) < transport.MinClusterKeyLength {
		return actors.InvalidArgument("cluster_key", "cluster key is %d bytes, shorter than %d", len(c.ClusterKey), transport.MinClusterKeyLength)
	}
	if len(c.ClusterKey) > 0 && c.InsecureTransport {
		return actors.InvalidArgument("insecure_transport", "insecure transport cannot be combined with a cluster key")
	}
	return nil
}

// ErrNoClusterKey is why a node reachable over the network did not start:
// it has no ClusterKey and InsecureTransport is not set.
var ErrNoClusterKey = actors.InvalidArgument("cluster_key",
	"this node can be reached over the network (its actor system runs protoactor remote or a Raft link) "+
		"but has no cluster key, so anyone who reaches its port could vote and append as a member; "+
		"set ClusterKey (the same on every node), or InsecureTransport for a trusted test network")

// checkReachable refuses a node without a cluster key in an actor system
// that other processes can reach. It is decided when the node starts, from
// what runs in the system then: start remote (and the link) first, as
// their documentation says.
func (c Config) checkReachable(system *actor.ActorSystem) error {
	if len(c.ClusterKey) > 0 || c.InsecureTransport {
		return nil
	}
	// Remote gives the system its address; without remote it keeps the
	// local one.
	if system.Address() != actors.LocalSystemAddress || link.Of(system) != nil {
		return ErrNoClusterKey
	}
	return nil
}

// raftConfig builds hashicorp/raft's configuration.
func (c Config) raftConfig(t Timeouts) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.ID)
	rc.HeartbeatTimeout = t.Heartbeat
	rc.ElectionTimeout = t.Election
	rc.LeaderLeaseTimeout = t.LeaderLease
	rc.CommitTimeout = t.Commit
	rc.SnapshotInterval = t.SnapshotInterval
	rc.SnapshotThreshold = t.SnapshotThreshold
	rc.TrailingLogs = t.TrailingLogs
	// The node's single appender hands entries to Raft one at a time; a
	// buffered apply channel lets it queue the next ones while the leader
	// loop writes the previous ones to disk, so the loop takes many per
	// write. Deadlines are the node's own (reply.go), not ApplyLog's.
	rc.BatchApplyCh = true
	rc.Logger = hclogzap.New(c.Logger.With(zap.String("component", "raft")), raftLogLevel)
	// Raft's own metrics go through go-metrics; protoraft's telemetry
	// collects what it needs from observations and status instead.
	rc.NoLegacyTelemetry = true
	return rc
}

package cluster

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/limiter"
	"github.com/protoraft/protoraft/policies"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/telemetry"
)

// Config configures one node of a group, spawned by Spawn.
type Config struct {
	// Group is the group's name: every node of a group uses the same one,
	// and a node refuses Raft RPCs of another group. Same rules as a node
	// ID (actors.ValidateNodeID).
	Group string
	// NodeID is this node's ID, unique in the group and stable for the
	// life of its data directory.
	NodeID string
	// DataDir holds the node's log, stable store and snapshots. Required
	// unless InMemory is set; no two groups of a process may share one.
	DataDir string
	// InMemory keeps the node's state in memory. For tests only: a restart
	// loses everything a voter promised to remember, which breaks Raft's
	// safety.
	InMemory bool
	// NewStateMachine makes a fresh, empty state machine; it is called on
	// every start of the node, supervisor restarts included.
	NewStateMachine func() raftactor.StateMachine
	// Bootstrap is the initial voter list, this node included, with each
	// member's ActorSystem address. It is used only while the data
	// directory holds no state: restarting a bootstrapped node with the
	// same list is safe and never makes a second cluster. Leave it empty
	// for a node that starts empty and waits to be added (Join).
	Bootstrap []Peer
	// Timeouts are the Raft timing settings; zero fields take
	// hashicorp/raft's defaults.
	Timeouts raftactor.Timeouts
	// SessionTTL is how long the exactly-once session of a client that
	// stopped writing is kept, by the replicated clock. It must be the same
	// on every node. Default raftactor.DefaultSessionTTL.
	SessionTTL time.Duration
	// RequestTimeout is the deadline of a request that carries none, and
	// the longest one attempt of Join or Leave waits for a reply. Default
	// actors.DefaultRequestTimeout.
	RequestTimeout time.Duration
	// RPCTimeout bounds every Raft RPC to a peer. Default 2s; raise it for
	// peers far away.
	RPCTimeout time.Duration
	// WALSegmentSize is the size of one log segment file. Default 64 MiB;
	// tests and small groups use less.
	WALSegmentSize int
	// MaxWriteBatch is how many writes waiting together at the leader go
	// into one log entry at most. Default raftactor.DefaultMaxWriteBatch;
	// 1 turns batching off (see raftactor.Config.MaxWriteBatch).
	MaxWriteBatch int
	// LeaderOnlyReads makes a follower refuse LINEARIZABLE reads with
	// NOT_LEADER instead of serving them with a read index it asks the
	// leader for.
	LeaderOnlyReads bool
	// MaxAppendsInFlight bounds the AppendEntries RPCs the leader pipelines
	// to one follower. Default raftactor.DefaultMaxAppendsInFlight; 1
	// turns pipelining off (see raftactor.Config.MaxAppendsInFlight).
	MaxAppendsInFlight int
	// Faults, when set, sits between this node and its peers and can drop,
	// delay or cut Raft RPCs. For tests.
	Faults *raftactor.Faults
	// Logger receives the group's logs. Default no logging.
	Logger *zap.Logger
	// Limits are the front door's limits on this node: rates, requests and
	// bytes in flight, request size and Raft backlog, per class of request.
	// The zero value limits nothing. Changeable at run time with an
	// actors.UpdateLimitsRequest to the front door (until the group
	// restarts).
	Limits limiter.Config
	// Security configures the front door (authentication, authorization,
	// audit) and the cluster key of the Raft RPCs. The zero value runs
	// without authentication and logs a warning at start: fine for tests
	// and samples, never for production, which must set a policy.
	Security policies.Config
	// Telemetry configures the node's metrics (the Prometheus registry
	// they go to: a private one when nil) and the thresholds of its
	// health. The zero value works.
	Telemetry telemetry.Config

	// NodeOptions are added to the node actor's props: receiver middleware
	// for instrumentation, or for tests that inject a panic into the node.
	NodeOptions []actor.PropsOption
}

// Validate checks the whole configuration before anything starts, and
// returns an *actors.Error with code INVALID_ARGUMENT naming the first
// field at fault (for example "bootstrap[1].address").
func (c Config) Validate() error {
	if err := c.validate(); err != nil {
		return err
	}
	return nil
}

// validate is Validate with the concrete type, so callers inside the
// package never meet a typed nil in an error interface.
func (c Config) validate() *actors.Error {
	if err := actors.ValidateNodeID("group", c.Group); err != nil {
		return err
	}
	if err := actors.ValidateNodeID("node_id", c.NodeID); err != nil {
		return err
	}
	if c.DataDir == "" && !c.InMemory {
		return actors.InvalidArgument("data_dir", "a data directory is required (InMemory is for tests only)")
	}
	if c.NewStateMachine == nil {
		return actors.InvalidArgument("new_state_machine", "a state machine factory is required")
	}
	ids := map[string]bool{}
	for i, p := range c.Bootstrap {
		f := fmt.Sprintf("bootstrap[%d]", i)
		if err := validatePeer(f, p); err != nil {
			return err
		}
		if ids[p.ID] {
			return actors.InvalidArgument(f+".id", "duplicate node ID %q", p.ID)
		}
		ids[p.ID] = true
	}
	if len(c.Bootstrap) > 0 && !ids[c.NodeID] {
		return actors.InvalidArgument("bootstrap", "the bootstrap voters do not include this node %q", c.NodeID)
	}
	if c.SessionTTL < 0 {
		return actors.InvalidArgument("session_ttl", "must not be negative")
	}
	if c.WALSegmentSize < 0 {
		return actors.InvalidArgument("wal_segment_size", "must not be negative")
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if err := c.Security.Validate(); err != nil {
		return err.(*actors.Error)
	}
	if k := c.Security.ClusterKey; len(k) > 0 && len(k) < raftactor.MinClusterKeyLength {
		return actors.InvalidArgument("security.cluster_key", "cluster key is %d bytes, shorter than %d", len(k), raftactor.MinClusterKeyLength)
	}
	// The node checks the rest (timeouts against each other and Raft's
	// bounds, request and RPC timeouts) under the same field names; asking
	// it keeps one set of rules instead of two that drift apart.
	if err := c.nodeConfig().Validate(); err != nil {
		if ae, ok := err.(*actors.Error); ok {
			return ae
		}
		return actors.InvalidArgument("", "%v", err)
	}
	return nil
}

// nodeConfig is the node actor's configuration. Bootstrap peers become Raft
// addresses: the node actor's PID under the fixed names of names.go.
func (c Config) nodeConfig() raftactor.Config {
	var boot []raftactor.Peer
	for _, p := range c.Bootstrap {
		boot = append(boot, raftactor.Peer{ID: p.ID, Address: p.RaftAddress(c.Group)})
	}
	return raftactor.Config{
		Group:              c.Group,
		ID:                 c.NodeID,
		DataDir:            c.DataDir,
		InMemory:           c.InMemory,
		NewStateMachine:    c.NewStateMachine,
		Bootstrap:          boot,
		Timeouts:           c.Timeouts,
		RequestTimeout:     c.RequestTimeout,
		RPCTimeout:         c.RPCTimeout,
		WALSegmentSize:     c.WALSegmentSize,
		MaxWriteBatch:      c.MaxWriteBatch,
		LeaderOnlyReads:    c.LeaderOnlyReads,
		MaxAppendsInFlight: c.MaxAppendsInFlight,
		SessionTTL:         c.SessionTTL,
		Faults:             c.Faults,
		Logger:             c.Logger,
		ClusterKey:         c.Security.ClusterKey,
	}
}

// attemptTimeout bounds one request of Join and Leave.
func (c Config) attemptTimeout() time.Duration {
	if c.RequestTimeout > 0 {
		return c.RequestTimeout
	}
	return actors.DefaultRequestTimeout
}

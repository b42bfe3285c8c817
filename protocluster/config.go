package protocluster

import (
	"fmt"
	"time"

	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/raftactor"
)

// Defaults of Config's timings.
const (
	// DefaultGroup names the protoraft group that holds the table.
	DefaultGroup = "protocluster"
	// DefaultRenewInterval is how often a member renews its registration.
	DefaultRenewInterval = 500 * time.Millisecond
	// DefaultLeaseDuration is how long a member keeps running its
	// activations after the send of its last successful renewal.
	DefaultLeaseDuration = 3 * time.Second
	// DefaultExpireAfter is how long the expirer waits, after it first saw
	// a member's last renewal, before it expires the member.
	DefaultExpireAfter = 6 * time.Second
	// DefaultWatchInterval is how often a member reads the topology.
	DefaultWatchInterval = 200 * time.Millisecond
	// DefaultCallTimeout bounds one call to the group (a renewal, a
	// claim, a read).
	DefaultCallTimeout = 2 * time.Second
)

// minLeaseMargin is the least time ExpireAfter must exceed LeaseDuration
// by: the time a member has to stop its grains once its lease ran out,
// plus the clock rate difference between two machines over a lease (a few
// parts per million; a millisecond covers leases of minutes).
const minLeaseMargin = 200 * time.Millisecond

// Config configures a Provider. The same Config (Voters above all) must be
// given to every member of one protoactor cluster.
type Config struct {
	// Group names the protoraft group that holds the table. Default
	// DefaultGroup.
	Group string
	// Voters are the members that host the group's voters, 1 to 7 of them
	// (3 is the usual): each one's Raft node ID and the address its
	// protoactor remote listens on ("host:port", exactly as
	// ActorSystem.Address reports it). A member whose address is listed
	// runs that voter in its ActorSystem; every other member reaches the
	// group as a client. So the first members a deployment starts are the
	// ones at these addresses; nothing can register until a quorum of
	// them runs.
	Voters []cluster.Peer
	// NonVoters makes every other member run a node of the group too, as
	// a non-voter that the leader adds once the member registered. The
	// leader keeps len(Voters) voters: when a voter's member leaves the
	// table (expired or deregistered), it removes that node from the
	// group and promotes the node of a live member in its place, the
	// earliest registered, through Raft membership changes only. Without
	// NonVoters the other members are clients of the group and a voter
	// that leaves is not replaced.
	NonVoters bool
	// DataDir is the parent of the nodes' data directories: a voter keeps
	// its log in DataDir/<voter ID>, a member's non-voter in
	// DataDir/m-<ActorSystem ID> (new on every start: delete it once that
	// member left). Required unless InMemory.
	DataDir string
	// InMemory keeps the voters' logs in memory. For tests only: a voter
	// restarted in memory has lost its state.
	InMemory bool
	// Node, when set, changes a voter's node configuration before it
	// starts: its timeouts, its cluster key (required once remote runs,
	// unless InsecureTransport), its logger.
	Node func(*raftactor.Config)
	// RenewInterval, LeaseDuration and ExpireAfter are the member's
	// liveness timings (defaults DefaultRenewInterval, DefaultLeaseDuration,
	// DefaultExpireAfter). A member that cannot renew for LeaseDuration
	// stops its activations; the expirer removes it after ExpireAfter
	// without a renewal. ExpireAfter must exceed LeaseDuration by at least
	// a quarter of it (and 200ms) and LeaseDuration must be at least twice
	// RenewInterval; see the package documentation for why.
	RenewInterval time.Duration
	LeaseDuration time.Duration
	ExpireAfter   time.Duration
	// WatchInterval is how often a member reads the committed topology
	// (default DefaultWatchInterval): the delay between a change committing
	// and the MemberList hearing of it.
	WatchInterval time.Duration
	// CallTimeout bounds one call to the group (default DefaultCallTimeout).
	CallTimeout time.Duration
	// Faults, when set, can cut a member from the group: every call the
	// member makes to the group (renewals, claims, reads) is dropped while
	// Faults.Decide(member ID, "protocluster") says so. A test hook, never
	// set in production.
	Faults *faults.Network
}

// FaultPeer is the server ID a member's calls to the group are decided
// against in Config.Faults: cut it (faults.Network.Cut) or the member's ID
// (Isolate) to cut members from the group.
const FaultPeer = "protocluster"

func (c Config) withDefaults() Config {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = DefaultRenewInterval
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.ExpireAfter == 0 {
		c.ExpireAfter = DefaultExpireAfter
	}
	if c.WatchInterval == 0 {
		c.WatchInterval = DefaultWatchInterval
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	return c
}

// leaseMargin is how much longer than the lease the expirer waits.
func (c Config) leaseMargin() time.Duration { return max(c.LeaseDuration/4, minLeaseMargin) }

// Validate checks the configuration, defaults applied, and names the first
// field at fault.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case len(c.Voters) == 0 || len(c.Voters) > 7:
		return fmt.Errorf("protocluster: voters: 1 to 7 voters, got %d", len(c.Voters))
	case c.DataDir == "" && !c.InMemory:
		return fmt.Errorf("protocluster: data_dir: required unless InMemory")
	case c.RenewInterval < 0 || c.LeaseDuration < 0 || c.ExpireAfter < 0 || c.WatchInterval < 0 || c.CallTimeout < 0:
		return fmt.Errorf("protocluster: timings must not be negative")
	case c.LeaseDuration < 2*c.RenewInterval:
		return fmt.Errorf("protocluster: lease_duration %v: at least twice renew_interval %v, so one lost renewal does not cost the lease", c.LeaseDuration, c.RenewInterval)
	case c.ExpireAfter < c.LeaseDuration+c.leaseMargin():
		return fmt.Errorf("protocluster: expire_after %v: at least lease_duration + %v, so a member stops its grains before another may start them", c.ExpireAfter, c.leaseMargin())
	}
	seen := map[string]bool{}
	for i, v := range c.Voters {
		if v.ID == "" || v.Address == "" {
			return fmt.Errorf("protocluster: voters[%d]: id and address are required", i)
		}
		if seen[v.ID] || seen["@"+v.Address] {
			return fmt.Errorf("protocluster: voters[%d]: duplicate id or address", i)
		}
		seen[v.ID], seen["@"+v.Address] = true, true
	}
	return nil
}

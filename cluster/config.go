package cluster

import (
	"fmt"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/limiter"
	"github.com/protoraft/protoraft/policies"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/telemetry"
)

// Config configures one node of a group, spawned by Spawn: the node actor
// itself (Node), the group's first voters (Bootstrap), and the stages in
// front of the node.
type Config struct {
	// Node configures the node actor: the group's name and this node's ID
	// (Node.Group, Node.ID), its data directory, its state machine, its
	// timeouts, batching, reads, the cluster key and the logger, which the
	// whole group logs to. Leave Node.Bootstrap empty (Spawn makes it from
	// Bootstrap) and the wiring fields below Node.Logger unset (Spawn
	// wires the node to the stages); Node.Faults and Node.Clock, test
	// hooks, may be set.
	Node raftactor.Config
	// Bootstrap is the initial voter list, this node included, with each
	// member's ActorSystem address. It is used only while the data
	// directory holds no state: restarting a bootstrapped node with the
	// same list is safe and never makes a second group. Leave it empty for
	// a node that starts empty and waits to be added (Join).
	Bootstrap []Peer
	// Limits are the front door's limits on this node: rates, requests and
	// bytes in flight, request size and Raft backlog, per class of request.
	// The zero value limits nothing. Changeable at run time with an
	// actors.UpdateLimitsRequest to the front door (until the group
	// restarts).
	Limits limiter.Config
	// Security configures the front door: authentication, authorization,
	// audit. The zero value runs without authentication and logs a warning
	// at start: fine for tests and samples, never for production, which
	// must set a policy (and Node.ClusterKey).
	Security policies.Config
	// Credentials is the bearer token this node presents on the requests
	// it sends to the group itself: Join's and Leave's, to the leader's
	// front door. Under a policy it must be a principal's token with the
	// permissions they ask for: status, leader, members, add_nonvoter and
	// promote for Join; demote, remove and transfer_leadership too for
	// Leave. Empty: no token; then only the subject of this process's TLS
	// certificate, if the policy lists it, authenticates them.
	Credentials string
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
// field at fault, by its path in Config (for example "bootstrap[1].address"
// or "node.timeouts.election").
func (c Config) Validate() error {
	if err := c.validate(); err != nil {
		return err
	}
	return nil
}

// validate is Validate with the concrete type, so callers inside the
// package never meet a typed nil in an error interface.
func (c Config) validate() *actors.Error {
	n := c.Node
	switch {
	case len(n.Bootstrap) > 0:
		return actors.InvalidArgument("node.bootstrap", "set Bootstrap, with the members' ActorSystem addresses; Spawn derives the node's own list from it")
	case n.OutcomeObservers != nil || n.Metrics != nil || n.CheckPolicy != nil || n.OnPolicy != nil:
		return actors.InvalidArgument("node", "the node's wiring (outcome observers, metrics, policy hooks) is Spawn's to set")
	}
	// The node's names first: the bootstrap list is checked against them.
	if err := actors.ValidateNodeID("node.group", n.Group); err != nil {
		return err
	}
	if err := actors.ValidateNodeID("node.id", n.ID); err != nil {
		return err
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
	if len(c.Bootstrap) > 0 && !ids[n.ID] {
		return actors.InvalidArgument("bootstrap", "the bootstrap voters do not include this node %q", n.ID)
	}
	// The node checks its own fields; one set of rules, named by their
	// path here.
	if err := c.nodeConfig().Validate(); err != nil {
		if ae, ok := err.(*actors.Error); ok {
			if ae.Field != "" && !isBootstrapField(ae.Field) {
				ae.Field = "node." + ae.Field
			}
			return ae
		}
		return actors.InvalidArgument("node", "%v", err)
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if err := c.Security.Validate(); err != nil {
		return err.(*actors.Error)
	}
	return nil
}

// isBootstrapField reports whether the node named a field of the bootstrap
// list Spawn made from Bootstrap, which already has the path of Config.
func isBootstrapField(field string) bool {
	return field == "bootstrap" || strings.HasPrefix(field, "bootstrap[")
}

// nodeConfig is the node actor's configuration, without the wiring Spawn
// adds. Bootstrap peers become Raft addresses: the node actor's PID under
// the fixed names of names.go.
func (c Config) nodeConfig() raftactor.Config {
	n := c.Node
	for _, p := range c.Bootstrap {
		n.Bootstrap = append(n.Bootstrap, raftactor.Voter{ID: p.ID, Address: p.RaftAddress(n.Group)})
	}
	return n
}

// attemptTimeout bounds one request of Join and Leave.
func (c Config) attemptTimeout() time.Duration {
	if c.Node.RequestTimeout > 0 {
		return c.Node.RequestTimeout
	}
	return actors.DefaultRequestTimeout
}

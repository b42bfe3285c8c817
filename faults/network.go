package faults

import (
	"math/rand"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// AnyNode matches every node in a Network rule, so one rule can cut or slow a
// node's traffic to all peers without listing them (and keeps matching nodes
// added to the cluster later).
const AnyNode raft.ServerID = "*"

type faultPair struct{ from, to raft.ServerID }

type dropRule struct {
	faultPair
	percent float64
}

type delayRule struct {
	faultPair
	d, jitter time.Duration
}

// Network injects message loss, delay and partitions between the node
// actors of an in-process group. One Network is shared by all transports of
// the group, so a test changes the network in one place and every direction
// sees it at once. Random choices come from one seeded source, so a failing
// run can be replayed with the same seed (as far as goroutine scheduling
// allows).
type Network struct {
	mu     sync.Mutex
	rng    *rand.Rand
	cuts   map[faultPair]struct{}
	drops  []dropRule
	delays []delayRule
	// down are the nodes whose machine is off (Down): nothing to or from
	// them gets through, whatever the rules and Heal say.
	down map[raft.ServerID]bool
}

// NewNetwork returns a Network with no rules: every message is delivered at
// once until a rule is added.
func NewNetwork(seed int64) *Network {
	return &Network{
		rng:  rand.New(rand.NewSource(seed)),
		cuts: make(map[faultPair]struct{}),
		down: make(map[raft.ServerID]bool),
	}
}

// Down takes a node's machine off the network until Up: every message to
// or from it is lost, and Heal, which removes the rules, leaves it down. A
// test cuts a node's power this way (faults.Disk.PowerCut) without a
// message escaping in the moments before the node is stopped, as none
// escapes a machine without power.
func (f *Network) Down(id raft.ServerID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[id] = true
}

// Up undoes Down.
func (f *Network) Up(id raft.ServerID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.down, id)
}

// Cut drops every RPC from one node to another, in that direction only, so
// tests can model asymmetric failures (a node that hears the leader but
// cannot answer). AnyNode matches every node.
func (f *Network) Cut(from, to raft.ServerID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cuts[faultPair{from, to}] = struct{}{}
}

// Partition splits the cluster into sides that cannot talk to each other in
// either direction; nodes on the same side, and nodes not listed, keep
// talking to their own side.
func (f *Network) Partition(sides ...[]raft.ServerID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range sides {
		for j := range sides {
			if i == j {
				continue
			}
			for _, a := range sides[i] {
				for _, b := range sides[j] {
					if a != b {
						f.cuts[faultPair{a, b}] = struct{}{}
					}
				}
			}
		}
	}
}

// Isolate cuts a node off from every other node in both directions, the
// usual way to make a leader lose its quorum without stopping it.
func (f *Network) Isolate(id raft.ServerID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cuts[faultPair{id, AnyNode}] = struct{}{}
	f.cuts[faultPair{AnyNode, id}] = struct{}{}
}

// Drop loses the given percentage (0-100) of RPCs from one node to another.
// AnyNode matches every node. When several rules match, the highest
// percentage applies, so adding a rule never makes the network better.
func (f *Network) Drop(from, to raft.ServerID, percent float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drops = append(f.drops, dropRule{faultPair{from, to}, percent})
}

// Delay holds every RPC from one node to another for d plus a random extra
// in [0, jitter). AnyNode matches every node; when several rules match, the
// most recently added one applies, so a test can tighten or relax a delay by
// adding a rule.
func (f *Network) Delay(from, to raft.ServerID, d, jitter time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delays = append(f.delays, delayRule{faultPair{from, to}, d, jitter})
}

// Heal removes every rule, restoring a perfect network.
func (f *Network) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cuts = make(map[faultPair]struct{})
	f.drops = nil
	f.delays = nil
}

// Decide tells a transport what happens to one message from one node to
// another: whether it is lost and how long it is held first. A nil Network
// delivers everything at once, so transports need no nil check. Messages
// from a node to itself are never affected.
func (f *Network) Decide(from, to raft.ServerID) (drop bool, delay time.Duration) {
	if f == nil || from == to {
		return false, 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[from] || f.down[to] {
		return true, 0
	}
	for _, p := range []faultPair{{from, to}, {from, AnyNode}, {AnyNode, to}, {AnyNode, AnyNode}} {
		if _, ok := f.cuts[p]; ok {
			return true, 0
		}
	}
	percent := -1.0
	for _, r := range f.drops {
		if r.matches(from, to) && r.percent > percent {
			percent = r.percent
		}
	}
	if percent > 0 && f.rng.Float64()*100 < percent {
		return true, 0
	}
	for i := len(f.delays) - 1; i >= 0; i-- {
		r := f.delays[i]
		if !r.matches(from, to) {
			continue
		}
		delay = r.d
		if r.jitter > 0 {
			delay += time.Duration(f.rng.Int63n(int64(r.jitter)))
		}
		break
	}
	return false, delay
}

func (p faultPair) matches(from, to raft.ServerID) bool {
	return (p.from == AnyNode || p.from == from) && (p.to == AnyNode || p.to == to)
}

package integration

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"time"
)

// The nemeses of real network faults between OS processes, each node in a
// network namespace of its own (netns_carrier.go). They ride on the
// process schedule's steps (netOverlay) rather than being drawn by it, so
// the process carrier's pinned draws stay as they are.
const (
	// KindBlackhole drops every packet between the leader (or a random
	// minority) and the rest, both ways, in the kernel: no RST, no ICMP,
	// connections stay open and sends go nowhere.
	KindBlackhole Kind = "blackhole"
	// KindOneWayBlackhole drops the packets of one direction only: from
	// the leader (a random node when none leads) to every other node, or
	// from every other node to it.
	KindOneWayBlackhole Kind = "one-way-blackhole"
	// KindNetem delays, loses, duplicates and reorders the packets one
	// node (or every node) sends, with tc netem.
	KindNetem Kind = "netem"
)

// NetKinds are the network namespace carrier's own nemeses, in the order
// the overlay rotates through them.
var NetKinds = []Kind{KindBlackhole, KindOneWayBlackhole, KindNetem}

// netShape is one node's shaping for KindNetem.
type netShape struct {
	Delay, Jitter            time.Duration
	Loss, Duplicate, Reorder float64
}

func (s netShape) String() string {
	return fmt.Sprintf("delay %v±%v loss %.0f%% duplicate %.0f%% reorder %.0f%%", s.Delay, s.Jitter, s.Loss, s.Duplicate, s.Reorder)
}

// netFaulter is a carrier whose nodes sit on a real network it can fault.
type netFaulter interface {
	// blackhole drops every packet from a node of from to one of to.
	blackhole(from, to []string) error
	// shape shapes id's outgoing packets and says what it applied.
	shape(id string, s netShape) (string, error)
	// healNet removes every fault of the real network.
	healNet() error
}

// netSalt separates the network overlay's draws from the step's own.
const netSalt = 0x6e6574

// netOverlay adds one of NetKinds to every step, in rotation from a place
// drawn from seed, so a run of three steps meets each of them.
func netOverlay(seed int64, steps []Step) []Step {
	off := rand.New(rand.NewSource(seed ^ netSalt)).Intn(len(NetKinds))
	out := make([]Step, len(steps))
	for i, s := range steps {
		s.Kinds = append(append([]Kind(nil), s.Kinds...), NetKinds[(off+i)%len(NetKinds)])
		out[i] = s
	}
	return out
}

func isNetKind(k Kind) bool {
	for _, x := range NetKinds {
		if x == k {
			return true
		}
	}
	return false
}

// applyNet starts one real network fault, with draws of its own from the
// step's Param (so the step's other kinds draw what they always did);
// heal undoes it.
func (n *nemesis) applyNet(ctx context.Context, i int, k Kind, param int64) {
	running := runningNodes(n.c)
	if len(running) == 0 {
		n.event(i, k, "skipped: no node up")
		return
	}
	leader := leaderOf(ctx, n.c)
	rng := rand.New(rand.NewSource(param ^ netSalt))
	switch k {
	case KindBlackhole:
		side := []string{leader}
		if leader == "" || rng.Intn(2) == 0 {
			ids := shuffle(rng, running)
			side = ids[:max(1, (len(ids)-1)/2)]
		}
		rest := others(running, side)
		err := n.nets.blackhole(side, rest)
		if err == nil {
			err = n.nets.blackhole(rest, side)
		}
		n.count(k)
		n.event(i, k, "blackholed %s from %s, both ways: %s", strings.Join(side, ","), strings.Join(rest, ","), errText(err))
	case KindOneWayBlackhole:
		hub := leader
		if hub == "" {
			hub = running[rng.Intn(len(running))]
		}
		followers := others(running, []string{hub})
		from, to := []string{hub}, followers
		if rng.Intn(2) == 0 {
			from, to = followers, []string{hub}
		}
		err := n.nets.blackhole(from, to)
		n.count(k)
		n.event(i, k, "dropped every packet from %s to %s: %s", strings.Join(from, ","), strings.Join(to, ","), errText(err))
	case KindNetem:
		targets := running
		if rng.Intn(2) == 0 {
			id := running[rng.Intn(len(running))]
			if leader != "" && rng.Intn(2) == 0 {
				id = leader
			}
			targets = []string{id}
		}
		s := netShape{
			Delay:     time.Duration(5+rng.Intn(40)) * time.Millisecond,
			Jitter:    time.Duration(1+rng.Intn(10)) * time.Millisecond,
			Loss:      float64(1 + rng.Intn(8)),
			Duplicate: float64(1 + rng.Intn(5)),
			Reorder:   float64(5 + rng.Intn(25)),
		}
		n.count(k)
		for _, id := range targets {
			applied, err := n.nets.shape(id, s)
			n.event(i, k, "shaped %s (%v): %s", id, s, orText(applied, err))
		}
	}
}

func others(all, side []string) []string {
	var out []string
	for _, id := range all {
		in := false
		for _, s := range side {
			in = in || s == id
		}
		if !in {
			out = append(out, id)
		}
	}
	return out
}

func orText(s string, err error) string {
	if err != nil {
		return err.Error()
	}
	return s
}

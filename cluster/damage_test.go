package cluster_test

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"testing"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/diskdamage"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/raftactor"
)

// The documented recovery of a node whose files are damaged
// (docs/operations.md): it refuses to start; it is removed from the group,
// its data directory deleted, and it joins again as a new node. It comes
// back with every write the group acknowledged, those made while it was
// down included.
func TestDamagedNodeIsWipedAndRejoins(t *testing.T) {
	h := grouptest.NewGroups(t)
	cfgs, groups := h.SpawnVoters("g", 3, nil)
	leader := h.WaitLeader(groups...)
	d := 0
	for groups[d] == leader {
		d++
	}
	value := strings.Repeat("v", 1000)
	const keys = 300 // more than a 256 KiB log segment: one is sealed
	for i := range keys {
		h.Put(leader.FrontDoor(), fmt.Sprint("k", i), value)
	}
	h.WaitValue(groups[d].FrontDoor(), fmt.Sprint("k", keys-1), value)
	if err := groups[d].Stop(); err != nil {
		t.Fatal(err)
	}
	dir := cfgs[d].Node.DataDir
	segs, err := diskdamage.Segments(dir)
	if err != nil || len(segs) < 2 {
		t.Fatalf("log segments: %v %v", segs, err)
	}
	if _, err := diskdamage.FlipBit(segs[0], rand.New(rand.NewSource(7))); err != nil {
		t.Fatal(err)
	}

	// The damaged node does not start; Spawn says why.
	if g, err := cluster.Spawn(h.System, cfgs[d]); !errors.Is(err, raftactor.ErrDamagedDataDir) {
		if g != nil {
			_ = g.Stop()
		}
		t.Fatalf("spawn of the damaged node: %v, want ErrDamagedDataDir", err)
	}

	// The others go on, and remove it.
	var rest []*cluster.Group
	for i, g := range groups {
		if i != d {
			rest = append(rest, g)
		}
	}
	leader = h.WaitLeader(rest...)
	h.Put(leader.FrontDoor(), "while-down", "v")
	id := cfgs[d].Node.ID
	mr := h.Ask(leader.FrontDoor(), &actors.MembershipRequest{Meta: meta(), Op: actors.MembershipOp_REMOVE, Id: id}).(*actors.MembershipResponse)
	if err := mr.Error.Err(); err != nil {
		t.Fatalf("remove the damaged node: %v", err)
	}

	// Wiped, it joins as a new node and catches up.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	cfg := cfgs[d]
	cfg.Bootstrap = nil
	back := h.Spawn(cfg)
	if err := back.Join(testContext(t), rest[0].Self(), rest[1].Self()); err != nil {
		t.Fatalf("join after the wipe: %v", err)
	}
	if s := suffrageOf(h.Status(h.WaitLeader(append(rest, back)...)).Members, id); s != "VOTER" {
		t.Fatalf("%s is %s after the rejoin", id, s)
	}
	for i := range keys {
		h.WaitValue(back.FrontDoor(), fmt.Sprint("k", i), value)
	}
	h.WaitValue(back.FrontDoor(), "while-down", "v")
	h.Put(back.FrontDoor(), "after-rejoin", "v")
	for _, g := range append(rest, back) {
		h.WaitValue(g.FrontDoor(), "after-rejoin", "v")
	}
}

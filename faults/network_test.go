package faults

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func dropped(f *Network, from, to raft.ServerID) bool {
	d, _ := f.Decide(from, to)
	return d
}

func TestNetworkCutIsOneDirection(t *testing.T) {
	f := NewNetwork(1)
	f.Cut("a", "b")
	if !dropped(f, "a", "b") {
		t.Fatal("a->b should be cut")
	}
	if dropped(f, "b", "a") || dropped(f, "a", "c") {
		t.Fatal("only a->b should be cut")
	}
	f.Heal()
	if dropped(f, "a", "b") {
		t.Fatal("heal should restore a->b")
	}
}

func TestNetworkPartitionAndIsolate(t *testing.T) {
	f := NewNetwork(1)
	f.Partition([]raft.ServerID{"a", "b"}, []raft.ServerID{"c"})
	for _, p := range [][2]raft.ServerID{{"a", "c"}, {"c", "a"}, {"b", "c"}, {"c", "b"}} {
		if !dropped(f, p[0], p[1]) {
			t.Errorf("%s->%s should be cut", p[0], p[1])
		}
	}
	if dropped(f, "a", "b") || dropped(f, "b", "a") || dropped(f, "a", "d") {
		t.Error("same side or unlisted nodes should talk")
	}
	f.Heal()

	f.Isolate("b")
	for _, other := range []raft.ServerID{"a", "c", "new-node"} {
		if !dropped(f, "b", other) || !dropped(f, other, "b") {
			t.Errorf("b<->%s should be cut", other)
		}
	}
	if dropped(f, "a", "c") {
		t.Error("a->c should not be affected by isolating b")
	}
	if dropped(f, "b", "b") {
		t.Error("a node always reaches itself")
	}
}

func TestNetworkDropIsDeterministicPerSeed(t *testing.T) {
	run := func(seed int64) []bool {
		f := NewNetwork(seed)
		f.Drop(AnyNode, "b", 50)
		out := make([]bool, 200)
		for i := range out {
			out[i] = dropped(f, "a", "b")
		}
		return out
	}
	first, second := run(42), run(42)
	n := 0
	for i := range first {
		if first[i] != second[i] {
			t.Fatalf("same seed gave different decision at %d", i)
		}
		if first[i] {
			n++
		}
	}
	if n == 0 || n == len(first) {
		t.Fatalf("50%% drop dropped %d of %d", n, len(first))
	}

	f := NewNetwork(3)
	f.Drop("a", "b", 0)
	f.Drop("a", "c", 100)
	for range 50 {
		if dropped(f, "a", "b") {
			t.Fatal("0% drop dropped")
		}
		if !dropped(f, "a", "c") {
			t.Fatal("100% drop delivered")
		}
	}
	if dropped(f, "c", "a") {
		t.Fatal("drop rule leaked to the other direction")
	}
}

func TestNetworkDelay(t *testing.T) {
	f := NewNetwork(5)
	f.Delay("a", AnyNode, 10*time.Millisecond, 5*time.Millisecond)
	for range 50 {
		drop, d := f.Decide("a", "b")
		if drop || d < 10*time.Millisecond || d >= 15*time.Millisecond {
			t.Fatalf("delay %v (drop %v) outside [10ms,15ms)", d, drop)
		}
	}
	if _, d := f.Decide("b", "a"); d != 0 {
		t.Fatalf("b->a delayed by %v", d)
	}
	f.Delay("a", "b", time.Second, 0)
	if _, d := f.Decide("a", "b"); d != time.Second {
		t.Fatalf("latest rule should win, got %v", d)
	}
	f.Heal()
	if _, d := f.Decide("a", "b"); d != 0 {
		t.Fatalf("heal left a delay of %v", d)
	}
}

func TestNetworkNilDeliversEverything(t *testing.T) {
	var f *Network
	if drop, d := f.Decide("a", "b"); drop || d != 0 {
		t.Fatalf("nil Network: drop %v delay %v", drop, d)
	}
}

// A node that is down stays down through Heal, and comes back with Up.
func TestNetworkDownOutlastsHeal(t *testing.T) {
	f := NewNetwork(1)
	f.Down("n1")
	f.Heal()
	for _, p := range [][2]raft.ServerID{{"n1", "n2"}, {"n2", "n1"}} {
		if drop, _ := f.Decide(p[0], p[1]); !drop {
			t.Fatalf("%s -> %s delivered while n1 is down", p[0], p[1])
		}
	}
	if drop, _ := f.Decide("n2", "n3"); drop {
		t.Fatal("n2 -> n3 lost while only n1 is down")
	}
	f.Up("n1")
	if drop, _ := f.Decide("n1", "n2"); drop {
		t.Fatal("n1 -> n2 lost after Up")
	}
}

package integration

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The checkers are tested on hand-made histories, so a green suite means
// "no violation found", not "the checker cannot see one".

func put(client int, key, value string, call, ret int64, out Output) Op {
	return Op{Client: client, Input: Input{Kind: OpPut, Key: key, Value: value}, Output: out, Call: call, Return: ret}
}

func get(client int, key string, call, ret int64, found bool, value string) Op {
	return Op{Client: client, Input: Input{Kind: OpGet, Key: key, Consistency: "LINEARIZABLE"},
		Output: Output{Outcome: OutcomeOK, Found: found, Value: value}, Call: call, Return: ret}
}

func TestCheckerFindsAStaleRead(t *testing.T) {
	ops := []Op{
		put(0, "k", "a", 0, 10, Output{Outcome: OutcomeOK}),
		put(0, "k", "b", 20, 30, Output{Outcome: OutcomeOK, Found: true, Value: "a"}),
		get(1, "k", 40, 50, true, "a"), // b was acknowledged before the read began
	}
	if res, _ := checkLinearizable(ops, 10*time.Second); res != porcupine.Illegal {
		t.Fatalf("stale read: got %s, want Illegal", res)
	}
}

func TestCheckerFindsAWrongPriorValue(t *testing.T) {
	ops := []Op{
		put(0, "k", "a", 0, 10, Output{Outcome: OutcomeOK}),
		// The put reports the key absent although "a" was acknowledged.
		put(1, "k", "b", 20, 30, Output{Outcome: OutcomeOK}),
	}
	if res, _ := checkLinearizable(ops, 10*time.Second); res != porcupine.Illegal {
		t.Fatalf("got %s, want Illegal", res)
	}
}

func TestCheckerLetsUnknownWritesLandLate(t *testing.T) {
	ops := []Op{
		put(0, "k", "a", 0, 10, Output{Outcome: OutcomeUnknown}),
		get(1, "k", 20, 30, false, ""),
		get(1, "k", 40, 50, true, "a"), // the unknown write took effect late
	}
	if res, _ := checkLinearizable(ops, 10*time.Second); res != porcupine.Ok {
		t.Fatalf("got %s, want Ok", res)
	}
	// A failed write never happened: seeing its value is a violation.
	ops[0].Output.Outcome = OutcomeFailed
	if res, _ := checkLinearizable(ops, 10*time.Second); res != porcupine.Illegal {
		t.Fatalf("failed write observed: got %s, want Illegal", res)
	}
}

func TestCheckerCompareAndSet(t *testing.T) {
	cas := func(call, ret int64, expected, value string, out Output) Op {
		return Op{Client: 2, Input: Input{Kind: OpCAS, Key: "k", Expected: expected, Value: value}, Output: out, Call: call, Return: ret}
	}
	ok := []Op{
		put(0, "k", "a", 0, 10, Output{Outcome: OutcomeOK}),
		cas(20, 30, "a", "b", Output{Outcome: OutcomeOK, Applied: true, Found: true, Value: "a"}),
		cas(40, 50, "a", "c", Output{Outcome: OutcomeOK, Applied: false, Found: true, Value: "b"}),
		get(1, "k", 60, 70, true, "b"),
	}
	if res, _ := checkLinearizable(ok, 10*time.Second); res != porcupine.Ok {
		t.Fatalf("got %s, want Ok", res)
	}
	bad := append([]Op(nil), ok...)
	bad[2] = cas(40, 50, "b", "c", Output{Outcome: OutcomeOK, Applied: false, Found: true, Value: "b"})
	if res, _ := checkLinearizable(bad, 10*time.Second); res != porcupine.Illegal {
		t.Fatalf("a compare-and-set that should have applied: got %s, want Illegal", res)
	}
}

func TestCheckerIgnoresStaleReadsButChecksTheirIndex(t *testing.T) {
	stale := func(call int64, node string, inc int, idx uint64, value string) Op {
		return Op{Client: 0, Input: Input{Kind: OpGet, Key: "k", Consistency: "STALE"}, Node: node, Incarnation: inc,
			Output: Output{Outcome: OutcomeOK, Found: value != "", Value: value, AppliedIndex: idx}, Call: call, Return: call + 1}
	}
	ops := []Op{
		put(1, "k", "a", 0, 10, Output{Outcome: OutcomeOK}),
		stale(20, "n1", 1, 7, "a"),
		stale(30, "n1", 1, 5, ""), // older state, and not linearizable: only the index counts
		stale(40, "n1", 2, 3, ""), // a new incarnation starts over
	}
	if res, _ := checkLinearizable(ops, 10*time.Second); res != porcupine.Ok {
		t.Fatalf("stale reads must not reach porcupine: got %s", res)
	}
	if v := checkStaleReads(ops); len(v) != 1 {
		t.Fatalf("got %d stale-read findings %q, want exactly the index going back", len(v), v)
	}
	ops = append(ops, stale(50, "n2", 1, 9, "zz"))
	if v := checkStaleReads(ops); len(v) != 2 {
		t.Fatalf("a value nobody wrote: got %q", v)
	}
}

func TestDurabilityFindsLostWrites(t *testing.T) {
	ops := []Op{
		put(0, "k", "a", 0, 10, Output{Outcome: OutcomeOK}),
		put(0, "j", "x", 0, 10, Output{Outcome: OutcomeOK}),
		put(1, "j", "y", 5, 15, Output{Outcome: OutcomeUnknown}), // may have come after x
	}
	final := map[string]keyState{"k": {}, "j": {Found: true, Value: "y"}}
	lost := checkDurability(ops, final)
	if len(lost) != 1 {
		t.Fatalf("got %q, want k=a lost and j=x overwritten", lost)
	}
	final["k"] = keyState{Found: true, Value: "a"}
	if lost := checkDurability(ops, final); len(lost) != 0 {
		t.Fatalf("nothing is lost: got %q", lost)
	}
}

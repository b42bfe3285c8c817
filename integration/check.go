package integration

import (
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// porcupineHistory turns the history into porcupine's operations: failed
// operations never happened and stale reads are not linearizable by
// contract, so both stay out; an operation of unknown outcome returns
// after every other event, so it may take effect at any time after its call.
func porcupineHistory(ops []Op) []porcupine.Operation {
	var last int64
	for _, op := range ops {
		last = max(last, op.Return)
	}
	var out []porcupine.Operation
	for _, op := range ops {
		if op.Output.Outcome == OutcomeFailed || op.Input.Consistency == "STALE" {
			continue
		}
		ret := op.Return
		if op.Output.Outcome == OutcomeUnknown {
			ret = last + 1
		}
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: op.Input, Call: op.Call, Output: op.Output, Return: ret})
	}
	return out
}

// checkLinearizable runs porcupine on the history with a time bound. A
// search that runs out of time is reported as Unknown, never as a pass or
// a violation.
func checkLinearizable(ops []Op, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	return porcupine.CheckOperationsVerbose(kvModel, porcupineHistory(ops), timeout)
}

// checkStaleReads checks that the stale reads one client sent to one node
// (one incarnation of it) reflect non-decreasing applied indexes, and that
// every value a stale read saw was written by some write that did not fail.
func checkStaleReads(ops []Op) []string {
	type stream struct {
		client      int
		node        string
		incarnation int
	}
	written := map[string]bool{}
	for _, op := range ops {
		if op.Input.Kind != OpGet && op.Output.Outcome != OutcomeFailed {
			written[op.Input.Key+"="+op.Input.Value] = true
		}
	}
	last := map[stream]Op{}
	var out []string
	for _, op := range ops { // sorted by call time
		if op.Input.Consistency != "STALE" || op.Output.Outcome != OutcomeOK {
			continue
		}
		if op.Output.Found && !written[op.Input.Key+"="+op.Output.Value] {
			out = append(out, fmt.Sprintf("stale read of %s on %s saw %q, which no write wrote", op.Input.Key, op.Node, op.Output.Value))
		}
		if op.Incarnation < 0 {
			continue
		}
		s := stream{op.Client, op.Node, op.Incarnation}
		if prev, ok := last[s]; ok && op.Output.AppliedIndex < prev.Output.AppliedIndex {
			out = append(out, fmt.Sprintf("client %d's stale reads on %s went back from applied index %d (at %v) to %d (at %v)",
				op.Client, op.Node, prev.Output.AppliedIndex, time.Duration(prev.Call), op.Output.AppliedIndex, time.Duration(op.Call)))
		}
		last[s] = op
	}
	return out
}

// checkDurability returns the acknowledged writes missing from the final
// state: a write is lost when the final state of its key is not what it
// wrote and no other write that did not fail may have come after it.
func checkDurability(ops []Op, final map[string]keyState) []string {
	byKey := map[string][]Op{}
	for _, op := range ops {
		if op.Input.Kind == OpGet || op.Output.Outcome == OutcomeFailed {
			continue
		}
		if op.Input.Kind == OpCAS && op.Output.Outcome == OutcomeOK && !op.Output.Applied {
			continue // it changed nothing
		}
		byKey[op.Input.Key] = append(byKey[op.Input.Key], op)
	}
	var lost []string
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		writes := byKey[k]
		end := final[k]
		for _, w := range writes {
			if w.Output.Outcome != OutcomeOK {
				continue
			}
			if w.Input.Kind == OpDelete && !end.Found || w.Input.Kind != OpDelete && end.Found && end.Value == w.Input.Value {
				continue
			}
			overwritten := false
			for _, o := range writes {
				// o may have taken effect after w unless it returned before
				// w was called; unknown outcomes never returned.
				if o.Call != w.Call || o.Client != w.Client {
					if o.Output.Outcome == OutcomeUnknown || o.Return >= w.Call {
						overwritten = true
						break
					}
				}
			}
			if !overwritten {
				lost = append(lost, fmt.Sprintf("%s (client %d at %v) is missing: %s is %s at the end and nothing later wrote it",
					describe(w.Input, w.Output), w.Client, time.Duration(w.Call), k, kvModel.DescribeState(end)))
			}
		}
	}
	return lost
}

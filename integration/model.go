package integration

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// OpKind names what an operation did to the store.
type OpKind string

// The operations of the workload.
const (
	OpPut    OpKind = "put"
	OpDelete OpKind = "delete"
	OpCAS    OpKind = "cas"
	OpGet    OpKind = "get"
)

// Outcome is what the client learned about an operation.
type Outcome string

// Outcomes. A write whose reply never came (or came as DEADLINE_EXCEEDED,
// or as "leadership lost, may still commit") is Unknown: it may take effect
// at any later time, or never. Failed means it certainly did not take
// effect, so the checkers leave it out.
const (
	OutcomeOK      Outcome = "ok"
	OutcomeFailed  Outcome = "failed"
	OutcomeUnknown Outcome = "unknown"
)

// Input is an operation's request, as the model sees it.
type Input struct {
	Kind  OpKind `json:"kind"`
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
	// Expected is the value a compare-and-set expects; ExpectAbsent makes
	// it a put-if-absent instead.
	Expected     string `json:"expected,omitempty"`
	ExpectAbsent bool   `json:"expect_absent,omitempty"`
	// Consistency of a read: LINEARIZABLE, LEASE or STALE.
	Consistency string `json:"consistency,omitempty"`
}

// Output is what an operation returned. For a write it is the key's state
// just before the write (kvstore's Result reports it), which lets the model
// check writes as strictly as reads.
type Output struct {
	Outcome Outcome `json:"outcome"`
	Found   bool    `json:"found,omitempty"`
	Value   string  `json:"value,omitempty"`
	// ValueUnknown says the reply told whether the key existed before the
	// write but not its value: the HTTP API of the process mode answers a
	// PUT with "created" and a DELETE with 200 or 404, nothing more. The
	// model then checks Found alone.
	ValueUnknown bool `json:"value_unknown,omitempty"`
	// Applied is false for a compare-and-set whose expectation did not hold.
	Applied bool `json:"applied,omitempty"`
	// AppliedIndex is the index a read reflects (stale reads are checked
	// on it).
	AppliedIndex uint64 `json:"applied_index,omitempty"`
	// Error is the client's error text, for the reader of a history.
	Error string `json:"error,omitempty"`
}

// Op is one recorded operation. Times are nanoseconds since the run
// started, from the monotonic clock.
type Op struct {
	Client int    `json:"client"`
	Input  Input  `json:"input"`
	Output Output `json:"output"`
	Call   int64  `json:"call"`
	Return int64  `json:"return"`
	// Node and Incarnation say which node (and which start of it) answered
	// a stale read, which is pinned to one node.
	Node        string `json:"node,omitempty"`
	Incarnation int    `json:"incarnation,omitempty"`
}

// keyState is the model's state of one key.
type keyState struct {
	Found bool
	Value string
}

// kvModel is a register per key with put, delete, compare-and-set and get.
// Operations are partitioned by key, which keeps porcupine's search small:
// keys are independent, so a history is linearizable exactly when every
// key's sub-history is.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(Input).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return keyState{} },
	Step: func(state, input, output any) (bool, any) {
		return step(state.(keyState), input.(Input), output.(Output))
	},
	DescribeOperation: func(input, output any) string {
		return describe(input.(Input), output.(Output))
	},
	DescribeState: func(state any) string {
		s := state.(keyState)
		if !s.Found {
			return "absent"
		}
		return fmt.Sprintf("%q", s.Value)
	},
}

// step is the sequential specification of one key. An operation of unknown
// outcome is accepted wherever it is placed, with the effect it would have
// had there; porcupine places it anywhere after its call, and "never" is the
// same as "after everything else".
func step(s keyState, in Input, out Output) (bool, keyState) {
	unknown := out.Outcome == OutcomeUnknown
	sawBefore := unknown || (out.Found == s.Found && (!s.Found || out.ValueUnknown || out.Value == s.Value))
	switch in.Kind {
	case OpGet:
		return sawBefore, s
	case OpPut:
		return sawBefore, keyState{Found: true, Value: in.Value}
	case OpDelete:
		return sawBefore, keyState{}
	case OpCAS:
		match := (in.ExpectAbsent && !s.Found) || (!in.ExpectAbsent && s.Found && s.Value == in.Expected)
		if !unknown && out.Applied != match {
			return false, s
		}
		if match {
			return sawBefore, keyState{Found: true, Value: in.Value}
		}
		return sawBefore, s
	}
	return false, s
}

func describe(in Input, out Output) string {
	var req string
	switch in.Kind {
	case OpGet:
		req = fmt.Sprintf("get(%s, %s)", in.Key, in.Consistency)
	case OpPut:
		req = fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
	case OpDelete:
		req = fmt.Sprintf("delete(%s)", in.Key)
	case OpCAS:
		exp := fmt.Sprintf("%q", in.Expected)
		if in.ExpectAbsent {
			exp = "absent"
		}
		req = fmt.Sprintf("cas(%s, %s -> %q)", in.Key, exp, in.Value)
	}
	if out.Outcome == OutcomeUnknown {
		return req + " -> unknown"
	}
	was := "absent"
	switch {
	case out.Found && out.ValueUnknown:
		was = "present"
	case out.Found:
		was = fmt.Sprintf("%q", out.Value)
	}
	if in.Kind == OpCAS && !out.Applied {
		return req + " -> not applied, was " + was
	}
	return req + " -> " + was
}

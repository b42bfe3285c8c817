package integration

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Bounds of the final state's checks.
const (
	// convergeWithin is how long the healed group has to bring every node
	// to the same log position.
	convergeWithin = 30 * time.Second
	// finalReadAttempts and finalReadTimeout bound each key's final
	// linearizable read: a leader may still be settling after the heal.
	finalReadAttempts = 20
	finalReadTimeout  = 5 * time.Second
)

// finalState waits for the healed group to converge, compares every
// node's state, and reads every key linearizably (those reads join the
// history). It returns the final state, or nil when it could not be read,
// and, when the group is stuck, the carrier's account of where.
func finalState(ctx context.Context, c carrier, rec *recorder, keys int, logf func(string, ...any)) (final map[string]keyState, violations []string, stuck string) {
	leader, err := waitLeader(ctx, c)
	if err != nil {
		return nil, []string{"no leader after the final heal: " + err.Error()}, c.stuck()
	}
	if m, ok := c.(reconfigurer); ok {
		// Members the configuration does not hold (a join that never
		// finished, a removal whose reply was lost) are not expected to
		// converge.
		lst, err := c.status(ctx, leader)
		if err != nil {
			return nil, []string{"status of the leader after the final heal: " + err.Error()}, c.stuck()
		}
		inConfig := map[string]bool{}
		for _, s := range lst.GetMembers() {
			inConfig[s.GetId()] = true
		}
		for _, id := range c.nodes() {
			if !inConfig[id] {
				m.retire(id)
				logf("final: stopped %s, not in the configuration", id)
			}
		}
	}

	// Convergence: the same log position everywhere, then the same state.
	deadline := time.Now().Add(convergeWithin)
	for {
		same, detail := converged(ctx, c)
		if same {
			violations = append(violations, compareStates(ctx, c)...)
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			violations = append(violations, fmt.Sprintf("nodes did not converge within %v after the final heal: %s", convergeWithin, detail))
			stuck = c.stuck()
			break
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}

	// Final linearizable reads, through every node in turn from the leader.
	order := c.nodes()
	first := 0
	for i, id := range order {
		if id == leader {
			first = i
		}
	}
	final = map[string]keyState{}
	for k := range keys {
		key := fmt.Sprintf("k%d", k)
		var op Op
		for attempt := range finalReadAttempts {
			via := order[(first+attempt)%len(order)]
			rctx, cancel := context.WithTimeout(ctx, finalReadTimeout)
			op = Op{Client: -1, Input: Input{Kind: OpGet, Key: key, Consistency: "LINEARIZABLE"}, Call: rec.now(), Incarnation: -1}
			op.Output, op.Node = c.read(rctx, key, via)
			cancel()
			op.Return = rec.now()
			if op.Output.Outcome == OutcomeOK || ctx.Err() != nil {
				break
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
		if op.Output.Outcome != OutcomeOK {
			return nil, append(violations, fmt.Sprintf("final read of %s: %s", key, op.Output.Error)), stuck
		}
		rec.add(op)
		final[key] = keyState{Found: op.Output.Found, Value: op.Output.Value}
	}
	return final, violations, stuck
}

// converged reports whether every node has the same last, commit and
// applied index with everything committed, with a description of their
// positions.
func converged(ctx context.Context, c carrier) (bool, string) {
	var parts []string
	var firstLast, firstCommit, firstApplied uint64
	same := true
	for i, id := range c.nodes() {
		st, err := c.status(ctx, id)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", id, err)
		}
		parts = append(parts, fmt.Sprintf("%s %s term=%d last=%d commit=%d applied=%d", id, st.GetState(), st.GetTerm(), st.GetLastIndex(), st.GetCommitIndex(), st.GetAppliedIndex()))
		if i == 0 {
			firstLast, firstCommit, firstApplied = st.GetLastIndex(), st.GetCommitIndex(), st.GetAppliedIndex()
		} else if st.GetLastIndex() != firstLast || st.GetCommitIndex() != firstCommit || st.GetAppliedIndex() != firstApplied {
			same = false
		}
		if st.GetCommitIndex() != st.GetLastIndex() {
			same = false
		}
	}
	return same, strings.Join(parts, "; ")
}

// compareStates reads every node's whole state and reports each that
// differs from the first node's.
func compareStates(ctx context.Context, c carrier) []string {
	var out []string
	var ref, refID string
	for _, id := range c.nodes() {
		s, err := c.state(ctx, id)
		text := s.String()
		if err != nil {
			text = "error: " + err.Error()
		}
		if refID == "" {
			ref, refID = text, id
			continue
		}
		if text != ref {
			out = append(out, fmt.Sprintf("state of %s differs from %s after convergence:\n%s\n---\n%s", id, refID, text, ref))
		}
	}
	return out
}

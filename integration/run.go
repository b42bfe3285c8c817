package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// Config is one seeded run.
type Config struct {
	// Seed decides the schedule, every client's operations and the fault
	// injector's random choices; a failing seed replays the same run as far
	// as goroutine scheduling allows.
	Seed int64
	// Nodes is the initial group size (3 or 5).
	Nodes int
	// Duration is how long the schedule of faults runs under load.
	Duration time.Duration
	// Clients and Keys shape the workload.
	Clients int
	Keys    int
	// Kinds are the nemeses the schedule draws from; nil means AllKinds.
	Kinds []Kind
	// Steps, when set, is the schedule itself instead of one drawn from
	// the seed: a named regression scenario pins the faults that found a
	// bug this way.
	Steps []Step
	// Dir holds the nodes' data directories.
	Dir string
	// ResultsDir receives the artifacts of a failed run.
	ResultsDir string
	// CheckTimeout bounds porcupine's search.
	CheckTimeout time.Duration
	// Replay is the command that runs this seed again, printed on failure.
	Replay string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Report is the outcome of one run.
type Report struct {
	Seed  int64 `json:"seed"`
	Nodes int   `json:"nodes"`
	// Ops counts the operations by outcome.
	Ops map[Outcome]int `json:"ops"`
	// Faults counts the faults injected by kind.
	Faults map[Kind]int `json:"faults"`
	// Linearizable is porcupine's verdict: Ok, Illegal or Unknown (the
	// search ran out of time; not counted as a violation).
	Linearizable porcupine.CheckResult `json:"linearizable"`
	// Violations are every checker's findings, lost writes included.
	Violations []string `json:"violations"`
	// LostWrites are acknowledged writes missing after the final heal.
	LostWrites []string `json:"lost_writes"`
	// Probe counts the stale-read probe's reads.
	Probe probeStats `json:"probe"`
	// Artifacts is where a failed run's files were saved.
	Artifacts string        `json:"artifacts,omitempty"`
	Took      time.Duration `json:"took"`
	// goroutines is a dump of every goroutine taken when the group did not
	// converge, saved as goroutines.txt: a node that stops answering is
	// stuck somewhere, and the dump says where.
	goroutines string
}

// Failed reports whether the run found anything wrong.
func (r *Report) Failed() bool { return len(r.Violations) > 0 }

// Run performs one seeded run: a group under the workload and the
// schedule, then the final heal and every checker. An error means the
// harness itself could not run (the group did not start), not a violation.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	began := time.Now()
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Kinds == nil {
		cfg.Kinds = AllKinds
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = time.Minute
	}
	rep := &Report{Seed: cfg.Seed, Nodes: cfg.Nodes, Ops: map[Outcome]int{}, Faults: map[Kind]int{}}
	steps := cfg.Steps
	if steps == nil {
		steps = Schedule(cfg.Seed, cfg.Duration, cfg.Kinds)
	}

	c, err := newInproc(cfg.Seed, cfg.Nodes, cfg.Dir, cfg.Logf)
	if err != nil {
		return nil, err
	}
	defer c.shutdown()
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = c.waitLeader(startCtx)
	cancel()
	if err != nil {
		return nil, err
	}

	rec := newRecorder()
	wl := newWorkload(c, rec, cfg.Seed, cfg.Clients, cfg.Keys)
	nem := newNemesis(c, rec, wl)
	wctx, stopWorkload := context.WithCancel(ctx)
	wdone := make(chan struct{})
	go func() {
		wl.run(wctx)
		close(wdone)
	}()
	// The schedule is bounded by its own steps; a step that hangs is cut
	// off by this deadline rather than by the test's.
	nctx, cancel := context.WithTimeout(ctx, cfg.Duration*4+time.Minute)
	nem.run(nctx, steps)
	cancel()
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	nem.heal(fctx, len(steps))
	// A moment of healed load, so the last steps' victims take part again.
	sleepCtx(ctx, 500*time.Millisecond)
	stopWorkload()
	<-wdone

	final, finalViolations, stuck := finalState(fctx, c, nem, rec, cfg.Keys)
	rep.goroutines = stuck
	ops := rec.history()
	for _, op := range ops {
		rep.Ops[op.Output.Outcome]++
		if op.Output.Outcome == OutcomeFailed && strings.HasPrefix(op.Output.Error, "store refused") {
			rep.Violations = append(rep.Violations, "the store refused a command the workload sent: "+op.Output.Error)
		}
	}
	nem.mu.Lock()
	for k, v := range nem.faults {
		rep.Faults[k] = v
	}
	rep.Violations = append(rep.Violations, nem.violations...)
	rep.Probe = nem.probes
	events := append([]Event(nil), nem.events...)
	nem.mu.Unlock()
	rep.Violations = append(rep.Violations, finalViolations...)

	result, info := checkLinearizable(ops, cfg.CheckTimeout)
	rep.Linearizable = result
	if result == porcupine.Illegal {
		rep.Violations = append(rep.Violations, "history is not linearizable (see linearizability.html)")
	}
	rep.Violations = append(rep.Violations, checkStaleReads(ops)...)
	if final != nil {
		rep.LostWrites = checkDurability(ops, final)
		for _, l := range rep.LostWrites {
			rep.Violations = append(rep.Violations, "lost write: "+l)
		}
	}
	rep.Took = time.Since(began)
	if rep.Failed() || os.Getenv("PROTORAFT_KEEP") != "" {
		dir, err := saveArtifacts(cfg, rep, steps, events, ops, info)
		if err != nil {
			rep.Violations = append(rep.Violations, "could not save artifacts: "+err.Error())
		}
		rep.Artifacts = dir
	}
	return rep, nil
}

// finalState waits for the healed group to converge, compares every
// node's state, and reads every key linearizably (those reads join the
// history). It returns the final state, or nil when it could not be read.
func finalState(ctx context.Context, c *inproc, nem *nemesis, rec *recorder, keys int) (final map[string]keyState, violations []string, stuck string) {
	leader, err := c.waitLeader(ctx)
	if err != nil {
		return nil, []string{"no leader after the final heal: " + err.Error()}, goroutineDump()
	}
	// Members the configuration does not hold (a join that never finished,
	// a removal whose reply was lost) are stopped: they are not expected to
	// converge.
	lst, err := c.status(leader)
	if err != nil {
		return nil, []string{"status of the leader after the final heal: " + err.Error()}, goroutineDump()
	}
	inConfig := map[string]bool{}
	for _, s := range lst.Members {
		inConfig[s.Id] = true
	}
	for _, m := range c.live() {
		if !inConfig[m.id] {
			c.mu.Lock()
			m.removed = true
			c.mu.Unlock()
			_ = c.stop(m)
			c.logf("final: stopped %s, not in the configuration", m.id)
		}
	}

	// Convergence: the same log position and the same state everywhere.
	var states map[string]string
	deadline := time.Now().Add(30 * time.Second)
	for {
		same, detail := converged(c)
		if same {
			states = map[string]string{}
			for _, m := range c.running() {
				states[m.id] = dump(c, m)
			}
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			violations = append(violations, "nodes did not converge within 30s after the final heal: "+detail)
			stuck = goroutineDump()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var ref, refID string
	for id, s := range states {
		if ref == "" {
			ref, refID = s, id
			continue
		}
		if s != ref {
			violations = append(violations, fmt.Sprintf("state of %s differs from %s after convergence:\n%s\n---\n%s", id, refID, s, ref))
		}
	}

	// Final linearizable reads, through a fresh client.
	client := newClientFor(c, c.peers())
	final = map[string]keyState{}
	for k := range keys {
		key := fmt.Sprintf("k%d", k)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		op := Op{Client: -1, Input: Input{Kind: OpGet, Key: key, Consistency: "LINEARIZABLE"}, Call: rec.now()}
		resp, err := client.Read(rctx, kvstore.Get(key))
		cancel()
		op.Return = rec.now()
		op.Output = readOutput(resp, err)
		if op.Output.Outcome != OutcomeOK {
			return nil, append(violations, fmt.Sprintf("final read of %s: %s", key, op.Output.Error)), stuck
		}
		rec.add(op)
		final[key] = keyState{Found: op.Output.Found, Value: op.Output.Value}
	}
	return final, violations, stuck
}

// converged reports whether every running member has the same last,
// commit and applied index, with a description of their positions.
func converged(c *inproc) (bool, string) {
	var parts []string
	var first *actors.StatusResponse
	same := true
	for _, m := range c.running() {
		st, err := c.status(m)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", m.id, err)
		}
		parts = append(parts, fmt.Sprintf("%s %s last=%d commit=%d applied=%d", m.id, st.State, st.LastIndex, st.CommitIndex, st.AppliedIndex))
		if first == nil {
			first = st
		} else if st.LastIndex != first.LastIndex || st.CommitIndex != first.CommitIndex || st.AppliedIndex != first.AppliedIndex {
			same = false
		}
		if st.CommitIndex != st.LastIndex {
			same = false
		}
	}
	return same, strings.Join(parts, "; ")
}

// dump lists one node's whole state with a stale read to its own node
// actor, as "key=value@revision" lines, plus the applied index it reflects.
func dump(c *inproc, m *member) string {
	resp, err := c.ask(m.g.Node(), &actors.ReadRequest{Meta: actors.NewMeta(askTimeout * 9 / 10),
		Query: kvstore.List("", 0), Consistency: actors.Consistency_STALE})
	if err != nil {
		return "error: " + err.Error()
	}
	rr := resp.(*actors.ReadResponse)
	q, err := kvstore.DecodeQueryResult(rr.Result)
	if err != nil {
		return "error: " + err.Error()
	}
	lines := []string{fmt.Sprintf("applied=%d", rr.AppliedIndex)}
	for _, e := range q.Entries {
		lines = append(lines, fmt.Sprintf("%s=%s@%d", e.Key, e.Value, e.Revision))
	}
	sort.Strings(lines[1:])
	return strings.Join(lines, "\n")
}

// saveArtifacts writes the seed, schedule, events, history, report and
// porcupine's visualisation under ResultsDir and returns the directory.
func saveArtifacts(cfg Config, rep *Report, steps []Step, events []Event, ops []Op, info porcupine.LinearizationInfo) (string, error) {
	dir := filepath.Join(cfg.ResultsDir, fmt.Sprintf("seed-%d-%s", cfg.Seed, time.Now().Format("20060102-150405")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	files := map[string]any{
		"seed.json":     map[string]any{"seed": cfg.Seed, "nodes": cfg.Nodes, "duration": cfg.Duration.String(), "clients": cfg.Clients, "keys": cfg.Keys, "replay": cfg.Replay},
		"schedule.json": steps,
		"events.json":   events,
		"history.json":  ops,
		"report.json":   rep,
	}
	for name, v := range files {
		if err := writeJSON(filepath.Join(dir, name), v); err != nil {
			return dir, err
		}
	}
	if rep.goroutines != "" {
		if err := os.WriteFile(filepath.Join(dir, "goroutines.txt"), []byte(rep.goroutines), 0o644); err != nil {
			return dir, err
		}
	}
	var notes []porcupine.Annotation
	for _, e := range events {
		notes = append(notes, porcupine.Annotation{Tag: "nemesis", Start: e.At, End: e.At, Description: string(e.Kind), Details: e.Detail})
	}
	info.AddAnnotations(notes)
	if err := porcupine.VisualizePath(kvModel, info, filepath.Join(dir, "linearizability.html")); err != nil {
		return dir, err
	}
	return dir, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// goroutineDump returns the stacks of every goroutine of the process.
func goroutineDump() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	return b.String()
}

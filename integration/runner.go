package integration

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/anishathalye/porcupine"
)

// Config is one seeded run, on either carrier.
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
	// Kinds are the nemeses the schedule draws from; nil means the
	// carrier's own (AllKinds, ProcessKinds).
	Kinds []Kind
	// Steps, when set, is the schedule itself instead of one drawn from
	// the seed: a named regression scenario pins the faults that found a
	// bug this way.
	Steps []Step
	// Dir holds the nodes' data directories (and the processes' logs).
	Dir string
	// ResultsDir receives the artifacts of a failed run.
	ResultsDir string
	// CheckTimeout bounds porcupine's search; zero means a minute.
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
	// Carrier names the carrier that ran the group.
	Carrier string `json:"carrier"`
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
	// Duplicates are writes applied at two command indexes, when
	// DuplicatesChecked (the carrier sees every node's applications).
	Duplicates        []string `json:"duplicate_applications"`
	DuplicatesChecked bool     `json:"duplicates_checked"`
	// Crashes are the nodes that crashed where the run excuses it (a
	// process that panicked on its full disk), each restarted by the heal.
	Crashes []string `json:"crashes,omitempty"`
	// Probe counts the stale-read probe's reads.
	Probe probeStats `json:"probe"`
	// Artifacts is where a failed run's files were saved.
	Artifacts string        `json:"artifacts,omitempty"`
	Took      time.Duration `json:"took"`
	// stuck says where a group that did not converge was stuck (for the
	// in-process carrier, every goroutine's stack), taken when it was
	// found and saved as goroutines.txt: a node that stops answering is
	// stuck somewhere, and the dump says where.
	stuck string
}

// Failed reports whether the run found anything wrong.
func (r *Report) Failed() bool { return len(r.Violations) > 0 }

// Run performs one seeded run on the in-process carrier: nodes sharing one
// ActorSystem, network faults through faults.Network, a cluster.Client
// workload. An error means the harness itself could not run (the group did
// not start), not a violation.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	return run(ctx, cfg, func(logf func(string, ...any)) (carrier, error) {
		return newInproc(cfg.Seed, cfg.Nodes, cfg.Dir, logf)
	})
}

// run performs one seeded run on the group start brings up: the schedule
// under the workload, the final heal and every checker.
func run(ctx context.Context, cfg Config, start func(logf func(string, ...any)) (carrier, error)) (*Report, error) {
	began := time.Now()
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = time.Minute
	}
	c, err := start(cfg.Logf)
	if err != nil {
		return nil, err
	}
	defer c.close()
	rep := &Report{Seed: cfg.Seed, Nodes: cfg.Nodes, Carrier: c.name(), Ops: map[Outcome]int{}, Faults: map[Kind]int{}}
	if cfg.Kinds == nil {
		cfg.Kinds = c.kinds()
	}
	steps := cfg.Steps
	if steps == nil {
		steps = c.schedule(cfg.Seed, cfg.Duration, cfg.Kinds)
	}
	rec := newRecorder()
	nem := newNemesis(c, rec, cfg.Logf)
	for _, s := range steps {
		for _, k := range s.Kinds {
			if !nem.supports(k) {
				return nil, fmt.Errorf("integration: the %s carrier cannot inject %s", c.name(), k)
			}
		}
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = waitLeader(startCtx, c)
	cancel()
	if err != nil {
		return nil, err
	}

	clients := c.clients(rec, cfg.Seed, cfg.Clients, cfg.Keys)
	wctx, stopWorkload := context.WithCancel(ctx)
	wdone := make(chan struct{})
	go func() {
		runWorkload(wctx, clients)
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

	final, finalViolations, stuck := finalState(fctx, c, rec, cfg.Keys, cfg.Logf)
	rep.stuck = stuck
	ops := rec.history()
	for _, op := range ops {
		rep.Ops[op.Output.Outcome]++
	}
	rep.Violations = append(rep.Violations, rec.refusals()...)
	nem.mu.Lock()
	for k, v := range nem.faults {
		rep.Faults[k] = v
	}
	rep.Violations = append(rep.Violations, nem.violations...)
	rep.Probe = nem.probes
	events := append([]Event(nil), nem.events...)
	nem.mu.Unlock()
	rep.Violations = append(rep.Violations, c.incidents()...)
	if cc, ok := c.(crashCounter); ok {
		rep.Crashes = cc.crashes()
	}
	if d, ok := c.(duplicateFinder); ok {
		rep.DuplicatesChecked = true
		rep.Duplicates = d.duplicates()
		for _, dup := range rep.Duplicates {
			rep.Violations = append(rep.Violations, "duplicate application: "+dup)
		}
	}
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
	// Everything stops before the artifacts are saved, so the processes'
	// logs are complete.
	c.close()
	rep.Took = time.Since(began)
	if rep.Failed() || os.Getenv("PROTORAFT_KEEP") != "" {
		dir, err := saveArtifacts(cfg, c, rep, steps, events, ops, info)
		if err != nil {
			rep.Violations = append(rep.Violations, "could not save artifacts: "+err.Error())
		}
		rep.Artifacts = dir
	}
	return rep, nil
}

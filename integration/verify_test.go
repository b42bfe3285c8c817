package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// profile is a set of seeded runs.
type profile struct {
	name     string
	runs     int
	seedBase int64
	duration time.Duration
}

// override applies the environment's PROTORAFT_<prefix>RUNS,
// PROTORAFT_<prefix>SEED_BASE and PROTORAFT_<prefix>DURATION to p.
func (p *profile) override(t *testing.T, prefix string) {
	t.Helper()
	if v := os.Getenv("PROTORAFT_" + prefix + "RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("PROTORAFT_%sRUNS: %v", prefix, err)
		}
		p.runs = n
	}
	if v := os.Getenv("PROTORAFT_" + prefix + "SEED_BASE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("PROTORAFT_%sSEED_BASE: %v", prefix, err)
		}
		p.seedBase = n
	}
	if v := os.Getenv("PROTORAFT_" + prefix + "DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("PROTORAFT_%sDURATION: %v", prefix, err)
		}
		p.duration = d
	}
}

// Profiles. The short one runs in every `go test ./...` and must stay well
// under a minute and a half on two busy cores; the long one is for soaking
// (PROTORAFT_SOAK=1) and takes its base seed from the clock unless told.
func selectProfile(t *testing.T) profile {
	p := profile{name: "short", runs: 10, seedBase: 1, duration: 3 * time.Second}
	if os.Getenv("PROTORAFT_SOAK") != "" {
		p = profile{name: "long", runs: 100, seedBase: time.Now().UnixNano() % 1_000_000_000, duration: 8 * time.Second}
	}
	p.override(t, "")
	return p
}

// nodesFor alternates the group size with the seed, so a seed alone says
// which group a replay needs.
func nodesFor(seed int64) int {
	if seed%2 == 0 {
		return 3
	}
	return 5
}

// resultsDir is where failed runs leave their artifacts: PROTORAFT_RESULTS,
// or results/ at the repository root (ignored by git).
func resultsDir() string {
	if d := os.Getenv("PROTORAFT_RESULTS"); d != "" {
		return d
	}
	return filepath.Join("..", "results")
}

// runner runs one seed's Config on a carrier, from inside its subtest.
type runner func(t *testing.T, ctx context.Context, cfg Config) (*Report, error)

// inProcess runs a Config on the in-process carrier.
func inProcess(_ *testing.T, ctx context.Context, cfg Config) (*Report, error) { return Run(ctx, cfg) }

// runSeed runs cfg (its seed, schedule and workload) as a subtest and fails
// it on any violation, with the artifacts' location and the command that
// replays it. The subtest sets the directories and the log.
func runSeed(t *testing.T, sum *Summary, cfg Config, run runner) {
	t.Run(fmt.Sprintf("seed=%d", cfg.Seed), func(t *testing.T) {
		cfg.Dir = t.TempDir()
		if cfg.ResultsDir == "" {
			cfg.ResultsDir = resultsDir()
		}
		cfg.Logf = func(format string, args ...any) {
			if os.Getenv("PROTORAFT_TEST_LOG") != "" {
				t.Logf(format, args...)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		rep, err := run(t, ctx, cfg)
		if err != nil {
			t.Fatalf("seed %d: the run could not start: %v\nreplay: %s", cfg.Seed, err, cfg.Replay)
		}
		sum.Add(rep)
		t.Logf("seed %d: %d nodes, %s, ops %v, faults %v, linearizable %s, probe %+v, took %v",
			cfg.Seed, cfg.Nodes, rep.Carrier, rep.Ops, rep.Faults, rep.Linearizable, rep.Probe, rep.Took.Round(time.Millisecond))
		for _, c := range rep.Crashes {
			t.Logf("seed %d: excused crash: %s", cfg.Seed, c)
		}
		if rep.Failed() {
			t.Errorf("seed %d: %d violation(s):\n  %s\nartifacts: %s\nreplay: %s",
				cfg.Seed, len(rep.Violations), strings.Join(rep.Violations, "\n  "), rep.Artifacts, cfg.Replay)
		}
	})
}

// seedConfig is the in-process run of seed: its group size, its workload
// and the command that replays it. kinds, when set, narrow the schedule,
// and the replay runs the calling test instead.
func seedConfig(t *testing.T, seed int64, duration time.Duration, kinds []Kind) Config {
	replay := fmt.Sprintf("PROTORAFT_SEED=%d PROTORAFT_DURATION=%s go test -count=1 -run TestReplay -v ./integration/", seed, duration)
	if kinds != nil {
		replay = fmt.Sprintf("go test -count=1 -run '%s/seed=%d' -v ./integration/", t.Name(), seed)
	}
	return Config{
		Seed:     seed,
		Nodes:    nodesFor(seed),
		Duration: duration,
		Clients:  4 + nodesFor(seed)/2,
		Keys:     5,
		Kinds:    kinds,
		Replay:   replay,
	}
}

// reportProfile logs a profile's summary line, prints it (go test shows it
// without -v too) and writes it to results/summary-<file>.txt.
func reportProfile(t *testing.T, label, file string, sum *Summary) {
	line := fmt.Sprintf("%s: %s", label, sum)
	t.Log(line)
	fmt.Println(line)
	if err := os.MkdirAll(resultsDir(), 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(resultsDir(), "summary-"+file+".txt"), []byte(line+"\n"), 0o644)
	}
}

// TestVerify runs the selected profile: seeded runs of every nemesis under
// load on 3- and 5-node groups, each checked for linearizability, stale-read
// monotonicity, durability and convergence. The summary line is logged (go
// test -v shows it) and written to the results directory.
func TestVerify(t *testing.T) {
	if os.Getenv("PROTORAFT_SEED") != "" {
		t.Skip("PROTORAFT_SEED set: TestReplay runs that seed alone")
	}
	p := selectProfile(t)
	sum := NewSummary()
	t.Logf("profile %s: %d runs from seed %d, %v of faults each", p.name, p.runs, p.seedBase, p.duration)
	for i := range p.runs {
		runSeed(t, sum, seedConfig(t, p.seedBase+int64(i), p.duration, nil), inProcess)
	}
	reportProfile(t, "profile "+p.name, p.name, sum)
}

// TestReplay runs the one seed in PROTORAFT_SEED, as printed by a failure.
func TestReplay(t *testing.T) {
	v := os.Getenv("PROTORAFT_SEED")
	if v == "" {
		t.Skip("set PROTORAFT_SEED to replay a seed")
	}
	seed, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("PROTORAFT_SEED: %v", err)
	}
	p := selectProfile(t)
	sum := NewSummary()
	runSeed(t, sum, seedConfig(t, seed, p.duration, nil), inProcess)
	t.Log(sum)
}

// TestStaleReadProbe isolates leaders over and over, on 3 and 5 nodes, and
// sends linearizable reads straight to each isolated leader's node actor:
// none may succeed once the majority has elected a new leader.
func TestStaleReadProbe(t *testing.T) {
	sum := NewSummary()
	for _, seed := range []int64{100, 101} {
		runSeed(t, sum, seedConfig(t, seed, 3*time.Second, []Kind{KindIsolateLeader}), inProcess)
	}
	t.Log(sum)
	if sum.ProbeReads == 0 {
		t.Fatal("the probe sent no reads")
	}
}

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

// Profiles. The short one runs in every `go test ./...` and must stay well
// under a minute and a half on two busy cores; the long one is for soaking
// (PROTORAFT_SOAK=1) and takes its base seed from the clock unless told.
func selectProfile(t *testing.T) profile {
	p := profile{name: "short", runs: 10, seedBase: 1, duration: 3 * time.Second}
	if os.Getenv("PROTORAFT_SOAK") != "" {
		p = profile{name: "long", runs: 100, seedBase: time.Now().UnixNano() % 1_000_000_000, duration: 8 * time.Second}
	}
	if v := os.Getenv("PROTORAFT_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("PROTORAFT_RUNS: %v", err)
		}
		p.runs = n
	}
	if v := os.Getenv("PROTORAFT_SEED_BASE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("PROTORAFT_SEED_BASE: %v", err)
		}
		p.seedBase = n
	}
	if v := os.Getenv("PROTORAFT_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("PROTORAFT_DURATION: %v", err)
		}
		p.duration = d
	}
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

// runSeed runs one seed as a subtest and fails it on any violation, with
// the artifacts' location and the command that replays it.
func runSeed(t *testing.T, sum *Summary, seed int64, duration time.Duration, kinds []Kind) {
	t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
		replay := fmt.Sprintf("PROTORAFT_SEED=%d PROTORAFT_DURATION=%s go test -count=1 -run TestReplay -v ./integration/", seed, duration)
		if kinds != nil {
			replay = fmt.Sprintf("go test -count=1 -run '%s' -v ./integration/", t.Name())
		}
		cfg := Config{
			Seed:       seed,
			Nodes:      nodesFor(seed),
			Duration:   duration,
			Clients:    4 + nodesFor(seed)/2,
			Keys:       5,
			Kinds:      kinds,
			Dir:        t.TempDir(),
			ResultsDir: resultsDir(),
			Replay:     replay,
			Logf: func(format string, args ...any) {
				if os.Getenv("PROTORAFT_TEST_LOG") != "" {
					t.Logf(format, args...)
				}
			},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		rep, err := Run(ctx, cfg)
		if err != nil {
			t.Fatalf("seed %d: the run could not start: %v\nreplay: %s", seed, err, replay)
		}
		sum.Add(rep)
		t.Logf("seed %d: %d nodes, ops %v, faults %v, linearizable %s, probe %+v, took %v",
			seed, cfg.Nodes, rep.Ops, rep.Faults, rep.Linearizable, rep.Probe, rep.Took.Round(time.Millisecond))
		if rep.Failed() {
			t.Errorf("seed %d: %d violation(s):\n  %s\nartifacts: %s\nreplay: %s",
				seed, len(rep.Violations), strings.Join(rep.Violations, "\n  "), rep.Artifacts, replay)
		}
	})
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
		runSeed(t, sum, p.seedBase+int64(i), p.duration, nil)
	}
	line := fmt.Sprintf("profile %s: %s", p.name, sum)
	t.Log(line)
	fmt.Println(line)
	if err := os.MkdirAll(resultsDir(), 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(resultsDir(), "summary-"+p.name+".txt"), []byte(line+"\n"), 0o644)
	}
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
	runSeed(t, sum, seed, p.duration, nil)
	t.Log(sum)
}

// TestStaleReadProbe isolates leaders over and over, on 3 and 5 nodes, and
// sends linearizable reads straight to each isolated leader's node actor:
// none may succeed once the majority has elected a new leader.
func TestStaleReadProbe(t *testing.T) {
	sum := NewSummary()
	for _, seed := range []int64{100, 101} {
		runSeed(t, sum, seed, 3*time.Second, []Kind{KindIsolateLeader})
	}
	t.Log(sum)
	if sum.ProbeReads == 0 {
		t.Fatal("the probe sent no reads")
	}
}

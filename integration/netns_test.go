//go:build linux

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// selectNetnsProfile is the network namespace carrier's profile: two
// seeds (a 3-node group over remote, a 5-node one over Raft links), each
// long enough for three steps, so every `go test ./integration/` meets
// every kind of NetKinds on both carriers of Raft RPCs; more with
// PROTORAFT_SOAK=1. PROTORAFT_NETNS_RUNS, PROTORAFT_NETNS_SEED_BASE and
// PROTORAFT_NETNS_DURATION change it.
func selectNetnsProfile(t *testing.T) profile {
	p := profile{name: "short", runs: 2, seedBase: 3000, duration: 6 * time.Second}
	if os.Getenv("PROTORAFT_SOAK") != "" {
		p = profile{name: "long", runs: 10, seedBase: time.Now().UnixNano() % 1_000_000_000, duration: 30 * time.Second}
	}
	p.override(t, "NETNS_")
	return p
}

// skipWithoutNetns skips t where network namespaces cannot be made.
func skipWithoutNetns(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts OS processes in network namespaces; skipped with -short")
	}
	if err := NetnsAvailable(); err != nil {
		t.Skipf("real network faults need network namespaces: %v", err)
	}
}

// netnsLink says whether a seed's processes serve Raft links: odd seeds
// do, so consecutive seeds alternate (and, with nodesFor, a 3-node group
// runs over remote and a 5-node one over links).
func netnsLink(seed int64) bool { return seed%2 == 1 }

// onNetns runs a Config on the network namespace carrier with bin.
func onNetns(bin string) runner {
	return func(t *testing.T, ctx context.Context, cfg Config) (*Report, error) {
		return RunNetns(ctx, cfg, Processes{
			Binary:  bin,
			Link:    netnsLink(cfg.Seed),
			OnStart: func(closeAll func()) { t.Cleanup(closeAll) },
		})
	}
}

func netnsSeedConfig(seed int64, duration time.Duration) Config {
	cfg := processSeedConfig(seed, duration)
	cfg.ResultsDir = filepath.Join(resultsDir(), "netns")
	cfg.Replay = fmt.Sprintf("PROTORAFT_NETNS_SEED=%d PROTORAFT_NETNS_DURATION=%s go test -count=1 -run TestNetnsReplay -v ./integration/", seed, duration)
	return cfg
}

// TestNetnsVerify runs the network namespace carrier's profile: samples/kv
// processes in namespaces of their own, the process schedule with a
// kernel-level blackhole, one-way blackhole or netem on every step; every
// run is checked for linearizability, stale-read monotonicity, durability,
// convergence and, with Raft links, links that carry RPCs again after the
// heal.
func TestNetnsVerify(t *testing.T) {
	skipWithoutNetns(t)
	if os.Getenv("PROTORAFT_NETNS_SEED") != "" {
		t.Skip("a replay runs its seed alone")
	}
	p := selectNetnsProfile(t)
	run := onNetns(buildKVForTest(t))
	sum := NewSummary()
	t.Logf("netns profile %s: %d runs from seed %d, %v of faults each", p.name, p.runs, p.seedBase, p.duration)
	for i := range p.runs {
		runSeed(t, sum, netnsSeedConfig(p.seedBase+int64(i), p.duration), run)
	}
	reportProfile(t, "netns profile "+p.name, "netns-"+p.name, sum)
}

// TestNetnsReplay runs the one seed in PROTORAFT_NETNS_SEED.
func TestNetnsReplay(t *testing.T) {
	v := os.Getenv("PROTORAFT_NETNS_SEED")
	if v == "" {
		t.Skip("set PROTORAFT_NETNS_SEED to replay a network namespace seed")
	}
	skipWithoutNetns(t)
	seed, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("PROTORAFT_NETNS_SEED: %v", err)
	}
	p := selectNetnsProfile(t)
	sum := NewSummary()
	runSeed(t, sum, netnsSeedConfig(seed, p.duration), onNetns(buildKVForTest(t)))
	t.Log(sum)
}

// The short profile's schedules carry every kind of NetKinds, over remote
// and over Raft links, without changing what the process schedule draws.
func TestNetnsShortProfileMeetsEveryNetKind(t *testing.T) {
	p := profile{name: "short", runs: 2, seedBase: 3000, duration: 6 * time.Second}
	for i := range p.runs {
		seed := p.seedBase + int64(i)
		plain := ProcessSchedule(seed, p.duration, ProcessKinds)
		over := netOverlay(seed, plain)
		seen := map[Kind]bool{}
		for j, s := range over {
			if len(s.Kinds) != len(plain[j].Kinds)+1 || s.Param != plain[j].Param || s.Hold != plain[j].Hold || s.Kinds[0] != plain[j].Kinds[0] {
				t.Fatalf("seed %d step %d: the overlay changed the process step: %v vs %v", seed, j, s, plain[j])
			}
			seen[s.Kinds[len(s.Kinds)-1]] = true
		}
		for _, k := range NetKinds {
			if !seen[k] {
				t.Errorf("seed %d (link %v) never meets %s", seed, netnsLink(seed), k)
			}
		}
	}
	if netnsLink(p.seedBase) == netnsLink(p.seedBase+1) {
		t.Error("the short profile runs both seeds on the same carrier of Raft RPCs")
	}
}

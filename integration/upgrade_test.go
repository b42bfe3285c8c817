//go:build unix

package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// previousRelease is the build a rolling upgrade starts from: the commit
// before the last change to what nodes write to their logs and send each
// other (open indexes, docs/operations.md#upgrades), so the mixed group
// runs nodes that disagree about that change.
const previousRelease = "6018f91f16e11cea5de25a7a585f5c4bbb92f1ba"

// buildPreviousRelease builds samples/kv as of previousRelease from this
// repository's history, or skips the test where there is none to build
// from (no git, a source archive, a shallow clone).
func buildPreviousRelease(t *testing.T) string {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("rolling upgrade: no git command to take the previous release from")
	}
	if out, err := exec.Command(git, "cat-file", "-e", previousRelease+"^{commit}").CombinedOutput(); err != nil {
		t.Skipf("rolling upgrade: this checkout lacks commit %s (not a git clone, or a shallow one: git fetch --unshallow): %s",
			previousRelease, strings.TrimSpace(string(out)))
	}
	top, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse --show-toplevel: %v", err)
	}
	began := time.Now()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "src.tar")
	// From the top: in a subdirectory, git archive takes only that one.
	if out, err := exec.Command(git, "-C", strings.TrimSpace(string(top)), "archive", "-o", archive, previousRelease).CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", previousRelease, err, out)
	}
	if out, err := exec.Command("tar", "-xf", archive, "-C", src).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", archive, err, out)
	}
	bin := filepath.Join(dir, "kv-previous")
	build := exec.Command("go", "build", "-o", bin, "./samples/kv")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build samples/kv of %s: %v\n%s", previousRelease, err, out)
	}
	t.Logf("built samples/kv of %s in %v", previousRelease[:12], time.Since(began).Round(time.Millisecond))
	return bin
}

// TestRollingUpgrade upgrades a running group of the previous release to
// this tree one node at a time under the checked workload, as the upgrade
// runbook in docs/operations.md says: each node stopped gracefully and
// started on the new build from its data directory, followers first, the
// next one only once it has caught up; a leader killed in the mixed group
// and in the upgraded one. While the builds are mixed, writes go only
// through nodes of the previous release (this release's Clients write once
// every node runs it); after the last node, every node takes writes, with
// this release's open indexes. Every run's checks apply: linearizability,
// no lost acknowledged write, no write applied twice, convergence.
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes; skipped with -short")
	}
	previous := buildPreviousRelease(t)
	current := buildKVForTest(t)
	step := func(k Kind, param int64) Step {
		return Step{Kinds: []Kind{k}, Hold: time.Second, Quiet: time.Second, Param: param}
	}
	cfg := processSeedConfig(9100, 10*time.Second,
		step(KindUpgrade, 1),
		step(KindSigkillLeader, 2),
		step(KindUpgrade, 3),
		step(KindUpgrade, 4),
		step(KindSigkillLeader, 5),
		step(KindGracefulRestart, 6),
	)
	cfg.Replay = "go test -count=1 -run TestRollingUpgrade -v ./integration/"
	var rep *Report
	runSeed(t, NewSummary(), cfg, func(t *testing.T, ctx context.Context, cfg Config) (*Report, error) {
		r, err := RunProcess(ctx, cfg, Processes{
			Binary:  previous,
			Upgrade: current,
			Link:    linkFor(cfg.Seed),
			OnStart: func(killAll func()) { t.Cleanup(killAll) },
		})
		rep = r
		return r, err
	})
	if rep != nil && rep.Faults[KindUpgrade] != cfg.Nodes {
		t.Errorf("%d of %d nodes were upgraded (faults %v)", rep.Faults[KindUpgrade], cfg.Nodes, rep.Faults)
	}
}

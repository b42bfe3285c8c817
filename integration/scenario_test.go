package integration

import (
	"context"
	"strings"
	"testing"
	"time"
)

// runScenario runs a fixed schedule: the form every bug the suite finds
// takes as a named regression test, so it keeps running whatever the
// seeds draw.
func runScenario(t *testing.T, seed int64, nodes int, steps []Step) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{
		Seed: seed, Nodes: nodes, Clients: 4, Keys: 5, Steps: steps,
		Dir: t.TempDir(), ResultsDir: resultsDir(),
		Replay: "go test -count=1 -v -run '" + t.Name() + "' ./integration/",
	})
	if err != nil {
		t.Fatalf("the run could not start: %v", err)
	}
	t.Logf("ops %v, faults %v, linearizable %s, probe %+v", rep.Ops, rep.Faults, rep.Linearizable, rep.Probe)
	if rep.Failed() {
		t.Errorf("%d violation(s):\n  %s\nartifacts: %s", len(rep.Violations), strings.Join(rep.Violations, "\n  "), rep.Artifacts)
	}
}

func scenarioStep(hold time.Duration, param int64, kinds ...Kind) Step {
	return Step{Kinds: kinds, Hold: hold, Quiet: 500 * time.Millisecond, Param: param}
}

// TestScenarioLeaderLossThenSnapshotCatchUp: the leader stops, comes back
// from disk as a follower, then a follower misses enough of the log to need
// a snapshot install while writes go on, then a node actor is restarted by
// its supervisor under message loss.
func TestScenarioLeaderLossThenSnapshotCatchUp(t *testing.T) {
	runScenario(t, 7001, 3, []Step{
		scenarioStep(time.Second, 1, KindStopLeader),
		scenarioStep(1500*time.Millisecond, 2, KindSnapshot),
		scenarioStep(time.Second, 3, KindCrash, KindDrop),
	})
}

package telemetry_test

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/telemetry"
)

// A metrics actor that stops while its node has not answered a poll ends
// that poll at once: nothing it started outlives it, even with a poll
// timeout far longer than the test.
func TestStoppedMetricsActorEndsItsPoll(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	system := testutil.NewSystem(t)
	asked := make(chan struct{}, 1)
	silent, err := system.Root.SpawnNamed(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actors.StatusRequest); ok {
			select {
			case asked <- struct{}{}:
			default:
			}
		}
	}), "silent-node")
	if err != nil {
		t.Fatal(err)
	}
	m, err := telemetry.NewMetrics(telemetry.Config{PollInterval: 10 * time.Millisecond, PollTimeout: time.Hour}, "g", "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pid := system.Root.Spawn(telemetry.Props(m, silent))
	select {
	case <-asked:
	case <-time.After(testutil.WaitFor):
		t.Fatal("the metrics actor never polled its node")
	}
	if err := system.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := system.Root.StopFuture(silent).Wait(); err != nil {
		t.Fatal(err)
	}
}

package testutil

import (
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// WaitFor bounds every wait of a test for something a group does
// (elections, replication, catch-up): long enough for elections on two busy
// cores under the race detector, short enough that a hang fails the test
// rather than the whole run.
const WaitFor = 30 * time.Second

// NewSystem returns a local ActorSystem that logs nothing, shut down when
// the test ends (after the test's own cleanups registered later, which run
// first).
func NewSystem(t testing.TB) *actor.ActorSystem {
	t.Helper()
	system := QuietSystem()
	t.Cleanup(system.Shutdown)
	return system
}

// QuietSystem returns a local ActorSystem that logs nothing; the caller
// shuts it down.
func QuietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
}

// VerifyNoLeaks fails the test if goroutines it started outlive it. The
// goroutines ignored are not the code under test's: protoactor's dead-letter
// throttle lives as long as the process, and the gRPC client connections
// and endpoint writers of protoactor remote outlive remote.Shutdown and keep
// redialling a peer that is gone.
func VerifyNoLeaks(t testing.TB) {
	t.Helper()
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
		goleak.IgnoreTopFunction("google.golang.org/grpc.(*addrConn).resetTransport"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		// protoactor remote's endpoint writers retry a peer that went away
		// (five times, two seconds apart) after their own remote shut down.
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/remote.(*endpointWriter).initialize"),
		// hashicorp/raft v1.8 never answers a barrier that entered its
		// apply queue just before Shutdown (the future has no shutdown
		// channel): the one goroutine that waits on it for a node's term
		// readiness stays, while every wait for it ends at the shutdown.
		goleak.IgnoreAnyFunction("github.com/protoraft/protoraft/raftactor.(*termReadiness).wait.func1"),
	}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// Eventually waits until cond holds, looking again every few milliseconds,
// and fails the test when WaitFor passes first. cond must be cheap and must
// not fail the test itself when it does not hold yet.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, WaitFor)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Logger returns a logger that writes to the test's log when
// PROTORAFT_TEST_LOG is set, and nil (no logging) otherwise, so failing
// runs can be read again with the nodes' own logs.
func Logger(t testing.TB, name string) *zap.Logger {
	if os.Getenv("PROTORAFT_TEST_LOG") == "" {
		return nil
	}
	return zaptest.NewLogger(t).With(zap.String("test_node", name))
}

package telemetry_test

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
	"github.com/protoraft/protoraft/telemetry"
)

// fastTimeouts keep in-process elections quick with headroom for -race on
// two busy cores (as in cluster's tests).
var fastTimeouts = raftactor.Timeouts{
	Heartbeat:   250 * time.Millisecond,
	Election:    250 * time.Millisecond,
	LeaderLease: 150 * time.Millisecond,
	Commit:      5 * time.Millisecond,
}

// waitFor bounds every wait: long enough for elections on a loaded machine
// under -race, short enough that a hang fails the test.
const waitFor = 30 * time.Second

// verifyNoLeaks fails the test if goroutines it started outlive it.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

func newSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	t.Cleanup(system.Shutdown)
	return system
}

func testLogger(t *testing.T, id string) *zap.Logger {
	if os.Getenv("PROTORAFT_TEST_LOG") == "" {
		return nil
	}
	return zaptest.NewLogger(t).With(zap.String("test_node", id))
}

// harness is an in-process group of voters n1..nN sharing one registry and
// one Faults.
type harness struct {
	t      *testing.T
	system *actor.ActorSystem
	reg    *prometheus.Registry
	faults *faults.Network
	dir    string
	cfgs   map[string]cluster.Config
	groups map[string]*cluster.Group
}

func newHarness(t *testing.T, n int) *harness {
	t.Helper()
	h := &harness{t: t, system: newSystem(t), reg: prometheus.NewRegistry(), faults: faults.NewNetwork(1),
		dir: t.TempDir(), cfgs: map[string]cluster.Config{}, groups: map[string]*cluster.Group{}}
	var boot []cluster.Peer
	for i := 1; i <= n; i++ {
		boot = append(boot, cluster.Peer{ID: fmt.Sprintf("n%d", i), Address: actors.LocalSystemAddress})
	}
	for _, p := range boot {
		cfg := cluster.Config{
			Node: raftactor.Config{
				Group:           "g",
				ID:              p.ID,
				DataDir:         filepath.Join(h.dir, p.ID),
				NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
				Timeouts:        fastTimeouts,
				RequestTimeout:  3 * time.Second,
				RPCTimeout:      500 * time.Millisecond,
				WALSegmentSize:  256 << 10,
				Faults:          h.faults,
				Logger:          testLogger(t, p.ID),
			},
			Bootstrap: boot,
			Telemetry: telemetry.Config{Registry: h.reg, PollInterval: 50 * time.Millisecond},
		}
		h.cfgs[p.ID] = cfg
		h.spawn(p.ID)
	}
	return h
}

func (h *harness) spawn(id string) *cluster.Group {
	h.t.Helper()
	g, err := cluster.Spawn(h.system, h.cfgs[id])
	if err != nil {
		h.t.Fatalf("spawn %s: %v", id, err)
	}
	h.groups[id] = g
	h.t.Cleanup(func() {
		if err := g.Stop(); err != nil {
			h.t.Errorf("stop %s: %v", id, err)
		}
	})
	return g
}

func (h *harness) ask(to *actor.PID, req any) any {
	h.t.Helper()
	res, err := h.system.Root.RequestFuture(to, req, 10*time.Second).Result()
	if err != nil {
		h.t.Fatalf("ask %s %T: %v", to, req, err)
	}
	return res
}

func meta() *actors.RequestMeta { return actors.NewMeta(3 * time.Second) }

// leader waits until one of the running groups says it leads.
func (h *harness) leader() *cluster.Group {
	h.t.Helper()
	var found *cluster.Group
	h.eventually("a leader", func() bool {
		for _, g := range h.groups {
			if h.ask(g.Node(), &actors.LeaderRequest{Meta: meta()}).(*actors.LeaderResponse).IsLeader {
				found = g
				return true
			}
		}
		return false
	})
	return found
}

// put writes key=value at the leader, retrying while leadership moves.
func (h *harness) put(key, value string) {
	h.t.Helper()
	h.eventually("write "+key, func() bool {
		wr := h.ask(h.leader().FrontDoor(), &actors.WriteRequest{Meta: meta(), Command: kvstore.Put(key, []byte(value))}).(*actors.WriteResponse)
		return wr.Error.Err() == nil
	})
}

func (h *harness) health(id string) *actors.HealthResponse {
	h.t.Helper()
	return h.ask(h.groups[id].Metrics(), &actors.HealthRequest{Meta: meta()}).(*actors.HealthResponse)
}

// eventually polls cond until it holds or waitFor passes.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// value returns the sum of the samples of metric name (counter, gauge, or
// a histogram's count) whose labels include want.
func value(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, lp := range m.Label {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			sum += sampleOf(mf.GetType(), m)
		}
	}
	return sum
}

func sampleOf(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func others(h *harness, id string) []string {
	var ids []string
	for k := range h.groups {
		if k != id {
			ids = append(ids, k)
		}
	}
	return ids
}

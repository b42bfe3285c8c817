package telemetry_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/telemetry"
)

// harness is an in-process group "g" of voters n1..nN (grouptest.Groups)
// whose metrics share one registry.
type harness struct {
	*grouptest.Groups
	t      *testing.T
	reg    *prometheus.Registry
	groups map[string]*cluster.Group
}

func newHarness(t *testing.T, n int) *harness {
	t.Helper()
	return newHarnessWith(t, n, nil)
}

// newHarnessWith is newHarness with every node's configuration changed by
// configure (when not nil).
func newHarnessWith(t *testing.T, n int, configure func(*cluster.Config)) *harness {
	t.Helper()
	h := &harness{Groups: grouptest.NewGroups(t), t: t, reg: prometheus.NewRegistry(), groups: map[string]*cluster.Group{}}
	_, groups := h.SpawnVoters("g", n, func(cfg *cluster.Config) {
		cfg.Telemetry = telemetry.Config{Registry: h.reg, PollInterval: 50 * time.Millisecond}
		if configure != nil {
			configure(cfg)
		}
	})
	for _, g := range groups {
		h.groups[g.Self().ID] = g
	}
	return h
}

func meta() *actors.RequestMeta { return actors.NewMeta(3 * time.Second) }

// leader waits until the groups in h.groups agree on a leader among them.
func (h *harness) leader() *cluster.Group {
	h.t.Helper()
	var gs []*cluster.Group
	for _, g := range h.groups {
		gs = append(gs, g)
	}
	return h.WaitLeader(gs...)
}

// put writes key=value at the leader, following leadership if it moves.
func (h *harness) put(key, value string) {
	h.t.Helper()
	h.Put(h.leader().FrontDoor(), key, value)
}

func (h *harness) health(id string) *actors.HealthResponse {
	h.t.Helper()
	return h.Ask(h.groups[id].Metrics(), &actors.HealthRequest{Meta: meta()}).(*actors.HealthResponse)
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

package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/telemetry"
)

// TestAPIServesMetricsAndHealth checks the operator endpoints the sample
// mounts: /metrics in Prometheus' text format with the writes counted, and
// /health in JSON.
func TestAPIServesMetricsAndHealth(t *testing.T) {
	reg := prometheus.NewRegistry()
	h, g, client := oneNode(t, func(cfg *cluster.Config) {
		cfg.Telemetry = telemetry.Config{Registry: reg, PollInterval: 50 * time.Millisecond}
	})
	srv := httptest.NewServer(newAPI(apiConfig{
		group: "kvtest", system: h.System, client: client,
		local:   map[string]*actor.PID{"n1": g.FrontDoor()},
		metrics: reg, health: map[string]*actor.PID{"n1": g.Metrics()},
	}))
	t.Cleanup(srv.Close)

	if status, body := do(t, "PUT", srv.URL+"/kv/a", "1"); status != http.StatusOK {
		t.Fatalf("put: %d %v", status, body)
	}
	testutil.Eventually(t, "/health says HEALTHY", func() bool {
		status, body := do(t, "GET", srv.URL+"/health", "")
		return status == http.StatusOK && body["status"] == "HEALTHY"
	})
	if status, body := do(t, "GET", srv.URL+"/health?node=n9", ""); status != http.StatusBadRequest || body["field"] != "node" {
		t.Fatalf("/health of a node not local: %d %v", status, body)
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, _ := io.ReadAll(resp.Body)
	text := string(raw)
	want := `protoraft_requests_total{code="OK",group="kvtest",node="n1",op="write",stage="node"}`
	if resp.StatusCode != http.StatusOK || !strings.Contains(text, want) || !strings.Contains(text, "# HELP protoraft_health_score") {
		t.Fatalf("/metrics: %s\n%s", resp.Status, text)
	}
}

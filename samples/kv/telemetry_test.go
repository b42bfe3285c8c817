package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
	"github.com/protoraft/protoraft/telemetry"
)

// TestAPIServesMetricsAndHealth checks the operator endpoints the sample
// mounts: /metrics in Prometheus' text format with the writes counted, and
// /health in JSON.
func TestAPIServesMetricsAndHealth(t *testing.T) {
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	reg := prometheus.NewRegistry()
	self := cluster.Peer{ID: "n1", Address: actors.LocalSystemAddress}
	g, err := cluster.Spawn(system, cluster.Config{
		Node: raftactor.Config{
			Group:           "kvtest",
			ID:              self.ID,
			DataDir:         t.TempDir(),
			NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
			Timeouts:        raftactor.Timeouts{Heartbeat: 100 * time.Millisecond, Election: 100 * time.Millisecond},
			Logger:          zaptest.NewLogger(t),
		},
		Bootstrap: []cluster.Peer{self},
		Telemetry: telemetry.Config{Registry: reg, PollInterval: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Stop(); err != nil {
			t.Error(err)
		}
	})
	client := cluster.NewClient(system, "kvtest", []cluster.Peer{self})
	if _, err := waitLeader(context.Background(), client, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newAPI(apiConfig{
		group: "kvtest", system: system, client: client,
		local:   map[string]*actor.PID{"n1": g.FrontDoor()},
		metrics: reg, health: map[string]*actor.PID{"n1": g.Metrics()},
	}))
	t.Cleanup(srv.Close)

	if status, body := do(t, "PUT", srv.URL+"/kv/a", "1"); status != http.StatusOK {
		t.Fatalf("put: %d %v", status, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body := do(t, "GET", srv.URL+"/health", "")
		if status == http.StatusOK && body["status"] == "HEALTHY" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health: %d %v", status, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
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

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/policies"
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
		authorizers: map[string]*policies.Authorizer{"n1": g.Authorizer()},
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

	// /status and /health speak one JSON: the messages of the protocol in
	// protojson, with the .proto files' field names and enum value names.
	var st actors.StatusResponse
	fields := getProtoJSON(t, srv.URL+"/status", &st)
	for _, name := range []string{"commit_index", "applied_index", "last_index", "last_snapshot_index", "configuration_index", "last_contact_unix_nano"} {
		if _, ok := fields[name]; !ok {
			t.Errorf("/status has no field %s: %v", name, fields)
		}
	}
	if node, _ := fields["node"].(map[string]any); node["suffrage"] != "VOTER" {
		t.Errorf("/status node %v, want suffrage VOTER", fields["node"])
	}
	if st.GetState() != "Leader" || st.GetNode().GetId() != "n1" || len(st.GetMembers()) != 1 || st.GetTerm() == 0 {
		t.Errorf("/status decoded to %v", &st)
	}
	var health actors.HealthResponse
	fields = getProtoJSON(t, srv.URL+"/health", &health)
	if fields["status"] != "HEALTHY" || health.GetStatus() != actors.HealthStatus_HEALTHY {
		t.Errorf("/health: %v", fields)
	}
	if _, ok := fields["reachable_voters"]; !ok {
		t.Errorf("/health has no field reachable_voters: %v", fields)
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

// getProtoJSON GETs url and decodes its body twice: with protojson into m,
// which refuses fields m does not have, and as plain JSON, returned, so the
// caller can look at the names on the wire.
func getProtoJSON(t *testing.T, url string, m proto.Message) map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, raw)
	}
	if err := protojson.Unmarshal(raw, m); err != nil {
		t.Fatalf("GET %s: not a %T in protojson: %v\n%s", url, m, err, raw)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, raw)
	}
	return fields
}

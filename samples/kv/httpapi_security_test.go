package main

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/policies"
	"github.com/protoraft/protoraft/telemetry"
)

// Tokens of the test policy.
const (
	adminToken   = "admin-token-0123456789"
	writerToken  = "writer-token-0123456789"
	monitorToken = "monitor-token-0123456789"
	unknownToken = "unknown-token-0123456789"
)

// testPolicy grants admin everything, writer the data path, monitor the
// operator endpoints served by the API itself.
func testPolicy() []byte {
	return []byte(`version: 1
roles:
  admin: ["*"]
  writer: [write, read_linearizable, read_lease, read_stale, leader, members, status]
  monitor: [metrics, health]
principals:
  - name: root
    token_sha256: ` + policies.HashToken(adminToken) + `
    roles: [admin]
  - name: app
    token_sha256: ` + policies.HashToken(writerToken) + `
    roles: [writer]
  - name: prometheus
    token_sha256: ` + policies.HashToken(monitorToken) + `
    roles: [monitor]
`)
}

// startSecured runs a one-node group under testPolicy, its audit records
// observed, and the API in front of it with a Client that has no
// credentials of its own.
func startSecured(t *testing.T) (*httptest.Server, *observer.ObservedLogs) {
	t.Helper()
	core, audit := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	h, g, _ := oneNode(t, func(cfg *cluster.Config) {
		cfg.Security = policies.Config{Policy: testPolicy(), AuditLogger: zap.New(core)}
		cfg.Telemetry = telemetry.Config{Registry: reg}
	})
	// oneNode's own Client is insecure and cannot be used: this one
	// presents nothing, so only the callers' tokens count.
	client := cluster.NewClient(h.System, "kvtest", []cluster.Peer{g.Self()})
	srv := httptest.NewServer(newAPI(apiConfig{
		group: "kvtest", system: h.System, client: client,
		local:   map[string]*actor.PID{"n1": g.FrontDoor()},
		metrics: reg, health: map[string]*actor.PID{"n1": g.Metrics()},
		authorizers: map[string]*policies.Authorizer{"n1": g.Authorizer()},
	}))
	t.Cleanup(srv.Close)
	return srv, audit
}

// Every request acts as its caller: the bearer token decides, never the
// process. No token or a wrong one is UNAUTHENTICATED (401 with a Bearer
// challenge), a token without the role PERMISSION_DENIED (403), on the
// data path, administration, local stale reads and status, and the
// API's own /metrics and /health alike.
func TestAPIActsAsTheCaller(t *testing.T) {
	srv, audit := startSecured(t)
	bearer := func(tok string) string { return "Bearer " + tok }
	cases := []struct {
		name, method, path, auth, body string
		status                         int
		code                           string
	}{
		{"put without token", "PUT", "/kv/a", "", "1", 401, "UNAUTHENTICATED"},
		{"put with a wrong token", "PUT", "/kv/a", bearer(unknownToken), "1", 401, "UNAUTHENTICATED"},
		{"put with another scheme", "PUT", "/kv/a", "Basic " + writerToken, "1", 401, "UNAUTHENTICATED"},
		{"put as monitor", "PUT", "/kv/a", bearer(monitorToken), "1", 403, "PERMISSION_DENIED"},
		{"put as writer", "PUT", "/kv/a", bearer(writerToken), "1", 200, ""},
		{"put, scheme in lower case", "PUT", "/kv/b", "bearer " + writerToken, "1", 200, ""},
		{"get without token", "GET", "/kv/a", "", "", 401, "UNAUTHENTICATED"},
		{"get as writer", "GET", "/kv/a", bearer(writerToken), "", 200, ""},
		{"lease get as writer", "GET", "/kv/a?consistency=lease", bearer(writerToken), "", 200, ""},
		{"local stale get without token", "GET", "/kv/a?consistency=stale&node=n1", "", "", 401, "UNAUTHENTICATED"},
		{"local stale get as monitor", "GET", "/kv/a?consistency=stale&node=n1", bearer(monitorToken), "", 403, "PERMISSION_DENIED"},
		{"local stale get as writer", "GET", "/kv/a?consistency=stale&node=n1", bearer(writerToken), "", 200, ""},
		{"list without token", "GET", "/kv", "", "", 401, "UNAUTHENTICATED"},
		{"delete as monitor", "DELETE", "/kv/b", bearer(monitorToken), "", 403, "PERMISSION_DENIED"},
		{"status without token", "GET", "/status", "", "", 401, "UNAUTHENTICATED"},
		{"local status without token", "GET", "/status?node=n1", "", "", 401, "UNAUTHENTICATED"},
		{"local status as writer", "GET", "/status?node=n1", bearer(writerToken), "", 200, ""},
		{"leader without token", "GET", "/leader", "", "", 401, "UNAUTHENTICATED"},
		{"members as monitor", "GET", "/members", bearer(monitorToken), "", 403, "PERMISSION_DENIED"},
		{"transfer without token", "POST", "/leader/transfer", "", "", 401, "UNAUTHENTICATED"},
		{"transfer as writer", "POST", "/leader/transfer", bearer(writerToken), "", 403, "PERMISSION_DENIED"},
		{"add member with a wrong token", "POST", "/members", bearer(unknownToken), `{"id":"n2","address":"127.0.0.1:7002"}`, 401, "UNAUTHENTICATED"},
		{"remove member as writer", "DELETE", "/members/n1", bearer(writerToken), "", 403, "PERMISSION_DENIED"},
		// Allowed, and refused by the node itself: the last voter stays.
		{"remove member as admin", "DELETE", "/members/n1", bearer(adminToken), "", 400, "INVALID_ARGUMENT"},
		{"metrics without token", "GET", "/metrics", "", "", 401, "UNAUTHENTICATED"},
		{"metrics with a wrong token", "GET", "/metrics", bearer(unknownToken), "", 401, "UNAUTHENTICATED"},
		{"metrics as writer", "GET", "/metrics", bearer(writerToken), "", 403, "PERMISSION_DENIED"},
		{"metrics as monitor", "GET", "/metrics", bearer(monitorToken), "", 200, ""},
		{"health without token", "GET", "/health", "", "", 401, "UNAUTHENTICATED"},
		{"health as writer", "GET", "/health?node=n1", bearer(writerToken), "", 403, "PERMISSION_DENIED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := call(t, tc.method, srv.URL+tc.path, tc.auth, tc.body)
			if resp.StatusCode != tc.status || (tc.code != "" && body["code"] != tc.code) {
				t.Fatalf("%s %s: %d %v, want %d %s", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.code)
			}
			if got := resp.Header.Get("WWW-Authenticate"); (tc.status == 401) != strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate %q with status %d", got, tc.status)
			}
		})
	}
	// /health as monitor is decided by the node's health (200 or 503),
	// never refused.
	if resp, body := call(t, "GET", srv.URL+"/health", bearer(monitorToken), ""); resp.StatusCode == 401 || resp.StatusCode == 403 {
		t.Errorf("health as monitor: %d %v", resp.StatusCode, body)
	}

	// The administrative decisions were audited with their callers.
	want := map[string]string{"root/remove": "allowed", "app/remove": "denied", "app/transfer_leadership": "denied",
		"unauthenticated/transfer_leadership": "denied", "unauthenticated/add_voter": "denied"}
	for _, e := range audit.FilterMessage("audit").All() {
		f := e.ContextMap()
		key := f["principal"].(string) + "/" + f["operation"].(string)
		if res, ok := want[key]; ok && res == f["result"] {
			delete(want, key)
		}
	}
	if len(want) != 0 {
		t.Errorf("no audit records for %v", want)
	}
}

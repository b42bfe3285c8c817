package telemetry_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor/kvstore"
	"github.com/protoraft/protoraft/telemetry"
)

// wantTypes is every protoraft_* family and its type: a family missing
// here, or exposed with another type, fails the exposition test.
var wantTypes = map[string]string{
	"protoraft_requests_total":                        "COUNTER",
	"protoraft_request_duration_seconds":              "HISTOGRAM",
	"protoraft_leader_changes_total":                  "COUNTER",
	"protoraft_election_duration_seconds":             "HISTOGRAM",
	"protoraft_leaderless_seconds":                    "GAUGE",
	"protoraft_term":                                  "GAUGE",
	"protoraft_commit_index":                          "GAUGE",
	"protoraft_applied_index":                         "GAUGE",
	"protoraft_last_index":                            "GAUGE",
	"protoraft_is_leader":                             "GAUGE",
	"protoraft_replication_lag_entries":               "GAUGE",
	"protoraft_fsm_apply_duration_seconds":            "HISTOGRAM",
	"protoraft_fsm_applied_entries_total":             "COUNTER",
	"protoraft_snapshots_total":                       "COUNTER",
	"protoraft_snapshot_size_bytes":                   "GAUGE",
	"protoraft_snapshot_duration_seconds":             "HISTOGRAM",
	"protoraft_snapshot_restores_total":               "COUNTER",
	"protoraft_storage_errors_total":                  "COUNTER",
	"protoraft_limiter_refusals_total":                "COUNTER",
	"protoraft_authorization_denials_total":           "COUNTER",
	"protoraft_health_score":                          "GAUGE",
	"protoraft_health_status":                         "GAUGE",
	"protoraft_failure_tolerance":                     "GAUGE",
	"protoraft_voters":                                "GAUGE",
	"protoraft_reachable_voters":                      "GAUGE",
	"protoraft_read_confirmation_waits_total":         "COUNTER",
	"protoraft_read_confirmation_rounds_total":        "COUNTER",
	"protoraft_read_confirmation_round_seconds_total": "COUNTER",
	"protoraft_read_confirmation_probes_total":        "COUNTER",
	"protoraft_read_confirmation_hedges_total":        "COUNTER",
}

func TestMetricsMoveWithTrafficAndLeaderChanges(t *testing.T) {
	h := newHarness(t, 3)
	leader := h.leader()
	lid := leader.Self().ID
	at := func(id string, kv ...string) map[string]string {
		return labels(append([]string{"group", "g", "node", id}, kv...)...)
	}

	// Writes: counted by op and code where they ended, timed, applied on
	// every node.
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		h.put(k, "v")
	}
	testutil.Eventually(t, "write counters and histograms", func() bool {
		return value(t, h.reg, "protoraft_requests_total", at(lid, "stage", "node", "op", "write", "code", "OK")) >= 5 &&
			value(t, h.reg, "protoraft_request_duration_seconds", at(lid, "stage", "node", "op", "write")) >= 5
	})
	for id := range h.groups {
		testutil.Eventually(t, "fsm metrics on "+id, func() bool {
			return value(t, h.reg, "protoraft_fsm_applied_entries_total", at(id)) >= 5 &&
				value(t, h.reg, "protoraft_fsm_apply_duration_seconds", at(id)) >= 1
		})
	}
	// The polls of the metrics actors never count as traffic.
	if n := value(t, h.reg, "protoraft_requests_total", labels("op", "status")); n != 0 {
		t.Fatalf("%v status requests counted; the telemetry polls must not be", n)
	}

	// Polled gauges: the leader's view and each follower's lag.
	testutil.Eventually(t, "polled gauges", func() bool {
		return value(t, h.reg, "protoraft_is_leader", at(lid)) == 1 &&
			value(t, h.reg, "protoraft_term", at(lid)) >= 1 &&
			value(t, h.reg, "protoraft_commit_index", at(lid)) >= 5 &&
			value(t, h.reg, "protoraft_applied_index", at(lid)) >= 5 &&
			value(t, h.reg, "protoraft_last_index", at(lid)) >= 5 &&
			value(t, h.reg, "protoraft_voters", at(lid)) == 3 &&
			value(t, h.reg, "protoraft_failure_tolerance", at(lid)) == 1 &&
			value(t, h.reg, "protoraft_health_score", at(lid)) == 100 &&
			value(t, h.reg, "protoraft_health_status", at(lid, "status", "healthy")) == 1
	})
	for _, f := range others(h, lid) {
		testutil.Eventually(t, "replication lag of "+f, func() bool {
			return seriesCount(t, h, "protoraft_replication_lag_entries", at(lid, "follower", f)) == 1
		})
	}

	// Linearizable reads: the leader's confirmations, as its status counts
	// them, polled into counters.
	for range 5 {
		rr := h.Ask(leader.FrontDoor(), &actors.ReadRequest{Meta: meta(), Query: kvstore.Get("a"), Consistency: actors.Consistency_LINEARIZABLE}).(*actors.ReadResponse)
		if rr.Error.Err() != nil {
			t.Fatalf("linearizable read: %v", rr.Error)
		}
	}
	testutil.Eventually(t, "read confirmation counters", func() bool {
		return value(t, h.reg, "protoraft_read_confirmation_waits_total", at(lid)) >= 5 &&
			value(t, h.reg, "protoraft_read_confirmation_rounds_total", at(lid)) >= 1 &&
			value(t, h.reg, "protoraft_read_confirmation_round_seconds_total", at(lid)) > 0 &&
			value(t, h.reg, "protoraft_read_confirmation_probes_total", at(lid)) >= 1
	})

	// Snapshots: counted, sized, timed.
	if sr := h.Ask(leader.Node(), &actors.SnapshotRequest{Meta: meta()}).(*actors.SnapshotResponse); sr.Error.Err() != nil {
		t.Fatalf("snapshot: %v", sr.Error)
	}
	testutil.Eventually(t, "snapshot metrics", func() bool {
		return value(t, h.reg, "protoraft_snapshots_total", at(lid)) >= 1 &&
			value(t, h.reg, "protoraft_snapshot_size_bytes", at(lid)) > 0 &&
			value(t, h.reg, "protoraft_snapshot_duration_seconds", at(lid)) >= 1
	})

	// Refusals and denials, as the limiter and the authorizer tell them.
	h.System.Root.Send(leader.Metrics(), &actors.Outcomes{List: []actors.Outcome{
		{Stage: "limiter", Op: "write", Code: actors.Code_RESOURCE_EXHAUSTED, Detail: "limits.write.rps"},
		{Stage: "limiter", Op: "write", Code: actors.Code_RESOURCE_EXHAUSTED},
	}})
	h.System.Root.Send(leader.Metrics(), &actors.Outcome{Stage: "authorizer", Op: "write", Code: actors.Code_PERMISSION_DENIED})
	h.System.Root.Send(leader.Metrics(), &actors.Outcome{Stage: "authorizer", Op: "status", Code: actors.Code_UNAUTHENTICATED})
	testutil.Eventually(t, "refusal and denial counters", func() bool {
		return value(t, h.reg, "protoraft_limiter_refusals_total", at(lid, "reason", "limits.write.rps")) == 1 &&
			value(t, h.reg, "protoraft_limiter_refusals_total", at(lid, "reason", "unknown")) == 1 &&
			value(t, h.reg, "protoraft_authorization_denials_total", at(lid, "op", "write", "code", "PERMISSION_DENIED")) == 1 &&
			value(t, h.reg, "protoraft_authorization_denials_total", at(lid, "op", "status", "code", "UNAUTHENTICATED")) == 1 &&
			value(t, h.reg, "protoraft_requests_total", at(lid, "stage", "limiter", "code", "RESOURCE_EXHAUSTED")) == 2
	})

	// Every family is there, with HELP and its type, before the leader
	// goes (election metrics are checked after).
	checkExposition(t, h)

	// Stop the leader: the survivors see a new leader after a spell
	// without one, and the stopped node's series go with it.
	changes, elections := 0.0, 0.0
	for _, f := range others(h, lid) {
		changes += value(t, h.reg, "protoraft_leader_changes_total", at(f))
		elections += value(t, h.reg, "protoraft_election_duration_seconds", at(f))
	}
	if err := leader.Stop(); err != nil {
		t.Fatal(err)
	}
	delete(h.groups, lid)
	next := h.leader().Self().ID
	testutil.Eventually(t, "leader change and election metrics on the survivors", func() bool {
		c, e := 0.0, 0.0
		for _, f := range others(h, lid) {
			c += value(t, h.reg, "protoraft_leader_changes_total", at(f))
			e += value(t, h.reg, "protoraft_election_duration_seconds", at(f))
		}
		return c >= changes+2 && e > elections
	})
	if n := seriesCount(t, h, "", at(lid)); n != 0 {
		t.Fatalf("the stopped node %s left %d series behind", lid, n)
	}
	// One voter of three down: no failure tolerance left.
	for id := range h.groups {
		testutil.Eventually(t, "failure tolerance 0 on "+id, func() bool {
			hr := h.health(id)
			return hr.FailureTolerance == 0 && hr.Status == actors.HealthStatus_DEGRADED && hr.ReachableVoters == 2
		})
	}
	if value(t, h.reg, "protoraft_is_leader", at(next)) != 1 {
		testutil.Eventually(t, "is_leader of "+next, func() bool { return value(t, h.reg, "protoraft_is_leader", at(next)) == 1 })
	}
}

// seriesCount counts the series of name (every family when empty) whose
// labels include want.
func seriesCount(t *testing.T, h *harness, name string, want map[string]string) int {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if name != "" && mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.Metric {
			got := map[string]string{}
			for _, lp := range m.Label {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue metrics
				}
			}
			n++
		}
	}
	return n
}

// checkExposition scrapes /metrics as Prometheus would, parses it, checks
// every family's HELP, type and labels, and runs `promtool check metrics`
// on it when promtool is installed.
func checkExposition(t *testing.T, h *harness) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	telemetry.Handler(h.reg).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.Bytes()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	for name, want := range wantTypes {
		mf, ok := families[name]
		if !ok {
			t.Errorf("family %s missing", name)
			continue
		}
		if mf.GetType().String() != want {
			t.Errorf("%s is a %s, want %s", name, mf.GetType(), want)
		}
	}
	for name, mf := range families {
		if !strings.HasPrefix(name, "protoraft_") {
			t.Errorf("family %s lacks the protoraft_ prefix", name)
		}
		if _, known := wantTypes[name]; !known {
			t.Errorf("family %s is not in wantTypes", name)
		}
		if strings.TrimSpace(mf.GetHelp()) == "" {
			t.Errorf("family %s has no HELP", name)
		}
		for _, m := range mf.Metric {
			got := map[string]bool{}
			for _, lp := range m.Label {
				got[lp.GetName()] = true
			}
			if !got["group"] || !got["node"] {
				t.Errorf("a series of %s lacks the group or node label: %v", name, m.Label)
			}
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Logf("SKIPPED promtool check: promtool not installed (Debian package prometheus; .ci/run installs it)")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	t.Logf("promtool check metrics: clean (%d families)%s", len(families), out)
}

func TestPromtoolIsAvailable(t *testing.T) {
	// The exposition test runs promtool only when it is installed; this
	// test makes its absence visible as a skip rather than silence.
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed (Debian package prometheus; .ci/run installs it): `promtool check metrics` was not run")
	}
}

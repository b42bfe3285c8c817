package telemetry_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The alerting rules and the dashboard of telemetry/monitoring name only
// metrics this package exports (wantTypes), and the rules pass promtool's
// check and their unit tests (alerts_test.yml).

var metricName = regexp.MustCompile(`protoraft_[a-z_]+`)

// checkNames fails for every protoraft_* name in text that is not one of
// the exported families (a histogram's _bucket, _sum and _count series
// included).
func checkNames(t *testing.T, what, text string) {
	t.Helper()
	names := metricName.FindAllString(text, -1)
	if len(names) == 0 {
		t.Fatalf("%s names no protoraft_* metric", what)
	}
	for _, n := range names {
		base := n
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(n, suffix); ok && wantTypes[b] == "HISTOGRAM" {
				base = b
			}
		}
		if _, ok := wantTypes[base]; !ok {
			t.Errorf("%s names %s, which telemetry does not export", what, n)
		}
	}
}

func TestAlertRules(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join("monitoring", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	checkNames(t, "alerts.yml", string(rules))
	for _, alert := range []string{"ProtoraftNoLeader", "ProtoraftFailureToleranceZero", "ProtoraftApplyLag",
		"ProtoraftLimiterRefusals", "ProtoraftStorageErrors"} {
		if !strings.Contains(string(rules), "alert: "+alert+"\n") {
			t.Errorf("alerts.yml has no %s", alert)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; .ci/run installs it): the rules were not checked")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "monitoring"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}

func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("monitoring", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard.json does not parse: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard: title %q, uid %q, %d panels", d.Title, d.UID, len(d.Panels))
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] || p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("panel %d %q: a duplicate ID, no title or no query", p.ID, p.Title)
		}
		ids[p.ID] = true
		for _, q := range p.Targets {
			if strings.Count(q.Expr, "(") != strings.Count(q.Expr, ")") {
				t.Errorf("panel %q query %s: unbalanced parentheses: %s", p.Title, q.RefID, q.Expr)
			}
			checkNames(t, "panel "+p.Title, q.Expr)
		}
	}
}

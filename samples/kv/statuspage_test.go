package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/policies"
	"github.com/protoraft/protoraft/telemetry"
)

// statusGroup runs a three-node group under testPolicy in this process
// and returns the API in front of it (every node local, as in the
// one-process sample), with an admin Client of the group.
func statusGroup(t *testing.T) (http.Handler, *cluster.Client) {
	t.Helper()
	h := grouptest.NewGroups(t)
	reg := prometheus.NewRegistry()
	_, groups := h.SpawnVoters("kvtest", 3, func(cfg *cluster.Config) {
		cfg.Security = policies.Config{Policy: testPolicy()}
		cfg.Telemetry = telemetry.Config{Registry: reg}
	})
	peers := grouptest.Peers("n1", "n2", "n3")
	local, health, authz := map[string]*actor.PID{}, map[string]*actor.PID{}, map[string]*policies.Authorizer{}
	for _, g := range groups {
		id := g.Self().ID
		local[id], health[id], authz[id] = g.FrontDoor(), g.Metrics(), g.Authorizer()
	}
	api := newAPI(apiConfig{group: "kvtest", system: h.System, client: cluster.NewClient(h.System, "kvtest", peers),
		local: local, metrics: reg, health: health, authorizers: authz})
	admin := cluster.NewClient(h.System, "kvtest", peers, cluster.WithCredentials(adminToken))
	// The group's doors want a token, even to say who leads: wait as admin.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := admin.Leader(ctx); err != nil {
		t.Fatal(err)
	}
	return api, admin
}

// GET /cluster is under the API's auth like every endpoint; a caller who
// may see members and status but not health gets the rows without health.
func TestClusterOverviewIsUnderAuth(t *testing.T) {
	api, admin := statusGroup(t)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	leader, err := admin.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string) (int, clusterJSON) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/cluster", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body clusterJSON
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Errorf("GET /cluster without a token: %d", code)
	}
	if code, _ := get(monitorToken); code != http.StatusForbidden {
		t.Errorf("GET /cluster as monitor (no members): %d", code)
	}
	code, body := get(adminToken)
	if code != http.StatusOK || body.Leader != leader.GetLeader().GetId() || len(body.Members) != 3 || body.HealthForbidden {
		t.Fatalf("GET /cluster as admin: %d %+v", code, body)
	}
	for _, m := range body.Members {
		if m.Error != nil || m.Lag == nil || m.Health == "" || m.Term != body.Term {
			t.Errorf("row of %s: %+v", m.ID, m)
		}
	}
	code, body = get(writerToken)
	if code != http.StatusOK || !body.HealthForbidden || len(body.Members) != 3 || body.Members[0].Health != "" {
		t.Errorf("GET /cluster as writer (no health): %d %+v", code, body)
	}
	// The page itself holds nothing and is served to anyone, with a
	// policy that keeps it to its own origin.
	resp, err := http.Get(srv.URL + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "connect-src 'self'") {
		t.Errorf("GET /ui: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
}

// chromium finds a Chromium or Chrome to run headless: PROTORAFT_CHROMIUM,
// else the first of the usual names on PATH; "" when there is none.
func chromium() string {
	if p := os.Getenv("PROTORAFT_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// renderedDOM loads url in a headless browser, lets the page's scripts run
// for five seconds of the browser's virtual time (the page polls every
// second, so it draws several answers) and returns the DOM they left.
func renderedDOM(t *testing.T, browser, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--disable-extensions", "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget=5000", "--dump-dom", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s --dump-dom: %v\n%s", browser, err, stderr.String())
	}
	return string(out)
}

var (
	rowRE     = regexp.MustCompile(`<tr data-node="(n\d)"`)
	leaderRE  = regexp.MustCompile(`<tr data-node="(n\d)" class="leader">`)
	summaryRE = regexp.MustCompile(`<p id="summary" data-leader="([^"]*)">leader (n\d), term \d+`)
)

// The status page, rendered by a real browser, lists the three members
// and marks the leader; when leadership moves while the page is open, its
// next refresh shows the new leader and the page notes the change.
func TestStatusPageInABrowser(t *testing.T) {
	browser := chromium()
	if browser == "" {
		t.Skip("no chromium found (Debian: apt-get install chromium; or set PROTORAFT_CHROMIUM): the status page's browser test is skipped")
	}
	api, admin := statusGroup(t)
	var polls atomic.Int32
	var moveLeadership atomic.Bool
	moved := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Leadership moves between the page's first and second poll, so
		// the page has drawn the old leader before it sees the new one.
		if r.URL.Path == "/cluster" && polls.Add(1) == 2 && moveLeadership.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			resp, err := admin.TransferLeadership(ctx, "")
			if err != nil {
				t.Errorf("transfer leadership: %v", err)
				close(moved)
			} else {
				moved <- resp.GetLeader().GetId()
			}
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lr, err := admin.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := lr.GetLeader().GetId()
	page := srv.URL + "/ui#token=" + adminToken

	dom := renderedDOM(t, browser, page)
	if rows := rowRE.FindAllStringSubmatch(dom, -1); len(rows) != 3 || rows[0][1] != "n1" || rows[1][1] != "n2" || rows[2][1] != "n3" {
		t.Fatalf("the page lists %v, want n1, n2, n3:\n%s", rows, dom)
	}
	if m := leaderRE.FindStringSubmatch(dom); m == nil || m[1] != first {
		t.Errorf("the page marks %v as leader, want %s:\n%s", m, first, dom)
	}
	if m := summaryRE.FindStringSubmatch(dom); m == nil || m[1] != first || m[2] != first {
		t.Errorf("the page's summary names %v, want %s:\n%s", m, first, dom)
	}
	if strings.Contains(dom, adminToken) {
		t.Error("the token is in the rendered page")
	}

	polls.Store(0)
	moveLeadership.Store(true)
	dom = renderedDOM(t, browser, page)
	next, ok := <-moved
	if !ok {
		t.FailNow()
	}
	if next == first {
		t.Fatalf("leadership stayed with %s", first)
	}
	if m := summaryRE.FindStringSubmatch(dom); m == nil || m[1] != next {
		t.Errorf("after the move to %s the summary names %v:\n%s", next, m, dom)
	}
	if m := leaderRE.FindStringSubmatch(dom); m == nil || m[1] != next {
		t.Errorf("after the move to %s the page marks %v:\n%s", next, m, dom)
	}
	if want := "leader changed from " + first + " to " + next; !strings.Contains(dom, want) {
		t.Errorf("the page does not say %q:\n%s", want, dom)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// TestErrorMapping checks that every protoraft code leaves the API with its
// HTTP status and a body carrying the code and the details a client needs
// to act on it.
func TestErrorMapping(t *testing.T) {
	leader := &actors.Server{Id: "n2", Address: "127.0.0.1:7002/protoraft/kv/n2/node"}
	cases := []struct {
		name       string
		err        error
		status     int
		code       string
		field      string
		leader     string
		retryMS    int64
		retryAfter string
	}{
		{"not leader", actors.NotLeader(leader), 421, "NOT_LEADER", "", "n2", 0, "1"},
		{"not leader, no hint", actors.NotLeader(nil), 421, "NOT_LEADER", "", "", 0, "1"},
		{"unauthenticated", actors.Errorf(actors.Code_UNAUTHENTICATED, "no token"), 401, "UNAUTHENTICATED", "", "", 0, ""},
		{"permission denied", actors.Errorf(actors.Code_PERMISSION_DENIED, "no"), 403, "PERMISSION_DENIED", "", "", 0, ""},
		{"resource exhausted", actors.ResourceExhausted("rate", 1500*time.Millisecond, "slow down"), 429, "RESOURCE_EXHAUSTED", "", "", 1500, "2"},
		{"invalid argument", actors.InvalidArgument("key", "bad"), 400, "INVALID_ARGUMENT", "key", "", 0, ""},
		{"deadline exceeded", actors.DeadlineExceeded("write"), 504, "DEADLINE_EXCEEDED", "", "", 0, ""},
		{"unavailable", actors.Errorf(actors.Code_UNAVAILABLE, "no quorum"), 503, "UNAVAILABLE", "", "", 0, "1"},
		{"internal", actors.Errorf(actors.Code_INTERNAL, "disk"), 500, "INTERNAL", "", "", 0, ""},
		{"session expired", actors.SessionExpired("gone"), 409, "SESSION_EXPIRED", "", "", 0, ""},
		{"wrapped", errors.Join(errors.New("context"), actors.InvalidArgument("value", "big")), 400, "INVALID_ARGUMENT", "value", "", 0, ""},
		{"context deadline", context.DeadlineExceeded, 504, "DEADLINE_EXCEEDED", "", "", 0, ""},
		{"foreign error", errors.New("boom"), 500, "INTERNAL", "", "", 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			writeError(rec, tc.err)
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d", rec.Code, tc.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := rec.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			var body errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if body.Code != tc.code || body.Field != tc.field || body.RetryAfterMS != tc.retryMS {
				t.Errorf("body %+v, want code %s field %q retry_after_ms %d", body, tc.code, tc.field, tc.retryMS)
			}
			if gotLeader := ""; body.Leader != nil {
				gotLeader = body.Leader.ID
				if gotLeader != tc.leader {
					t.Errorf("leader %q, want %q", gotLeader, tc.leader)
				}
			} else if tc.leader != "" {
				t.Errorf("no leader in the body, want %q", tc.leader)
			}
		})
	}
}

// oneNode runs a one-node group "kvtest" (grouptest.Groups) with its
// config changed by configure (when not nil), and returns it, once it
// leads, with a Client of it.
func oneNode(t *testing.T, configure func(*cluster.Config)) (*grouptest.Groups, *cluster.Group, *cluster.Client) {
	t.Helper()
	h := grouptest.NewGroups(t)
	cfg := h.Config("kvtest", "n1", grouptest.Peers("n1"))
	if configure != nil {
		configure(&cfg)
	}
	g := h.Spawn(cfg)
	client := cluster.NewClient(h.System, "kvtest", []cluster.Peer{g.Self()})
	if _, err := waitGroupLeader(context.Background(), g, testutil.WaitFor); err != nil {
		t.Fatal(err)
	}
	return h, g, client
}

// startOneNode runs a one-node group and returns the API in front of it,
// ready: the node leads.
func startOneNode(t *testing.T) *httptest.Server {
	t.Helper()
	h, g, client := oneNode(t, nil)
	srv := httptest.NewServer(newAPI(apiConfig{
		group: "kvtest", system: h.System, client: client,
		local: map[string]*actor.PID{"n1": g.FrontDoor()},
	}))
	t.Cleanup(srv.Close)
	return srv
}

// do sends one request and decodes the JSON answer.
func do(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: %s: body is not a JSON object: %q", method, url, resp.Status, raw)
	}
	return resp.StatusCode, m
}

// TestAPIBadInput checks that the API refuses bad input with 400 naming
// the field, and unknown keys and routes with 404, before anything reaches
// Raft where it can be helped.
func TestAPIBadInput(t *testing.T) {
	srv := startOneNode(t)
	longKey := strings.Repeat("k", kvstore.MaxKeySize+1)
	bigValue := strings.Repeat("v", kvstore.MaxValueSize+1)
	cases := []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"empty key put", "PUT", "/kv/", "x", 400, "INVALID_ARGUMENT", "key"},
		{"empty key get", "GET", "/kv/", "", 400, "INVALID_ARGUMENT", "key"},
		{"empty key delete", "DELETE", "/kv/", "", 400, "INVALID_ARGUMENT", "key"},
		{"oversized key", "PUT", "/kv/" + longKey, "x", 400, "INVALID_ARGUMENT", "key"},
		{"oversized key get", "GET", "/kv/" + longKey, "", 400, "INVALID_ARGUMENT", "key"},
		{"empty value", "PUT", "/kv/a", "", 400, "INVALID_ARGUMENT", "value"},
		{"oversized value", "PUT", "/kv/a", bigValue, 400, "INVALID_ARGUMENT", "value"},
		{"unknown consistency", "GET", "/kv/a?consistency=eventual", "", 400, "INVALID_ARGUMENT", "consistency"},
		{"node not local", "GET", "/kv/a?consistency=stale&node=n9", "", 400, "INVALID_ARGUMENT", "node"},
		{"status of a node not local", "GET", "/status?node=n9", "", 400, "INVALID_ARGUMENT", "node"},
		{"list limit", "GET", "/kv?limit=0", "", 400, "INVALID_ARGUMENT", "limit"},
		{"list prefix", "GET", "/kv?prefix=" + longKey, "", 400, "INVALID_ARGUMENT", "prefix"},
		{"unknown key", "GET", "/kv/missing", "", 404, "NOT_FOUND", ""},
		{"unknown key stale", "GET", "/kv/missing?consistency=stale&node=n1", "", 404, "NOT_FOUND", ""},
		{"unknown key delete", "DELETE", "/kv/missing", "", 404, "NOT_FOUND", ""},
		{"unknown route", "GET", "/nope", "", 404, "NOT_FOUND", ""},
		{"unknown method", "POST", "/kv/a", "x", 405, "METHOD_NOT_ALLOWED", ""},
		{"unknown method on status", "DELETE", "/status", "", 405, "METHOD_NOT_ALLOWED", ""},
		{"malformed JSON", "POST", "/members", `{"id":`, 400, "INVALID_ARGUMENT", "body"},
		{"empty JSON body", "POST", "/members", ``, 400, "INVALID_ARGUMENT", "body"},
		{"unknown JSON field", "POST", "/members", `{"id":"n2","adress":"127.0.0.1:7002"}`, 400, "INVALID_ARGUMENT", "body"},
		{"two JSON values", "POST", "/members", `{"id":"n2","address":"127.0.0.1:7002"}{}`, 400, "INVALID_ARGUMENT", "body"},
		{"bad member id", "POST", "/members", `{"id":"n 2","address":"127.0.0.1:7002"}`, 400, "INVALID_ARGUMENT", "id"},
		{"missing member address", "POST", "/members", `{"id":"n2"}`, 400, "INVALID_ARGUMENT", "address"},
		{"wildcard member address", "POST", "/members", `{"id":"n2","address":"0.0.0.0:7002"}`, 400, "INVALID_ARGUMENT", "address"},
		{"bad suffrage", "POST", "/members", `{"id":"n2","address":"127.0.0.1:7002","suffrage":"observer"}`, 400, "INVALID_ARGUMENT", "suffrage"},
		{"bad member id remove", "DELETE", "/members/-x", "", 400, "INVALID_ARGUMENT", "id"},
		{"malformed transfer", "POST", "/leader/transfer", `[`, 400, "INVALID_ARGUMENT", "body"},
		{"bad transfer id", "POST", "/leader/transfer", `{"id":"a/b"}`, 400, "INVALID_ARGUMENT", "id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t, tc.method, srv.URL+tc.path, tc.body)
			if status != tc.status || body["code"] != tc.code {
				t.Fatalf("%s %s: %d %v, want %d %s", tc.method, tc.path, status, body, tc.status, tc.code)
			}
			if tc.field != "" && body["field"] != tc.field {
				t.Errorf("field %v, want %q (body %v)", body["field"], tc.field, body)
			}
		})
	}
}

// TestAPIRoundTrip walks the happy path of every endpoint a one-node group
// can serve.
func TestAPIRoundTrip(t *testing.T) {
	srv := startOneNode(t)

	status, body := do(t, "PUT", srv.URL+"/kv/dir/greeting", "hello")
	if status != 200 || body["created"] != true || body["index"] == nil || body["revision"] != body["index"] {
		t.Fatalf("PUT: %d %v", status, body)
	}
	rev := body["revision"]
	for _, c := range []string{"", "?consistency=linearizable", "?consistency=lease", "?consistency=stale", "?consistency=STALE&node=n1"} {
		status, body = do(t, "GET", srv.URL+"/kv/dir/greeting"+c, "")
		if status != 200 || body["value"] != "hello" || body["key"] != "dir/greeting" || body["revision"] != rev || body["applied_index"] == nil {
			t.Errorf("GET %s: %d %v", c, status, body)
		}
	}
	status, body = do(t, "PUT", srv.URL+"/kv/bin", "\xff\xfe")
	if status != 200 || body["created"] != true {
		t.Fatalf("PUT binary: %d %v", status, body)
	}
	status, body = do(t, "GET", srv.URL+"/kv/bin", "")
	if status != 200 || body["value_base64"] != "//4=" {
		t.Errorf("GET binary: %d %v", status, body)
	}
	status, body = do(t, "GET", srv.URL+"/kv?prefix=dir/", "")
	if entries, _ := body["entries"].([]any); status != 200 || len(entries) != 1 {
		t.Errorf("list: %d %v", status, body)
	}
	status, body = do(t, "DELETE", srv.URL+"/kv/dir/greeting", "")
	if status != 200 || body["deleted"] != true {
		t.Errorf("DELETE: %d %v", status, body)
	}
	status, body = do(t, "GET", srv.URL+"/kv/dir/greeting", "")
	if status != 404 || body["code"] != "NOT_FOUND" {
		t.Errorf("GET after DELETE: %d %v", status, body)
	}

	status, body = do(t, "GET", srv.URL+"/status", "")
	if status != 200 || body["state"] != "Leader" {
		t.Errorf("status: %d %v", status, body)
	}
	status, body = do(t, "GET", srv.URL+"/status?node=n1", "")
	if status != 200 || body["state"] != "Leader" {
		t.Errorf("status of n1: %d %v", status, body)
	}
	status, body = do(t, "GET", srv.URL+"/leader", "")
	if l, _ := body["leader"].(map[string]any); status != 200 || l["id"] != "n1" {
		t.Errorf("leader: %d %v", status, body)
	}
	status, body = do(t, "GET", srv.URL+"/members", "")
	if m, _ := body["members"].([]any); status != 200 || len(m) != 1 || m[0].(map[string]any)["suffrage"] != "VOTER" {
		t.Errorf("members: %d %v", status, body)
	}
	// Removing the only voter is refused by the group, and the refusal
	// comes back with its code and field.
	status, body = do(t, "DELETE", srv.URL+"/members/n1", "")
	if status != 400 || body["code"] != "INVALID_ARGUMENT" {
		t.Errorf("remove the last voter: %d %v", status, body)
	}
}

// TestParseFlags checks the command line is refused as a whole before
// anything starts.
func TestParseFlags(t *testing.T) {
	peers := "n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003"
	good := [][]string{
		{},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", peers, "--insecure"},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", peers, "--secrets", "/any/dir"},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", peers,
			"--tls-cert", "c", "--tls-key", "k", "--tls-ca", "ca", "--cluster-key-file", "key"},
		{"--id", "n4", "--bind", "127.0.0.1:7004", "--join", "n1=127.0.0.1:7001", "--insecure"},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", peers, "--link", "127.0.0.1:0", "--insecure"},
		// Behind forwarders: listen anywhere, be known by the advertised
		// addresses.
		{"--id", "n1", "--bind", "127.0.0.1:0", "--advertise", "127.0.0.1:7001", "--peers", peers, "--insecure"},
		{"--id", "n1", "--bind", "0.0.0.0:7101", "--advertise", "127.0.0.1:7001", "--peers", peers,
			"--link", "127.0.0.1:0", "--link-advertise", "127.0.0.1:7201", "--insecure"},
	}
	for _, args := range good {
		if _, err := parseFlags(args, io.Discard); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	bad := [][]string{
		{"--id", "n1"},
		{"--id", "n1", "--bind", "127.0.0.1:7001"},
		{"--id", "n1", "--bind", "0.0.0.0:7001", "--peers", peers},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", peers, "--join", "n2=127.0.0.1:7002"},
		{"--id", "n9", "--bind", "127.0.0.1:7009", "--peers", peers},
		{"--id", "n1", "--bind", "127.0.0.1:7009", "--peers", peers},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", "n1=127.0.0.1:7001,n1=127.0.0.1:7002"},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", "n1=127.0.0.1:7001,n2"},
		{"--id", "n2", "--bind", "127.0.0.1:7002", "--join", "n2=127.0.0.1:7002"},
		{"extra"},
		{"--link", "127.0.0.1:0"},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", peers, "--link", "127.0.0.1"},
		// Port 0 cannot be dialed: only a bind behind --advertise may use it.
		{"--id", "n1", "--bind", "127.0.0.1:0", "--peers", peers},
		{"--id", "n1", "--bind", "127.0.0.1:0", "--advertise", "0.0.0.0:7001", "--peers", peers},
		{"--id", "n1", "--bind", "127.0.0.1:0", "--advertise", "127.0.0.1:0", "--peers", peers},
		// --peers names this node by what the others dial.
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--advertise", "127.0.0.1:7101", "--peers", peers},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", peers, "--link-advertise", "127.0.0.1:7201"},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", peers, "--link", "127.0.0.1:0", "--link-advertise", "127.0.0.1:0"},
		{"--link-advertise", "127.0.0.1:7201"},
		// One node per process is secured or explicitly insecure, never
		// insecure by default or half secured.
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", peers},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", peers, "--tls-cert", "c", "--tls-key", "k", "--tls-ca", "ca"},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", peers, "--cluster-key-file", "key"},
		{"--id", "n1", "--bind", "127.0.0.1:7001", "--peers", peers, "--secrets", "/any/dir", "--insecure"},
		// The one-process cluster has no network between its nodes.
		{"--secrets", "/any/dir"},
		{"--insecure"},
	}
	for _, args := range bad {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// POST /members with a voter that nothing serves does not wedge a
// one-voter group: the new member stays a non-voter that was never
// promoted, the answer is an error, and writes and its removal go on.
func TestAddingAnUnreachableVoterKeepsTheGroupWritable(t *testing.T) {
	srv := startOneNode(t)
	status, body := do(t, http.MethodPost, srv.URL+"/members", `{"id":"n9","address":"127.0.0.1:7999"}`)
	if status == http.StatusOK {
		t.Fatalf("adding an unreachable voter answered 200: %v", body)
	}
	_, members := do(t, http.MethodGet, srv.URL+"/members", "")
	for _, m := range members["members"].([]any) {
		if m := m.(map[string]any); m["id"] == "n9" && m["suffrage"] != "NONVOTER" {
			t.Fatalf("n9 became %v", m["suffrage"])
		}
	}
	if status, body := do(t, http.MethodPut, srv.URL+"/kv/after-add", "v"); status != http.StatusOK {
		t.Fatalf("write after the add: %d %v", status, body)
	}
	if status, body := do(t, http.MethodDelete, srv.URL+"/members/n9", ""); status != http.StatusOK {
		t.Fatalf("remove n9: %d %v", status, body)
	}
}

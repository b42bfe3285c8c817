package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// call sends one request with an Authorization header (none when auth is
// empty) and returns the response with its body decoded; redirects are
// never followed, so a 3xx is seen as such.
func call(t *testing.T, method, url, auth, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: %s: %q is not JSON: %v", method, url, resp.Status, raw, err)
		}
	} else if resp.StatusCode >= 400 {
		t.Fatalf("%s %s: %s in %q, not the JSON error shape: %q", method, url, resp.Status, resp.Header.Get("Content-Type"), raw)
	}
	return resp, m
}

// Keys are the path exactly as sent: no cleaning, no redirect, never
// another key. Keys that are not UTF-8 come back as key_base64.
func TestAPIKeysAreThePathAsSent(t *testing.T) {
	srv := startOneNode(t)
	for _, tc := range []struct{ path, key string }{
		{"/kv/a//b", "a//b"},
		{"/kv/../x", "../x"},
		{"/kv/./y", "./y"},
		{"/kv/d/./e/../f", "d/./e/../f"},
		{"/kv/c%2Fd", "c/d"},
		{"/kv/sp%20ace", "sp ace"},
	} {
		resp, body := call(t, "PUT", srv.URL+tc.path, "", tc.path)
		if resp.StatusCode != 200 || body["key"] != tc.key {
			t.Fatalf("PUT %s: %d %v, want key %q", tc.path, resp.StatusCode, body, tc.key)
		}
		resp, body = call(t, "GET", srv.URL+tc.path, "", "")
		if resp.StatusCode != 200 || body["key"] != tc.key || body["value"] != tc.path {
			t.Fatalf("GET %s: %d %v, want key %q", tc.path, resp.StatusCode, body, tc.key)
		}
	}
	// The keys a cleaning router would have written to were not touched.
	for _, p := range []string{"/kv/a/b", "/kv/x", "/kv/y", "/kv/d/f"} {
		if resp, body := call(t, "GET", srv.URL+p, "", ""); resp.StatusCode != 404 || body["code"] != "NOT_FOUND" {
			t.Errorf("GET %s: %d %v, want 404: nothing was written there", p, resp.StatusCode, body)
		}
	}

	// A key that is not UTF-8: every byte comes back, in base64.
	resp, body := call(t, "PUT", srv.URL+"/kv/bin%FF%FE", "", "v")
	if resp.StatusCode != 200 || body["key_base64"] != "Ymlu//4=" || body["key"] != nil {
		t.Fatalf("PUT a non-UTF-8 key: %d %v", resp.StatusCode, body)
	}
	resp, body = call(t, "GET", srv.URL+"/kv/bin%FF%FE", "", "")
	if resp.StatusCode != 200 || body["key_base64"] != "Ymlu//4=" || body["value"] != "v" {
		t.Fatalf("GET a non-UTF-8 key: %d %v", resp.StatusCode, body)
	}
	resp, body = call(t, "GET", srv.URL+"/kv?prefix=bin", "", "")
	entries, _ := body["entries"].([]any)
	if resp.StatusCode != 200 || len(entries) != 1 || entries[0].(map[string]any)["key_base64"] != "Ymlu//4=" {
		t.Fatalf("list a non-UTF-8 key: %d %v", resp.StatusCode, body)
	}
	resp, body = call(t, "DELETE", srv.URL+"/kv/bin%FF%FE", "", "")
	if resp.StatusCode != 200 || body["key_base64"] != "Ymlu//4=" {
		t.Fatalf("DELETE a non-UTF-8 key: %d %v", resp.StatusCode, body)
	}

	// Other routes are never redirected either: a path that is not
	// clean is unknown, in JSON.
	for _, p := range []string{"//status", "/./status", "/members/../status", "/status/"} {
		if resp, body := call(t, "GET", srv.URL+p, "", ""); resp.StatusCode != 404 || body["code"] != "NOT_FOUND" {
			t.Errorf("GET %s: %d %v, want 404 NOT_FOUND", p, resp.StatusCode, body)
		}
	}
	if resp, body := call(t, "DELETE", srv.URL+"/members//n1", "", ""); resp.StatusCode != 404 || body["code"] != "NOT_FOUND" {
		t.Errorf("DELETE /members//n1: %d %v, want 404 NOT_FOUND", resp.StatusCode, body)
	}
	// Methods /kv does not serve are 405 in JSON, with Allow.
	for _, p := range []string{"/kv", "/kv/a//b"} {
		resp, body := call(t, "POST", srv.URL+p, "", "x")
		if resp.StatusCode != 405 || body["code"] != "METHOD_NOT_ALLOWED" || resp.Header.Get("Allow") == "" {
			t.Errorf("POST %s: %d %v Allow %q", p, resp.StatusCode, body, resp.Header.Get("Allow"))
		}
	}
}

// A value of exactly kvstore.MaxValueSize, under the longest key, is
// stored and read back; one byte more is INVALID_ARGUMENT on the value.
func TestAPIMaxValueSize(t *testing.T) {
	srv := startOneNode(t)
	key := strings.Repeat("k", kvstore.MaxKeySize)
	value := strings.Repeat("v", kvstore.MaxValueSize)
	resp, body := call(t, "PUT", srv.URL+"/kv/"+key, "", value)
	if resp.StatusCode != 200 || body["created"] != true {
		t.Fatalf("PUT of %d bytes: %d %v", len(value), resp.StatusCode, body)
	}
	resp, body = call(t, "GET", srv.URL+"/kv/"+key, "", "")
	if got, _ := body["value"].(string); resp.StatusCode != 200 || got != value {
		t.Fatalf("GET: %d, value of %d bytes, want %d", resp.StatusCode, len(got), len(value))
	}
	resp, body = call(t, "PUT", srv.URL+"/kv/"+key, "", value+"v")
	if resp.StatusCode != 400 || body["code"] != "INVALID_ARGUMENT" || body["field"] != "value" {
		t.Fatalf("PUT of %d bytes: %d %v", len(value)+1, resp.StatusCode, body)
	}
}

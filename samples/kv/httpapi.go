package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/policies"
	"github.com/protoraft/protoraft/raftactor/kvstore"
	"github.com/protoraft/protoraft/telemetry"
)

// maxJSONBody bounds the JSON bodies of the administrative endpoints; they
// carry an ID and an address, so anything near this is not a real request.
const maxJSONBody = 64 << 10

// defaultRequestTimeout bounds one HTTP request, retries through the Client
// included, so a request never hangs on a group without quorum.
const defaultRequestTimeout = 5 * time.Second

// apiConfig is what the HTTP API is built on.
type apiConfig struct {
	// group is the Raft group's name; it turns a member's system address
	// into its Raft address.
	group string
	// system is the ActorSystem the local nodes run in.
	system *actor.ActorSystem
	// client reaches the leader for writes, linearizable and lease reads and
	// administration, wherever the leader runs.
	client *cluster.Client
	// local are the front doors of the nodes in this process, by node ID.
	// Stale reads and /status can be asked of one of them, because "what
	// does this node hold" is a question only that node can answer.
	local map[string]*actor.PID
	// defaultNode answers stale reads and /status when the request names no
	// node; empty means they go through the Client like everything else.
	defaultNode string
	// timeout bounds one request; zero means defaultRequestTimeout.
	timeout time.Duration
	// metrics is served at GET /metrics; health are the local nodes'
	// metrics actors by node ID, asked by GET /health.
	metrics prometheus.Gatherer
	health  map[string]*actor.PID
	// authorizers are the local nodes' authorizers by node ID. They decide
	// GET /metrics and GET /health, which are served here rather than by a
	// node, by the policy the group's doors enforce (operations "metrics"
	// and "health"). Without one those endpoints refuse.
	authorizers map[string]*policies.Authorizer
}

// api serves the HTTP API. Build it with newAPI.
type api struct {
	apiConfig
	mux *http.ServeMux
}

// newAPI returns the HTTP API as an http.Handler, so tests can drive it with
// httptest and main can serve it.
func newAPI(cfg apiConfig) http.Handler {
	if cfg.timeout <= 0 {
		cfg.timeout = defaultRequestTimeout
	}
	a := &api{apiConfig: cfg, mux: http.NewServeMux()}
	// /kv and /kv/{key} are routed by ServeHTTP itself, before the mux,
	// whose path cleaning would turn /kv/a//b into a redirect to /kv/a/b.
	a.mux.HandleFunc("GET /status", a.status)
	a.mux.HandleFunc("GET /leader", a.leader)
	a.mux.HandleFunc("GET /members", a.members)
	a.mux.HandleFunc("POST /members", a.addMember)
	a.mux.HandleFunc("DELETE /members/{id}", a.removeMember)
	a.mux.HandleFunc("POST /leader/transfer", a.transferLeader)
	if cfg.metrics != nil {
		metrics := telemetry.Handler(cfg.metrics)
		a.mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			if a.authorize(w, r, a.metricsNode(), "metrics") {
				metrics.ServeHTTP(w, r)
			}
		})
	}
	a.mux.HandleFunc("GET /health", a.healthOf)
	a.routeStatusPage()
	return a
}

// routeMethods are the methods the API serves on some route.
var routeMethods = []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete}

// kvMethods are the methods /kv/{key} serves.
var kvMethods = []string{http.MethodGet, http.MethodPut, http.MethodDelete}

// ServeHTTP takes the caller's credentials from the request, bounds every
// request by the API's timeout and routes it: /kv paths itself, exactly as
// written, the rest through the mux. Unknown routes and methods are
// answered in JSON like every other error, where ServeMux would answer in
// plain text, and a path ServeMux would clean (//, /./, /../) is not
// redirected but unknown.
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(withCredentials(r.Context(), bearer(r)), a.timeout)
	defer cancel()
	r = r.WithContext(ctx)
	if a.serveKV(w, r) {
		return
	}
	if path.Clean(r.URL.Path) != r.URL.Path {
		writeNotFound(w, "route "+r.URL.Path, nil)
		return
	}
	if _, pattern := a.mux.Handler(r); pattern == "" {
		var allowed []string
		for _, m := range routeMethods {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := a.mux.Handler(probe); p != "" {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) == 0 {
			writeNotFound(w, "route "+r.URL.Path, nil)
			return
		}
		methodNotAllowed(w, r, allowed)
		return
	}
	a.mux.ServeHTTP(w, r)
}

// serveKV serves /kv and /kv/{key} and reports whether the path was one of
// them. The key is the rest of the path as the client sent it (the escaped
// path), unescaped here and nowhere else: /kv/a//b is the key "a//b",
// /kv/../x the key "../x", /kv/a%2Fb the key "a/b", /kv/%FF the one-byte
// key 0xff. A key is any byte string to the state machine, so no spelling
// is refused or redirected to another key.
func (a *api) serveKV(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.EscapedPath()
	switch {
	case p == "/kv":
		if r.Method != http.MethodGet {
			methodNotAllowed(w, r, []string{http.MethodGet})
			return true
		}
		a.listKeys(w, r)
		return true
	case !strings.HasPrefix(p, "/kv/"):
		return false
	}
	key, err := url.PathUnescape(strings.TrimPrefix(p, "/kv/"))
	if err != nil {
		badRequest(w, "key", "the key in the path is not validly escaped: %v", err)
		return true
	}
	r.SetPathValue("key", key)
	switch r.Method {
	case http.MethodGet:
		a.getKey(w, r)
	case http.MethodPut:
		a.putKey(w, r)
	case http.MethodDelete:
		a.deleteKey(w, r)
	default:
		methodNotAllowed(w, r, kvMethods)
	}
	return true
}

// methodNotAllowed answers 405 in JSON, with the methods the route serves.
func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed []string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, map[string]any{
		"code": codeMethodNotAllowed, "message": r.Method + " is not allowed on " + r.URL.Path,
	})
}

// credentialsKey is the context key of the caller's credentials.
type credentialsKey struct{}

// withCredentials returns ctx carrying the caller's credentials.
func withCredentials(ctx context.Context, credentials string) context.Context {
	return context.WithValue(ctx, credentialsKey{}, credentials)
}

// credentialsOf returns the caller's credentials carried by ctx.
func credentialsOf(ctx context.Context) string {
	s, _ := ctx.Value(credentialsKey{}).(string)
	return s
}

// bearer returns the credentials of a request: the token of its
// "Authorization: Bearer <token>" header, "" without the header. Any other
// Authorization header is passed on as it is, so the group's door refuses
// it as a malformed token when it enforces a policy, and an insecure door
// lets it in like any request: what is allowed is the door's decision
// alone.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if scheme, token, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	return h
}

// clientOf returns the Client as the request's caller: every call it makes
// presents the caller's credentials to the group.
func (a *api) clientOf(r *http.Request) *cluster.Client {
	return a.client.As(credentialsOf(r.Context()))
}

// authorize asks the authorizer of node whether the request's caller may
// do op, an operation served here rather than by a node; on refusal it has
// answered the request.
func (a *api) authorize(w http.ResponseWriter, r *http.Request, node, op string) bool {
	az := a.authorizers[node]
	if az == nil {
		writeError(w, actors.Errorf(actors.Code_INTERNAL, "no authorizer for node %q to decide %s", node, op))
		return false
	}
	if _, err := az.Decide(credentialsOf(r.Context()), op); err != nil {
		writeError(w, err)
		return false
	}
	return true
}

// metricsNode is the node whose authorizer decides GET /metrics: the
// default node, else the first local one by ID. The metrics are the whole
// process's, and every local node enforces the policy of the same log.
func (a *api) metricsNode() string {
	if a.defaultNode != "" {
		return a.defaultNode
	}
	if ids := slices.Sorted(maps.Keys(a.authorizers)); len(ids) > 0 {
		return ids[0]
	}
	return ""
}

// serverJSON is a member of the group as /leader and /members show it: the
// fields of actors.Server, named and valued as /status names them.
type serverJSON struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	// Suffrage is the protocol's name of it: VOTER or NONVOTER.
	Suffrage string `json:"suffrage,omitempty"`
}

func serverOf(s *actors.Server) *serverJSON {
	if s == nil || s.Id == "" {
		return nil
	}
	return &serverJSON{ID: s.Id, Address: s.Address, Suffrage: s.Suffrage.String()}
}

func serversOf(ss []*actors.Server) []*serverJSON {
	out := make([]*serverJSON, 0, len(ss))
	for _, s := range ss {
		if j := serverOf(s); j != nil {
			out = append(out, j)
		}
	}
	return out
}

// keyOf returns the request's key, or answers 400 and returns false. The
// state machine refuses the same keys, but only after a round trip through
// the log; checking here names the field and costs nothing.
func keyOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.PathValue("key")
	switch {
	case key == "":
		badRequest(w, "key", "key is empty")
		return "", false
	case len(key) > kvstore.MaxKeySize:
		badRequest(w, "key", "key is %d bytes, longer than %d", len(key), kvstore.MaxKeySize)
		return "", false
	}
	return key, true
}

// consistencyOf parses the consistency query parameter; linearizable is
// the default because it is the only one that never surprises.
func consistencyOf(r *http.Request) (actors.Consistency, *actors.Error) {
	switch c := strings.ToLower(r.URL.Query().Get("consistency")); c {
	case "", "linearizable":
		return actors.Consistency_LINEARIZABLE, nil
	case "lease":
		return actors.Consistency_LEASE, nil
	case "stale":
		return actors.Consistency_STALE, nil
	default:
		return 0, actors.InvalidArgument("consistency", "consistency %q is not one of linearizable, lease, stale", c)
	}
}

// localNode returns the local node a request asks for with ?node=, else the
// default one; "" means the Client serves it.
func (a *api) localNode(r *http.Request) (string, *actors.Error) {
	id := r.URL.Query().Get("node")
	if id == "" {
		return a.defaultNode, nil
	}
	if _, ok := a.local[id]; !ok {
		ids := make([]string, 0, len(a.local))
		for k := range a.local {
			ids = append(ids, k)
		}
		slices.Sort(ids)
		return "", actors.InvalidArgument("node", "node %q does not run in this process (local nodes: %s)", id, strings.Join(ids, ", "))
	}
	return id, nil
}

// askLocal sends req to a local node's front door and waits for its reply.
// Failures of the actor path (no answer before the deadline, the node is
// stopped) become UNAVAILABLE: the node is the only one that could answer.
func (a *api) askLocal(ctx context.Context, node string, req actors.Request) (actors.Response, error) {
	deadline, _ := ctx.Deadline()
	timeout := time.Until(deadline)
	if timeout <= 0 {
		return nil, actors.DeadlineExceeded("request")
	}
	req.GetMeta().SetTimeout(timeout)
	req.GetMeta().Credentials = credentialsOf(ctx)
	req.GetMeta().TokenOnly = true
	res, err := a.system.Root.RequestFuture(a.local[node], req, timeout).Result()
	if err != nil {
		return nil, actors.Errorf(actors.Code_UNAVAILABLE, "node %s did not answer: %v", node, err)
	}
	resp, ok := res.(actors.Response)
	if !ok {
		return nil, actors.Errorf(actors.Code_INTERNAL, "node %s answered with %T", node, res)
	}
	if err := resp.GetError().Err(); err != nil {
		return nil, err
	}
	return resp, nil
}

// read runs a query at the given consistency: stale reads on a local node
// when one is chosen, everything else through the Client.
func (a *api) read(r *http.Request, query []byte, c actors.Consistency) (*actors.ReadResponse, error) {
	ctx := r.Context()
	if c == actors.Consistency_STALE {
		node, aerr := a.localNode(r)
		if aerr != nil {
			return nil, aerr
		}
		if node != "" {
			res, err := a.askLocal(ctx, node, &actors.ReadRequest{Meta: &actors.RequestMeta{}, Query: query, Consistency: c})
			if err != nil {
				return nil, err
			}
			rr, ok := res.(*actors.ReadResponse)
			if !ok {
				return nil, actors.Errorf(actors.Code_INTERNAL, "node %s answered a read with %T", node, res)
			}
			return rr, nil
		}
	}
	return a.clientOf(r).Read(ctx, query, cluster.WithConsistency(c))
}

// valueJSON sets the value in a JSON body: as a string when it is UTF-8 (the
// common case, readable with curl), base64 otherwise so no byte is lost.
func valueJSON(body map[string]any, v []byte) {
	if utf8.Valid(v) {
		body["value"] = string(v)
	} else {
		body["value_base64"] = base64.StdEncoding.EncodeToString(v)
	}
}

// keyJSON sets the key in a JSON body as valueJSON sets a value: "key" when
// it is UTF-8, "key_base64" otherwise, so a client gets every byte of a key
// back (JSON strings cannot hold arbitrary bytes).
func keyJSON(body map[string]any, key string) map[string]any {
	if utf8.ValidString(key) {
		body["key"] = key
	} else {
		body["key_base64"] = base64.StdEncoding.EncodeToString([]byte(key))
	}
	return body
}

func (a *api) getKey(w http.ResponseWriter, r *http.Request) {
	key, ok := keyOf(w, r)
	if !ok {
		return
	}
	c, aerr := consistencyOf(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	res, err := a.read(r, kvstore.Get(key), c)
	if err != nil {
		writeError(w, err)
		return
	}
	qr, err := kvstore.DecodeQueryResult(res.Result)
	if err != nil {
		writeError(w, err)
		return
	}
	if !qr.Found {
		writeNotFound(w, "key", keyJSON(map[string]any{"applied_index": res.AppliedIndex}, key))
		return
	}
	body := keyJSON(map[string]any{"revision": qr.Revision, "applied_index": res.AppliedIndex}, key)
	valueJSON(body, qr.Value)
	writeJSON(w, http.StatusOK, body)
}

func (a *api) listKeys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	prefix := q.Get("prefix")
	if len(prefix) > kvstore.MaxKeySize {
		badRequest(w, "prefix", "prefix is %d bytes, longer than %d", len(prefix), kvstore.MaxKeySize)
		return
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > kvstore.MaxListLimit {
			badRequest(w, "limit", "limit %q is not a number from 1 to %d", s, kvstore.MaxListLimit)
			return
		}
		limit = n
	}
	c, aerr := consistencyOf(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	res, err := a.read(r, kvstore.List(prefix, limit), c)
	if err != nil {
		writeError(w, err)
		return
	}
	qr, err := kvstore.DecodeQueryResult(res.Result)
	if err != nil {
		writeError(w, err)
		return
	}
	entries := make([]map[string]any, 0, len(qr.Entries))
	for _, e := range qr.Entries {
		m := keyJSON(map[string]any{"revision": e.Revision}, string(e.Key))
		valueJSON(m, e.Value)
		entries = append(entries, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries, "more": qr.More, "applied_index": res.AppliedIndex})
}

func (a *api) putKey(w http.ResponseWriter, r *http.Request) {
	key, ok := keyOf(w, r)
	if !ok {
		return
	}
	// One byte over the limit is enough to know the value is too large
	// without reading an arbitrarily large body into memory.
	value, err := io.ReadAll(io.LimitReader(r.Body, kvstore.MaxValueSize+1))
	switch {
	case err != nil:
		badRequest(w, "value", "reading the body: %v", err)
		return
	case len(value) == 0:
		badRequest(w, "value", "value is empty: send it as the request body")
		return
	case len(value) > kvstore.MaxValueSize:
		badRequest(w, "value", "value is longer than %d bytes", kvstore.MaxValueSize)
		return
	}
	res, ok := a.write(w, r, kvstore.Put(key, value))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, keyJSON(map[string]any{"index": res.index, "revision": res.result.Revision, "created": !res.result.Found}, key))
}

func (a *api) deleteKey(w http.ResponseWriter, r *http.Request) {
	key, ok := keyOf(w, r)
	if !ok {
		return
	}
	res, ok := a.write(w, r, kvstore.Delete(key))
	if !ok {
		return
	}
	if !res.result.Found {
		// The delete went through the log all the same: index says where.
		writeNotFound(w, "key", keyJSON(map[string]any{"index": res.index}, key))
		return
	}
	writeJSON(w, http.StatusOK, keyJSON(map[string]any{"index": res.index, "deleted": true}, key))
}

// writeResult is a committed command and what the state machine made of it.
type writeResult struct {
	index  uint64
	result *kvstore.Result
}

// write sends a command through the Client and decodes the state machine's
// answer; on failure it has already answered the request.
func (a *api) write(w http.ResponseWriter, r *http.Request, cmd []byte) (writeResult, bool) {
	res, err := a.clientOf(r).Write(r.Context(), cmd)
	if err != nil {
		writeError(w, err)
		return writeResult{}, false
	}
	kr, err := kvstore.DecodeResult(res.Result)
	if err != nil {
		writeError(w, err)
		return writeResult{}, false
	}
	if kr.Error != "" {
		// Only reachable if this handler's checks drift from the state
		// machine's: the command was refused identically on every node.
		field := "key"
		if strings.Contains(kr.Error, "value") {
			field = "value"
		}
		writeError(w, actors.InvalidArgument(field, "%s", kr.Error))
		return writeResult{}, false
	}
	return writeResult{index: res.Index, result: kr}, true
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	node, aerr := a.localNode(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var st *actors.StatusResponse
	if node != "" {
		res, err := a.askLocal(r.Context(), node, &actors.StatusRequest{Meta: &actors.RequestMeta{}})
		if err != nil {
			writeError(w, err)
			return
		}
		var ok bool
		if st, ok = res.(*actors.StatusResponse); !ok {
			writeError(w, actors.Errorf(actors.Code_INTERNAL, "node %s answered a status request with %T", node, res))
			return
		}
	} else {
		var err error
		if st, err = a.clientOf(r).Status(r.Context()); err != nil {
			writeError(w, err)
			return
		}
	}
	writeProtoJSON(w, http.StatusOK, st)
}

// protoJSON renders /status as telemetry's handlers render /health: the
// .proto files' field names, enum values by name, zero values included, so
// the two read alike and a client decodes either with protojson into the
// message itself.
var protoJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true, Multiline: true}

// writeProtoJSON writes m with protoJSON.
func writeProtoJSON(w http.ResponseWriter, code int, m proto.Message) {
	b, err := protoJSON.Marshal(m)
	if err != nil {
		writeError(w, actors.Errorf(actors.Code_INTERNAL, "encoding %T: %v", m, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func (a *api) leader(w http.ResponseWriter, r *http.Request) {
	res, err := a.clientOf(r).Leader(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"leader": serverOf(res.Leader), "term": res.Term})
}

func (a *api) members(w http.ResponseWriter, r *http.Request) {
	res, err := a.clientOf(r).Members(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"index": res.Index, "members": serversOf(res.Members)})
}

// decodeJSON reads a small JSON body into v, refusing unknown fields so a
// typo ("adress") is an error instead of a silently missing value. An empty
// body is allowed when emptyOK, for endpoints whose fields are all optional.
func decodeJSON(r *http.Request, v any, emptyOK bool) *actors.Error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody+1))
	if err != nil {
		return actors.InvalidArgument("body", "reading the body: %v", err)
	}
	if len(body) > maxJSONBody {
		return actors.InvalidArgument("body", "body is longer than %d bytes", maxJSONBody)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if emptyOK {
			return nil
		}
		return actors.InvalidArgument("body", "body is empty: want a JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return actors.InvalidArgument("body", "malformed JSON: %v", err)
	}
	if dec.More() {
		return actors.InvalidArgument("body", "malformed JSON: more than one value")
	}
	return nil
}

// addMemberRequest is the body of POST /members.
type addMemberRequest struct {
	ID string `json:"id"`
	// Address is the new member's ActorSystem address (its --bind), not its
	// Raft address: the handler derives that, so callers never have to know
	// how node actors are named.
	Address string `json:"address"`
	// Suffrage is VOTER (the default) or NONVOTER, in any case.
	Suffrage string `json:"suffrage,omitempty"`
}

func (a *api) addMember(w http.ResponseWriter, r *http.Request) {
	var req addMemberRequest
	if aerr := decodeJSON(r, &req, false); aerr != nil {
		writeError(w, aerr)
		return
	}
	if aerr := actors.ValidateNodeID("id", req.ID); aerr != nil {
		writeError(w, aerr)
		return
	}
	if aerr := actors.ValidateHostPort("address", req.Address); aerr != nil {
		writeError(w, aerr)
		return
	}
	raftAddr := cluster.Peer{ID: req.ID, Address: req.Address}.RaftAddress(a.group)
	var (
		res *actors.MembershipResponse
		err error
	)
	switch strings.ToLower(req.Suffrage) {
	case "", "voter":
		res, err = a.clientOf(r).AddVoter(r.Context(), req.ID, raftAddr)
	case "nonvoter":
		res, err = a.clientOf(r).AddNonvoter(r.Context(), req.ID, raftAddr)
	default:
		badRequest(w, "suffrage", "suffrage %q is not VOTER or NONVOTER", req.Suffrage)
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"index": res.Index, "members": serversOf(res.Members)})
}

func (a *api) removeMember(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if aerr := actors.ValidateNodeID("id", id); aerr != nil {
		writeError(w, aerr)
		return
	}
	res, err := a.clientOf(r).Remove(r.Context(), id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"index": res.Index, "members": serversOf(res.Members)})
}

// transferRequest is the body of POST /leader/transfer; an empty body lets
// Raft pick the most up-to-date follower.
type transferRequest struct {
	ID string `json:"id,omitempty"`
}

func (a *api) transferLeader(w http.ResponseWriter, r *http.Request) {
	var req transferRequest
	if aerr := decodeJSON(r, &req, true); aerr != nil {
		writeError(w, aerr)
		return
	}
	if req.ID != "" {
		if aerr := actors.ValidateNodeID("id", req.ID); aerr != nil {
			writeError(w, aerr)
			return
		}
	}
	res, err := a.clientOf(r).TransferLeadership(r.Context(), req.ID)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"leader": serverOf(res.Leader)})
}

// errNoLeader is returned by waitGroupLeader when the deadline passes.
var errNoLeader = errors.New("no leader elected")

// healthOf serves the health of the node named by ?node= (default: this
// process's node). In the one-process cluster, without ?node=, it serves
// the first local node's by ID; ?node=n2 asks another.
func (a *api) healthOf(w http.ResponseWriter, r *http.Request) {
	id, aerr := a.localNode(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if id == "" {
		ids := slices.Sorted(maps.Keys(a.health))
		if len(ids) == 0 {
			writeNotFound(w, "health", nil)
			return
		}
		id = ids[0]
	}
	if !a.authorize(w, r, id, "health") {
		return
	}
	telemetry.HealthHandler(a.system, a.health[id], a.timeout).ServeHTTP(w, r)
}

// waitGroupLeader waits until the local node g knows a leader, for the
// startup banner. It asks the node itself, which needs no credentials: the
// process has none of its own, every HTTP request presents its caller's.
func waitGroupLeader(ctx context.Context, g *cluster.Group, within time.Duration) (*actors.Server, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	leader, err := g.WaitLeader(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w within %v: %w", errNoLeader, within, err)
	}
	return leader, nil
}

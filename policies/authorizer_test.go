package policies

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/testutil"
)

// requests has one request of every operation the front door can see.
func requests() map[string]func(meta *actors.RequestMeta) actors.Request {
	return map[string]func(*actors.RequestMeta) actors.Request{
		"write": func(m *actors.RequestMeta) actors.Request { return &actors.WriteRequest{Meta: m, Command: []byte("x")} },
		"read_linearizable": func(m *actors.RequestMeta) actors.Request {
			return &actors.ReadRequest{Meta: m, Consistency: actors.Consistency_LINEARIZABLE}
		},
		"read_lease": func(m *actors.RequestMeta) actors.Request {
			return &actors.ReadRequest{Meta: m, Consistency: actors.Consistency_LEASE}
		},
		"read_stale": func(m *actors.RequestMeta) actors.Request {
			return &actors.ReadRequest{Meta: m, Consistency: actors.Consistency_STALE}
		},
		"leader":  func(m *actors.RequestMeta) actors.Request { return &actors.LeaderRequest{Meta: m} },
		"members": func(m *actors.RequestMeta) actors.Request { return &actors.MembersRequest{Meta: m} },
		"status":  func(m *actors.RequestMeta) actors.Request { return &actors.StatusRequest{Meta: m} },
		"add_voter": func(m *actors.RequestMeta) actors.Request {
			return &actors.MembershipRequest{Meta: m, Op: actors.MembershipOp_ADD_VOTER, Id: "n4", Address: "nonhost/n4"}
		},
		"add_nonvoter": func(m *actors.RequestMeta) actors.Request {
			return &actors.MembershipRequest{Meta: m, Op: actors.MembershipOp_ADD_NONVOTER, Id: "n4", Address: "nonhost/n4"}
		},
		"promote": func(m *actors.RequestMeta) actors.Request {
			return &actors.MembershipRequest{Meta: m, Op: actors.MembershipOp_PROMOTE, Id: "n4"}
		},
		"demote": func(m *actors.RequestMeta) actors.Request {
			return &actors.MembershipRequest{Meta: m, Op: actors.MembershipOp_DEMOTE, Id: "n4"}
		},
		"remove": func(m *actors.RequestMeta) actors.Request {
			return &actors.MembershipRequest{Meta: m, Op: actors.MembershipOp_REMOVE, Id: "n4"}
		},
		"transfer_leadership": func(m *actors.RequestMeta) actors.Request {
			return &actors.TransferLeadershipRequest{Meta: m, Id: "n2"}
		},
		"update_timeouts": func(m *actors.RequestMeta) actors.Request { return &actors.UpdateTimeoutsRequest{Meta: m} },
		"get_timeouts":    func(m *actors.RequestMeta) actors.Request { return &actors.GetTimeoutsRequest{Meta: m} },
		"snapshot":        func(m *actors.RequestMeta) actors.Request { return &actors.SnapshotRequest{Meta: m} },
		"snapshot_read":   func(m *actors.RequestMeta) actors.Request { return &actors.SnapshotReadRequest{Meta: m} },
		"policy_update": func(m *actors.RequestMeta) actors.Request {
			return &actors.PolicyUpdateRequest{Meta: m, Document: []byte(testPolicy())}
		},
		"policy_read":   func(m *actors.RequestMeta) actors.Request { return &actors.PolicyGetRequest{Meta: m} },
		"update_limits": func(m *actors.RequestMeta) actors.Request { return &actors.UpdateLimitsRequest{Meta: m} },
		"limiter_stats": func(m *actors.RequestMeta) actors.Request { return &actors.LimiterStatsRequest{Meta: m} },
	}
}

// allowedByRole is written out by hand from testPolicy, not derived from
// the code under test: the matrix asserts every (operation, role) pair.
var allowedByRole = map[string]map[string]bool{
	"admin":  nil, // everything
	"writer": set("write", "read_linearizable", "read_lease", "read_stale", "leader", "status"),
	"reader": set("read_linearizable", "read_lease", "read_stale", "leader", "members", "status", "get_timeouts"),
	"operator": set("add_voter", "add_nonvoter", "promote", "demote", "remove", "transfer_leadership",
		"update_timeouts", "get_timeouts", "snapshot", "members", "status", "leader"),
	"policy-admin": set("policy_update"),
	"none":         set(),
}

var tokenOfRole = map[string]string{
	"admin": adminToken, "writer": writerToken, "reader": readerToken, "operator": operatorToken,
	"policy-admin": policyToken, "none": nobodyToken,
}

func set(ops ...string) map[string]bool {
	m := map[string]bool{}
	for _, op := range ops {
		m[op] = true
	}
	return m
}

// next stands in for the limiter: it records what reaches it and answers
// OK, so the caller can tell an allowed request from a refused one.
type next struct {
	mu   sync.Mutex
	seen []seen
}

type seen struct {
	op, principal string
}

func (n *next) Receive(ctx actor.Context) {
	req, ok := ctx.Message().(actors.Request)
	if !ok {
		return
	}
	n.mu.Lock()
	n.seen = append(n.seen, seen{op: actors.Op(req), principal: ctx.MessageHeader().Get(actors.HeaderPrincipal)})
	n.mu.Unlock()
	ctx.Respond(actors.ErrorReply(req, nil))
}

func (n *next) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.seen)
}

type outcomes struct {
	mu  sync.Mutex
	got []*actors.Outcome
}

func (o *outcomes) Receive(ctx actor.Context) {
	if m, ok := ctx.Message().(*actors.Outcome); ok {
		o.mu.Lock()
		o.got = append(o.got, m)
		o.mu.Unlock()
	}
}

func (o *outcomes) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.got)
}

type doorHarness struct {
	system  *actor.ActorSystem
	door    *actor.PID
	next    *next
	metrics *outcomes
	audit   *observer.ObservedLogs
	authz   *Authorizer
}

func newDoor(t *testing.T, cfg Config) *doorHarness {
	t.Helper()
	testutil.VerifyNoLeaks(t)
	system := testutil.NewSystem(t)
	core, logs := observer.New(zap.InfoLevel)
	cfg.AuditLogger = zap.New(core)
	a, err := New(cfg, "g", "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &doorHarness{system: system, next: &next{}, metrics: &outcomes{}, audit: logs, authz: a}
	nextPID := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return h.next }))
	metricsPID := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return h.metrics }))
	h.door = system.Root.Spawn(a.Props(nextPID, metricsPID))
	return h
}

func (h *doorHarness) ask(t *testing.T, req actors.Request) *actors.Error {
	t.Helper()
	res, err := h.system.Root.RequestFuture(h.door, req, 5*time.Second).Result()
	if err != nil {
		t.Fatalf("%s: %v", actors.Op(req), err)
	}
	resp, ok := res.(actors.Response)
	if !ok {
		t.Fatalf("%s: reply %T", actors.Op(req), res)
	}
	if want := actors.ErrorReply(req, nil); resp.ProtoReflect().Descriptor() != want.ProtoReflect().Descriptor() {
		t.Fatalf("%s: reply %T, want %T", actors.Op(req), resp, want)
	}
	return resp.GetError()
}

// TestMatrix sends every operation as every role through the door and
// asserts each pair allowed (reaches the next stage, with the principal
// header) or denied (PERMISSION_DENIED, nothing passes, an outcome told),
// and one audit record per administrative decision.
func TestMatrix(t *testing.T) {
	h := newDoor(t, Config{Policy: []byte(testPolicy())})
	reqs := requests()
	var passed, denied, adminDecisions int
	for role, allowed := range allowedByRole {
		for op, mk := range reqs {
			req := mk(&actors.RequestMeta{Credentials: tokenOfRole[role], RequestId: role + "/" + op})
			if got := actors.Op(req); got != op {
				t.Fatalf("request for %s has op %s", op, got)
			}
			want := allowed == nil || allowed[op]
			err := h.ask(t, req)
			if IsAdministrative(op) {
				adminDecisions++
			}
			if want {
				passed++
				if err != nil {
					t.Errorf("%s as %s: %v, want allowed", op, role, err)
				}
				continue
			}
			denied++
			if actors.CodeOf(err) != actors.Code_PERMISSION_DENIED {
				t.Errorf("%s as %s: %v, want PERMISSION_DENIED", op, role, err)
			}
		}
	}
	if got := h.next.count(); got != passed {
		t.Fatalf("%d requests reached the next stage, want %d", got, passed)
	}
	for _, s := range h.next.seen {
		if s.principal == "" {
			t.Fatalf("%s reached the next stage without a principal", s.op)
		}
	}
	testutil.Eventually(t, "an outcome told for every denial", func() bool { return h.metrics.len() == denied })
	for _, o := range h.metrics.got {
		if o.Stage != "authorizer" || o.Code != actors.Code_PERMISSION_DENIED || o.Principal == "" || o.Op == "" {
			t.Fatalf("outcome %+v", o)
		}
	}
	if got := h.audit.Len(); got != adminDecisions {
		t.Fatalf("%d audit records, want one per administrative decision (%d)", got, adminDecisions)
	}
	for _, e := range h.audit.All() {
		m := e.ContextMap()
		for _, k := range []string{"principal", "operation", "target", "result", "time"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("audit record without %s: %v", k, m)
			}
		}
	}
}

// Missing, malformed, unknown and revoked tokens are UNAUTHENTICATED and
// reach nothing; an administrative attempt among them is audited.
func TestUnauthenticated(t *testing.T) {
	h := newDoor(t, Config{Policy: []byte(testPolicy())})
	for _, token := range []string{"", "short", "has spaces in the token!", "unknown-token-0123456789", revokedToken} {
		for _, op := range []string{"write", "remove"} {
			err := h.ask(t, requests()[op](&actors.RequestMeta{Credentials: token}))
			if actors.CodeOf(err) != actors.Code_UNAUTHENTICATED {
				t.Fatalf("token %q op %s: %v, want UNAUTHENTICATED", token, op, err)
			}
		}
	}
	if h.next.count() != 0 {
		t.Fatal("an unauthenticated request reached the next stage")
	}
	if got := h.audit.FilterField(zap.String("principal", "unauthenticated")).Len(); got != 5 {
		t.Fatalf("%d audit records of unauthenticated removals, want 5", got)
	}
	testutil.Eventually(t, "an outcome told for every refusal", func() bool { return h.metrics.len() == 10 })
}

// A caller cannot name its own principal: the door overwrites the header.
func TestPrincipalHeaderOverwritten(t *testing.T) {
	h := newDoor(t, Config{Policy: []byte(testPolicy())})
	f := actor.NewFuture(h.system, 5*time.Second)
	h.system.Root.Send(h.door, &actor.MessageEnvelope{
		Header:  map[string]string{actors.HeaderPrincipal: "alice", "x-trace": "t1"},
		Message: &actors.WriteRequest{Meta: &actors.RequestMeta{Credentials: writerToken}},
		Sender:  f.PID(),
	})
	if _, err := f.Result(); err != nil {
		t.Fatal(err)
	}
	if s := h.next.seen[0]; s.principal != "writer-svc" {
		t.Fatalf("principal %q", s.principal)
	}
}

// A bad policy change is refused at the door with the field at fault, and
// is audited as denied; the policy in force stays.
func TestBadPolicyUpdate(t *testing.T) {
	h := newDoor(t, Config{Policy: []byte(testPolicy())})
	err := h.ask(t, &actors.PolicyUpdateRequest{Meta: &actors.RequestMeta{Credentials: policyToken},
		Document: []byte("version: 1\nroles:\n  r: [wrte]\n")})
	if actors.CodeOf(err) != actors.Code_INVALID_ARGUMENT || err.Field != "roles.r[0]" {
		t.Fatalf("got %v", err)
	}
	if h.next.count() != 0 || h.audit.FilterField(zap.String("result", "denied")).Len() != 1 {
		t.Fatal("bad policy passed or was not audited")
	}
}

var insecureRuns atomic.Int64

// The insecure door lets everything through as "anonymous".
func TestInsecure(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	// The warning comes once per group and process: a group of its own
	// for every run (go test -count=N runs this test N times in one
	// process).
	group := fmt.Sprintf("insecure-%d", insecureRuns.Add(1))
	a, err := New(Config{Insecure: true}, group, "n1", zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessageSnippet("INSECURE").Len() != 1 {
		t.Fatal("insecure mode not logged as a warning")
	}
	if name, err := a.Decide("", "remove"); err != nil || name != Anonymous {
		t.Fatalf("got %q %v", name, err)
	}
	h := newDoor(t, Config{})
	if err := h.ask(t, &actors.SnapshotRequest{}); err != nil {
		t.Fatal(err)
	}
}

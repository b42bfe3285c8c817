package cluster_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/policies"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

const (
	writerToken = "writer-token-0123456789"
	secToken    = "security-token-0123456789"
)

// securePolicy lets writer-svc write and sec change the policy; with
// revokeWriter the writer's token is revoked.
func securePolicy(revokeWriter bool) string {
	revoked := "false"
	if revokeWriter {
		revoked = "true"
	}
	return `version: 1
roles:
  writer: [write, read_linearizable, leader, status]
  security: [policy_update, status]
principals:
  - name: writer-svc
    token_sha256: ` + policies.HashToken(writerToken) + `
    roles: [writer]
    revoked: ` + revoked + `
  - name: sec
    token_sha256: ` + policies.HashToken(secToken) + `
    roles: [security]
`
}

// A policy loaded from a file is enforced at every node's door; a change
// committed through the leader is then enforced by every node, and each
// administrative decision leaves one audit record.
func TestPolicyChangeEnforcedOnEveryNode(t *testing.T) {
	h := grouptest.NewGroups(t)
	file := filepath.Join(h.Dir, "policy.yaml")
	if err := os.WriteFile(file, []byte(securePolicy(false)), 0o600); err != nil {
		t.Fatal(err)
	}
	core, audit := observer.New(zap.InfoLevel)
	_, groups := h.SpawnVoters("g", 3, func(cfg *cluster.Config) {
		cfg.Security = policies.Config{PolicyFile: file, AuditLogger: zap.New(core)}
		cfg.Node.ClusterKey = []byte("cluster-key-0123456789abcdef")
	})
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitFor)
	defer cancel()
	var leader *cluster.Group
	for leader == nil {
		l, err := groups[0].WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups {
			if g.Self().ID == l.Id {
				leader = g
			}
		}
	}
	withToken := func(token string) *actors.RequestMeta {
		m := meta()
		m.Credentials = token
		return m
	}
	if r := h.Ask(leader.FrontDoor(), &actors.WriteRequest{Meta: withToken(writerToken), Command: kvstore.Put("k", []byte("v"))}); r.GetError().Err() != nil {
		t.Fatalf("write as writer: %v", r.GetError())
	}
	if r := h.Ask(leader.FrontDoor(), &actors.WriteRequest{Meta: meta(), Command: kvstore.Put("k", []byte("v"))}); actors.CodeOf(r.GetError()) != actors.Code_UNAUTHENTICATED {
		t.Fatalf("write without token: %v", r.GetError())
	}
	if r := h.Ask(leader.FrontDoor(), &actors.PolicyUpdateRequest{Meta: withToken(writerToken), Document: []byte(securePolicy(true))}); actors.CodeOf(r.GetError()) != actors.Code_PERMISSION_DENIED {
		t.Fatalf("policy change by the writer: %v", r.GetError())
	}
	if r := h.Ask(leader.FrontDoor(), &actors.PolicyUpdateRequest{Meta: withToken(secToken), Document: []byte("version: 1\nroles: {w: [wirte]}\n")}); actors.CodeOf(r.GetError()) != actors.Code_INVALID_ARGUMENT || r.GetError().Field != "roles.w[0]" {
		t.Fatalf("bad policy change: %v", r.GetError())
	}
	r := h.Ask(leader.FrontDoor(), &actors.PolicyUpdateRequest{Meta: withToken(secToken), Document: []byte(securePolicy(true))})
	if r.GetError().Err() != nil {
		t.Fatalf("policy change: %v", r.GetError())
	}
	for _, g := range groups {
		testutil.Eventually(t, "node "+g.Self().ID+" refuses the revoked writer", func() bool {
			res := h.Ask(g.FrontDoor(), &actors.StatusRequest{Meta: withToken(writerToken)})
			return actors.CodeOf(res.GetError()) == actors.Code_UNAUTHENTICATED
		})
		if res := h.Ask(g.FrontDoor(), &actors.StatusRequest{Meta: withToken(secToken)}); res.GetError().Err() != nil {
			t.Fatalf("node %s refuses sec after the change: %v", g.Self().ID, res.GetError())
		}
	}
	// Three policy decisions, all at the leader's door: denied (writer),
	// denied (bad document), allowed.
	if got := audit.FilterField(zap.String("operation", "policy_update")).Len(); got != 3 {
		t.Fatalf("%d audit records, want 3: %v", got, audit.All())
	}
	if got := audit.FilterField(zap.String("result", "allowed")).Len(); got != 1 {
		t.Fatalf("%d allowed audit records, want 1", got)
	}
}

// A bad policy file is refused at Spawn with the field and line at fault.
func TestBadPolicyFileRefused(t *testing.T) {
	h := grouptest.NewGroups(t)
	file := filepath.Join(h.Dir, "policy.yaml")
	if err := os.WriteFile(file, []byte("version: 1\nroles:\n  r: [write, nope]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := h.Config("g", "n1", grouptest.Peers("n1"))
	cfg.Security = policies.Config{PolicyFile: file}
	_, err := cluster.Spawn(h.System, cfg)
	ae, ok := err.(*actors.Error)
	if !ok || ae.Code != actors.Code_INVALID_ARGUMENT || ae.Field != "roles.r[1]" {
		t.Fatalf("got %v", err)
	}
	if want := "line 3"; !strings.Contains(ae.Message, want) {
		t.Fatalf("message %q does not name %s", ae.Message, want)
	}
}

// Under a policy, Join's requests carry the node's Credentials: a node
// without them is refused UNAUTHENTICATED and stays out, one with a token
// of the join permissions becomes a voter.
func TestJoinPresentsTheNodesCredentials(t *testing.T) {
	const joinToken = "join-token-0123456789abcdef"
	h := grouptest.NewGroups(t)
	file := filepath.Join(h.Dir, "policy.yaml")
	doc := `version: 1
roles:
  node: [status, leader, members, add_nonvoter, promote]
principals:
  - name: nodes
    token_sha256: ` + policies.HashToken(joinToken) + `
    roles: [node]
`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	secured := func(cfg *cluster.Config) { cfg.Security = policies.Config{PolicyFile: file} }
	_, groups := h.SpawnVoters("g", 3, secured)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitFor)
	defer cancel()
	if _, err := groups[0].WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	anonymous := h.Config("g", "n4", nil)
	secured(&anonymous)
	n4 := h.Spawn(anonymous)
	var ae *actors.Error
	if err := n4.Join(ctx, groups[0].Self()); !errors.As(err, &ae) || ae.Code != actors.Code_UNAUTHENTICATED {
		t.Fatalf("join without credentials: %v, want UNAUTHENTICATED", err)
	}
	withToken := h.Config("g", "n5", nil)
	secured(&withToken)
	withToken.Credentials = joinToken
	n5 := h.Spawn(withToken)
	if err := n5.Join(ctx, groups[0].Self()); err != nil {
		t.Fatalf("join with the node token: %v", err)
	}
	// The harness holds no token: it asks the node behind the door.
	st := h.Ask(groups[0].Node(), &actors.StatusRequest{Meta: meta()}).(*actors.StatusResponse)
	for _, m := range st.Members {
		if m.Id == "n4" {
			t.Fatalf("n4 joined without credentials: %v", st.Members)
		}
	}
}

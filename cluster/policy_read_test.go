package cluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/policies"
)

// readBackPolicy lets sec change and read the policy, and writer-svc write
// only; extra is appended to the roles, so two versions differ.
func readBackPolicy(extra string) string {
	return `version: 1
# who may do what
roles:
  writer: [write, read_linearizable, leader, status]
  security: [policy_update, policy_read, status, leader, members]` + extra + `
principals:
  - name: writer-svc
    token_sha256: ` + policies.HashToken(writerToken) + `
    roles: [writer]
  - name: sec
    token_sha256: ` + policies.HashToken(secToken) + `
    roles: [security]
`
}

// The policy reads back byte for byte as it was set, from every member:
// the spawn policy before any change, then the committed one, with the
// index it was committed at. A linearizable read-back right after the
// change sees it on every member. A caller without the permissions is
// refused both the change and the read-back, with PERMISSION_DENIED, and
// each read-back is audited.
func TestPolicyReadsBackWhatWasSetOnEveryMember(t *testing.T) {
	h := grouptest.NewGroups(t)
	file := filepath.Join(h.Dir, "policy.yaml")
	spawn := []byte(readBackPolicy(""))
	if err := os.WriteFile(file, spawn, 0o600); err != nil {
		t.Fatal(err)
	}
	core, audit := observer.New(zap.InfoLevel)
	_, groups := h.SpawnVoters("g", 3, func(cfg *cluster.Config) {
		cfg.Security = policies.Config{PolicyFile: file, AuditLogger: zap.New(core)}
	})
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitFor)
	defer cancel()
	if _, err := groups[0].WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	peers := grouptest.Peers("n1", "n2", "n3")
	sec := cluster.NewClient(h.System, "g", peers, cluster.WithCredentials(secToken))
	writer := cluster.NewClient(h.System, "g", peers, cluster.WithCredentials(writerToken))
	askEach := func(consistency actors.Consistency) map[string]*actors.PolicyGetResponse {
		out := map[string]*actors.PolicyGetResponse{}
		for _, p := range peers {
			resp, err := cluster.AskMember[*actors.PolicyGetResponse](ctx, sec, p, func(m *actors.RequestMeta) actors.Request {
				return &actors.PolicyGetRequest{Meta: m, Consistency: consistency}
			})
			if err != nil {
				t.Fatalf("policy get on %s (%s): %v", p.ID, consistency, err)
			}
			out[p.ID] = resp
		}
		return out
	}

	for id, r := range askEach(actors.Consistency_LINEARIZABLE) {
		if r.GetSource() != actors.PolicySource_POLICY_SPAWN || !bytes.Equal(r.GetDocument(), spawn) || r.GetIndex() != 0 ||
			r.GetDigest() != fmt.Sprintf("%x", sha256.Sum256(spawn)) || r.GetNode().GetId() != id {
			t.Fatalf("%s before any change: %v", id, r)
		}
	}

	changed := []byte(readBackPolicy("\n  reader: [read_stale]"))
	set, err := sec.UpdatePolicy(ctx, changed)
	if err != nil {
		t.Fatal(err)
	}
	for id, r := range askEach(actors.Consistency_LINEARIZABLE) {
		if r.GetSource() != actors.PolicySource_POLICY_COMMITTED || !bytes.Equal(r.GetDocument(), changed) || r.GetIndex() != set.GetIndex() ||
			r.GetAppliedIndex() < set.GetIndex() {
			t.Fatalf("%s right after the change committed at %d: %v", id, set.GetIndex(), r)
		}
	}
	got, err := sec.Policy(ctx)
	if err != nil || !bytes.Equal(got.GetDocument(), changed) {
		t.Fatalf("Client.Policy: %v, %v", got, err)
	}
	// A stale read-back is each member's applied state: it catches up.
	for _, p := range peers {
		testutil.Eventually(t, p.ID+" applied the change", func() bool {
			r, err := cluster.AskMember[*actors.PolicyGetResponse](ctx, sec, p, func(m *actors.RequestMeta) actors.Request {
				return &actors.PolicyGetRequest{Meta: m, Consistency: actors.Consistency_STALE}
			})
			return err == nil && bytes.Equal(r.GetDocument(), changed)
		})
	}

	for _, p := range peers {
		_, err := cluster.AskMember[*actors.PolicyGetResponse](ctx, writer, p, func(m *actors.RequestMeta) actors.Request {
			return &actors.PolicyGetRequest{Meta: m}
		})
		if actors.CodeOf(asError(err)) != actors.Code_PERMISSION_DENIED {
			t.Errorf("policy get by the writer on %s: %v", p.ID, err)
		}
	}
	if _, err := writer.Policy(ctx); actors.CodeOf(asError(err)) != actors.Code_PERMISSION_DENIED {
		t.Errorf("Client.Policy by the writer: %v", err)
	}
	if _, err := writer.UpdatePolicy(ctx, spawn); actors.CodeOf(asError(err)) != actors.Code_PERMISSION_DENIED {
		t.Errorf("Client.UpdatePolicy by the writer: %v", err)
	}
	reads := audit.FilterField(zap.String("operation", "policy_read"))
	if reads.FilterField(zap.String("result", "denied")).Len() != 4 || reads.FilterField(zap.String("result", "allowed")).Len() < 7 {
		t.Errorf("audit records of policy reads: %v", reads.All())
	}
}

package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/policies"
	"github.com/protoraft/protoraft/raftactor/kvstore"
	"github.com/protoraft/protoraft/remoteguard"
)

// startMTLSSystem starts an ActorSystem whose remote endpoint (hardened by
// remoteguard.Config) speaks mutual TLS only.
func startMTLSSystem(t *testing.T, cfg *tls.Config) *actor.ActorSystem {
	t.Helper()
	opts, err := remoteguard.MutualTLS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	system := testutil.NewSystem(t)
	r := remote.NewRemote(system, remoteguard.Config("127.0.0.1", 0, opts...))
	r.Start()
	t.Cleanup(func() { r.Shutdown(false) })
	return system
}

// A caller over mutual TLS is the principal whose tls_subjects list its
// certificate's subject, without any token; a subject not in the policy is
// UNAUTHENTICATED; a token still wins; and a caller cannot claim another
// subject by sending the peer-subject header itself.
func TestTLSSubjectPrincipalOverRemote(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("several remotes in one process race inside protoactor (grpclog.SetLoggerV2 on every start); covered without -race")
	}
	ca := testutil.NewCA(t, "test CA")
	subjectOf := func(cn string) pkix.Name { return pkix.Name{CommonName: cn, Organization: []string{"Example"}} }
	// What the policy lists is exactly what pkix.Name.String writes.
	subjectA, subjectB := subjectOf("client-a").String(), subjectOf("client-b").String()
	if subjectA != "CN=client-a,O=Example" {
		t.Fatalf("subject string %q: the documented form changed", subjectA)
	}
	const token = "token-writer-0123456789"
	policy := `version: 1
roles:
  writer: [write, read_linearizable, status, leader]
  reader: [status, leader]
principals:
  - name: client-a
    tls_subjects: ["` + subjectA + `"]
    roles: [writer]
  - name: client-b
    tls_subjects: ["` + subjectB + `"]
    roles: [reader]
  - name: token-writer
    token_sha256: ` + policies.HashToken(token) + `
    roles: [writer]
`

	// The remote starts before Spawn: the node's address is the endpoint's.
	server := startMTLSSystem(t, ca.Config(ca.IssueSubject(t, subjectOf("node-1"))))
	self := []cluster.Peer{{ID: "n1", Address: server.Address()}}
	h := grouptest.NewGroups(t, grouptest.WithSystem(server))
	cfg := h.Config("g", "n1", self)
	cfg.Security = policies.Config{Policy: []byte(policy)}
	cfg.Node.ClusterKey = []byte("cluster-key-0123456789abcdef")
	g := h.Spawn(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitFor)
	defer cancel()
	if _, err := g.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	// A PID caches the process it resolved to in the first system that
	// used it, so every system needs a PID of its own: one PID shared by
	// the clients would send all their messages through the first one's
	// connection.
	door := func() *actor.PID { return self[0].FrontDoor("g") }

	clientA := startMTLSSystem(t, ca.Config(ca.IssueSubject(t, subjectOf("client-a"))))
	clientB := startMTLSSystem(t, ca.Config(ca.IssueSubject(t, subjectOf("client-b"))))
	stranger := startMTLSSystem(t, ca.Config(ca.IssueSubject(t, subjectOf("stranger"))))

	// call sends req to the door from system, with header on the envelope
	// (nil for none), and returns the reply's error.
	call := func(system *actor.ActorSystem, header map[string]string, req actors.Request) *actors.Error {
		t.Helper()
		f := actor.NewFuture(system, 10*time.Second)
		system.Root.Send(door(), &actor.MessageEnvelope{Header: header, Message: req, Sender: f.PID()})
		res, err := f.Result()
		if err != nil {
			t.Fatalf("%s from %s: %v", actors.Op(req), system.Address(), err)
		}
		return res.(actors.Response).GetError()
	}
	write := func(key string) *actors.WriteRequest {
		return &actors.WriteRequest{Meta: meta(), Command: kvstore.Put(key, []byte("v"))}
	}

	// client-a, no token: allowed by its certificate alone.
	if err := call(clientA, nil, &actors.StatusRequest{Meta: meta()}); err != nil {
		t.Fatalf("status as client-a by certificate: %v", err)
	}
	if err := call(clientA, nil, write("by-a")); err != nil {
		t.Fatalf("write as client-a by certificate: %v", err)
	}
	// A certificate of the CA whose subject is not in the policy.
	if err := call(stranger, nil, &actors.StatusRequest{Meta: meta()}); actors.CodeOf(err) != actors.Code_UNAUTHENTICATED {
		t.Fatalf("status from a subject not in the policy: %v, want UNAUTHENTICATED", err)
	}
	// The token wins over the certificate, both for a stranger and for
	// client-b, whose own roles would not allow a write.
	withToken := write("by-token")
	withToken.Meta.Credentials = token
	if err := call(stranger, nil, withToken); err != nil {
		t.Fatalf("write with a token from a subject not in the policy: %v", err)
	}
	withBadToken := write("by-bad-token")
	withBadToken.Meta.Credentials = "unknown-token-0123456789"
	if err := call(clientA, nil, withBadToken); actors.CodeOf(err) != actors.Code_UNAUTHENTICATED {
		t.Fatalf("bad token with client-a's certificate: %v, want UNAUTHENTICATED (the token wins)", err)
	}

	// Forgery: client-b (reader) claims client-a's subject in the header;
	// the endpoint overwrites it with client-b's, so the write is refused
	// as client-b, never allowed as client-a.
	forged := map[string]string{actors.HeaderPeerSubject: subjectA, "x-trace": "t1"}
	err := call(clientB, forged, write("forged-by-b"))
	if actors.CodeOf(err) != actors.Code_PERMISSION_DENIED || !strings.Contains(err.GetMessage(), "client-b") {
		t.Fatalf("client-b forging client-a's subject: %v, want PERMISSION_DENIED as client-b", err)
	}
	if err := call(clientB, forged, &actors.StatusRequest{Meta: meta()}); err != nil {
		t.Fatalf("client-b's own status with a forged header: %v (it is still client-b)", err)
	}
	// A stranger claiming client-a's subject stays a stranger.
	if err := call(stranger, forged, write("forged-by-stranger")); actors.CodeOf(err) != actors.Code_UNAUTHENTICATED {
		t.Fatalf("stranger forging client-a's subject: %v, want UNAUTHENTICATED", err)
	}

	// A request relayed for a caller (token_only, as Client.As sends) is
	// not taken for the relaying process: client-a's certificate does not
	// vouch for a caller without a token.
	relayed := write("relayed-by-a")
	relayed.Meta.TokenOnly = true
	if err := call(clientA, nil, relayed); actors.CodeOf(err) != actors.Code_UNAUTHENTICATED {
		t.Fatalf("relayed write without a token through client-a: %v, want UNAUTHENTICATED", err)
	}
	viaAs, werr := cluster.NewClient(clientA, "g", self).As("").Write(ctx, kvstore.Put("as-by-a", []byte("v")))
	var ae *actors.Error
	if !errors.As(werr, &ae) || ae.Code != actors.Code_UNAUTHENTICATED {
		t.Fatalf("Client.As(\"\") through client-a: %v %v, want UNAUTHENTICATED", viaAs, werr)
	}

	// Only the allowed writes reached the state machine.
	for key, want := range map[string]bool{"by-a": true, "by-token": true, "by-bad-token": false, "forged-by-b": false, "forged-by-stranger": false,
		"relayed-by-a": false, "as-by-a": false} {
		rr, ok := grouptest.NewCaller(t, clientA).Ask(door(), &actors.ReadRequest{Meta: meta(), Query: kvstore.Get(key), Consistency: actors.Consistency_LINEARIZABLE}).(*actors.ReadResponse)
		if !ok || rr.Error.Err() != nil {
			t.Fatalf("read %s as client-a: %v", key, rr.GetError())
		}
		qr, err := kvstore.DecodeQueryResult(rr.Result)
		if err != nil {
			t.Fatal(err)
		}
		if got := qr.Found; got != want {
			t.Fatalf("key %s present %v, want %v", key, got, want)
		}
	}
}

package policies

import (
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
)

const (
	subjectA       = "CN=client-a,O=Example"
	subjectB       = "CN=client-b,O=Example"
	subjectBoth    = "CN=both,OU=ops,O=Example\\, Inc,C=DE"
	subjectRevoked = "CN=old,O=Example"
)

// subjectPolicy has a principal with TLS subjects only, one with a token
// and a subject, one without roles for the operation, and a revoked one.
func subjectPolicy() string {
	return `version: 1
roles:
  writer: [write, status]
  reader: [status]
principals:
  - name: client-a
    tls_subjects: ["` + subjectA + `"]
    roles: [writer]
  - name: client-b
    tls_subjects: ["` + subjectB + `"]
    roles: [reader]
  - name: both
    token_sha256: ` + HashToken(readerToken) + `
    tls_subjects: ['` + subjectBoth + `']
    roles: [writer]
  - name: token-writer
    token_sha256: ` + HashToken(writerToken) + `
    roles: [writer]
  - name: old
    tls_subjects: ["` + subjectRevoked + `"]
    roles: [writer]
    revoked: true
`
}

func TestAuthenticateSubject(t *testing.T) {
	p := mustParse(t, subjectPolicy())
	cases := []struct {
		subject, principal, msg string
	}{
		{subjectA, "client-a", ""},
		{subjectB, "client-b", ""},
		{subjectBoth, "both", ""},
		{"", "", "no credentials"},
		{"CN=client-c,O=Example", "", "not in the policy"},
		{"CN=client-a, O=Example", "", "not in the policy"}, // exact match only
		{"cn=client-a,o=example", "", "not in the policy"},
		{subjectRevoked, "", "revoked"},
	}
	for _, c := range cases {
		name, err := p.AuthenticateSubject(c.subject)
		if c.msg == "" {
			if err != nil || name != c.principal {
				t.Errorf("subject %q: got %q, %v; want %q", c.subject, name, err, c.principal)
			}
			continue
		}
		if err == nil || err.Code != actors.Code_UNAUTHENTICATED || !strings.Contains(err.Message, c.msg) {
			t.Errorf("subject %q: got %q, %v; want UNAUTHENTICATED %q", c.subject, name, err, c.msg)
		}
	}
	// A principal with only a subject has no token that could match.
	if _, err := p.Authenticate(writerToken); err != nil {
		t.Fatalf("token principal beside subject principals: %v", err)
	}
}

// Decide by subject: a match is that principal (and its roles decide); no
// match is UNAUTHENTICATED; a token always wins over the subject, even a
// bad one.
func TestDecidePeer(t *testing.T) {
	a, err := New(Config{Policy: []byte(subjectPolicy())}, "g", "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, token, subject, op, principal string
		code                                actors.Code
	}{
		{"subject match", "", subjectA, "write", "client-a", actors.Code_OK},
		{"subject match, role denies", "", subjectB, "write", "client-b", actors.Code_PERMISSION_DENIED},
		{"subject no match", "", "CN=stranger", "status", "", actors.Code_UNAUTHENTICATED},
		{"neither", "", "", "status", "", actors.Code_UNAUTHENTICATED},
		{"revoked subject", "", subjectRevoked, "status", "", actors.Code_UNAUTHENTICATED},
		{"token wins over subject", writerToken, subjectB, "write", "token-writer", actors.Code_OK},
		{"token wins over subject, both ways", readerToken, subjectA, "write", "both", actors.Code_OK},
		{"bad token is not rescued by subject", "unknown-token-0123456789", subjectA, "write", "", actors.Code_UNAUTHENTICATED},
		{"malformed token is not rescued by subject", "x", subjectA, "write", "", actors.Code_UNAUTHENTICATED},
	}
	for _, c := range cases {
		name, err := a.DecidePeer(c.token, c.subject, c.op)
		if actors.CodeOf(err) != c.code || name != c.principal {
			t.Errorf("%s: got %q, %v; want %q, %v", c.name, name, err, c.principal, c.code)
		}
	}
	if name, err := a.Decide("", "status"); err == nil || name != "" {
		t.Fatalf("Decide without a token: %q %v", name, err)
	}
}

// The door reads the subject from the envelope header, a token still wins,
// and without header or token the request is refused before the next stage.
func TestDoorPeerSubject(t *testing.T) {
	h := newDoor(t, Config{Policy: []byte(subjectPolicy())})
	send := func(token, subject string, req actors.Request) *actors.Error {
		t.Helper()
		f := actor.NewFuture(h.system, 5*time.Second)
		header := map[string]string{"x-trace": "t1"}
		if subject != "" {
			header[actors.HeaderPeerSubject] = subject
		}
		req.GetMeta().Credentials = token
		h.system.Root.Send(h.door, &actor.MessageEnvelope{Header: header, Message: req, Sender: f.PID()})
		res, err := f.Result()
		if err != nil {
			t.Fatal(err)
		}
		return res.(actors.Response).GetError()
	}
	write := func() actors.Request { return &actors.WriteRequest{Meta: &actors.RequestMeta{}, Command: []byte("x")} }

	if err := send("", subjectA, write()); err != nil {
		t.Fatalf("client-a by subject: %v", err)
	}
	if err := send("", "CN=stranger,O=Example", write()); actors.CodeOf(err) != actors.Code_UNAUTHENTICATED {
		t.Fatalf("unknown subject: %v", err)
	}
	if err := send("", "", write()); actors.CodeOf(err) != actors.Code_UNAUTHENTICATED {
		t.Fatalf("no subject, no token: %v", err)
	}
	if err := send("", subjectB, write()); actors.CodeOf(err) != actors.Code_PERMISSION_DENIED {
		t.Fatalf("client-b may not write: %v", err)
	}
	if err := send(writerToken, subjectB, write()); err != nil {
		t.Fatalf("token with another subject: %v", err)
	}
	if got := h.next.count(); got != 2 {
		t.Fatalf("%d requests reached the next stage, want 2", got)
	}
	if s := h.next.seen[0]; s.principal != "client-a" {
		t.Fatalf("first principal %q, want client-a", s.principal)
	}
	if s := h.next.seen[1]; s.principal != "token-writer" {
		t.Fatalf("second principal %q, want token-writer (the token wins)", s.principal)
	}
}

// tls_subjects is checked like token_sha256: refusals name the field.
func TestParseSubjectRefusals(t *testing.T) {
	h := HashToken(writerToken)
	head := "version: 1\nroles: {r: [write]}\nprincipals:\n"
	cases := []struct {
		name, doc, field string
	}{
		{"empty subject", head + "  - name: a\n    tls_subjects: [\"\"]\n", "principals[0].tls_subjects[0]"},
		{"empty subject after a good one", head + "  - name: a\n    tls_subjects: [\"CN=a\", \"\"]\n", "principals[0].tls_subjects[1]"},
		{"not RFC 2253", head + "  - name: a\n    tls_subjects: [client-a]\n", "principals[0].tls_subjects[0]"},
		{"surrounding space", head + "  - name: a\n    tls_subjects: [\" CN=a\"]\n", "principals[0].tls_subjects[0]"},
		{"too long", head + "  - name: a\n    tls_subjects: [\"CN=" + strings.Repeat("a", MaxSubjectLength) + "\"]\n", "principals[0].tls_subjects[0]"},
		{"duplicate in one principal", head + "  - name: a\n    tls_subjects: [\"CN=a\", \"CN=a\"]\n", "principals[0].tls_subjects[1]"},
		{"duplicate across principals", head + "  - name: a\n    tls_subjects: [\"CN=a\"]\n  - name: b\n    token_sha256: " + h + "\n    tls_subjects: [\"CN=a\"]\n", "principals[1].tls_subjects[0]"},
		{"neither token nor subject", head + "  - name: a\n    roles: [r]\n", "principals[0].token_sha256"},
		{"empty list and no token", head + "  - name: a\n    tls_subjects: []\n", "principals[0].token_sha256"},
		{"subject not a string", head + "  - name: a\n    tls_subjects: [{cn: a}]\n", "policy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			ae, ok := err.(*actors.Error)
			if !ok || ae.Code != actors.Code_INVALID_ARGUMENT {
				t.Fatalf("got %v, want INVALID_ARGUMENT", err)
			}
			if ae.Field != c.field {
				t.Fatalf("field %q, want %q (%v)", ae.Field, c.field, ae)
			}
			if c.field != "policy" && !strings.Contains(ae.Message, "line ") {
				t.Fatalf("message %q does not name the line", ae.Message)
			}
		})
	}
	// Both kinds of identity in one principal, and JSON, are accepted.
	p := mustParse(t, `{"version": 1, "roles": {"r": ["write"]}, "principals": [{"name": "a", "token_sha256": "`+h+`", "tls_subjects": ["CN=a,O=b"], "roles": ["r"]}]}`)
	if name, err := p.AuthenticateSubject("CN=a,O=b"); err != nil || name != "a" {
		t.Fatalf("JSON subject: %q %v", name, err)
	}
	if name, err := p.Authenticate(writerToken); err != nil || name != "a" {
		t.Fatalf("JSON token: %q %v", name, err)
	}
}

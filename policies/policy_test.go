package policies

import (
	"strings"
	"testing"

	"github.com/protoraft/protoraft/actors"
)

// Tokens of the test policy; their hashes are what the document holds.
const (
	adminToken    = "admin-token-0123456789"
	writerToken   = "writer-token-0123456789"
	readerToken   = "reader-token-0123456789"
	operatorToken = "operator-token-0123456789"
	policyToken   = "policy-token-0123456789"
	nobodyToken   = "nobody-token-0123456789"
	revokedToken  = "revoked-token-0123456789"
)

// testPolicy defines one role per kind of caller, one principal per role,
// one principal without roles and a revoked one.
func testPolicy() string {
	return `version: 1
roles:
  admin: ["*"]
  writer: [write, read_linearizable, read_lease, read_stale, leader, status]
  reader: [read_linearizable, read_lease, read_stale, leader, members, status, get_timeouts]
  operator: [add_voter, add_nonvoter, promote, demote, remove, transfer_leadership,
             update_timeouts, get_timeouts, snapshot, members, status, leader]
  policy-admin: [policy_update]
principals:
  - name: alice
    token_sha256: ` + HashToken(adminToken) + `
    roles: [admin]
  - name: writer-svc
    token_sha256: ` + HashToken(writerToken) + `
    roles: [writer]
  - name: dashboard
    token_sha256: ` + HashToken(readerToken) + `
    roles: [reader]
  - name: ops
    token_sha256: ` + HashToken(operatorToken) + `
    roles: [operator]
  - name: sec
    token_sha256: ` + HashToken(policyToken) + `
    roles: [policy-admin]
  - name: nobody
    token_sha256: ` + HashToken(nobodyToken) + `
  - name: mallory
    token_sha256: ` + HashToken(revokedToken) + `
    roles: [admin]
    revoked: true
`
}

func mustParse(t testing.TB, doc string) *Policy {
	t.Helper()
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return p
}

func TestParseJSON(t *testing.T) {
	doc := `{"version": 1, "roles": {"r": ["write"]},
 "principals": [{"name": "a", "token_sha256": "` + HashToken(writerToken) + `", "roles": ["r"]}]}`
	p := mustParse(t, doc)
	name, err := p.Authenticate(writerToken)
	if err != nil || name != "a" || !p.Allowed("a", "write") || p.Allowed("a", "read_stale") {
		t.Fatalf("JSON policy: name %q err %v", name, err)
	}
}

// Every bad document is refused with the field at fault and, where the
// document has one, the line.
func TestParseRefusals(t *testing.T) {
	h := HashToken(writerToken)
	cases := []struct {
		name, doc, field, line string
	}{
		{"empty", "", "policy", ""},
		{"syntax", "version: 1\nroles: [\n", "policy", "line"},
		{"unknown top field", "version: 1\nroles: {}\nextra: 1\n", "policy", "line 3"},
		{"wrong version", "version: 2\nroles: {}\n", "version", ""},
		{"no version", "roles: {}\n", "version", ""},
		{"roles not a map", "version: 1\nroles: [a]\n", "roles", "line 2"},
		{"role not a list", "version: 1\nroles:\n  r: write\n", "roles.r", "line 3"},
		{"unknown op", "version: 1\nroles:\n  r: [write, wrte]\n", "roles.r[1]", "line 3"},
		{"bad role name", "version: 1\nroles:\n  \"a b\": [write]\n", "roles.a b", "line 3"},
		{"bad hash", "version: 1\nroles: {r: [write]}\nprincipals:\n  - name: a\n    token_sha256: abc\n    roles: [r]\n", "principals[0].token_sha256", "line 4"},
		{"undefined role", "version: 1\nroles: {r: [write]}\nprincipals:\n  - name: a\n    token_sha256: " + h + "\n    roles: [x]\n", "principals[0].roles[0]", "line 4"},
		{"unknown principal field", "version: 1\nroles: {r: [write]}\nprincipals:\n  - name: a\n    token: x\n", "policy", "line 5"},
		{"duplicate principal", "version: 1\nroles: {r: [write]}\nprincipals:\n  - name: a\n    token_sha256: " + h + "\n  - name: a\n    token_sha256: " + HashToken(readerToken) + "\n", "principals[1].name", "line 6"},
		{"duplicate token", "version: 1\nroles: {r: [write]}\nprincipals:\n  - name: a\n    token_sha256: " + h + "\n  - name: b\n    token_sha256: " + h + "\n", "principals[1].token_sha256", "line 6"},
		{"bad principal name", "version: 1\nroles: {r: [write]}\nprincipals:\n  - name: \"\"\n    token_sha256: " + h + "\n", "principals[0].name", "line 4"},
		{"too large", "version: 1\n#" + strings.Repeat("x", MaxDocumentSize), "policy", ""},
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
			if !strings.Contains(ae.Message, c.line) {
				t.Fatalf("message %q does not name %q", ae.Message, c.line)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	p := mustParse(t, testPolicy())
	cases := []struct {
		name, token, principal, msg string
	}{
		{"known", writerToken, "writer-svc", ""},
		{"missing", "", "", "no credentials"},
		{"malformed: short", "abc", "", "malformed"},
		{"malformed: characters", "bad token with spaces!!", "", "malformed"},
		{"malformed: long", strings.Repeat("a", MaxTokenLength+1), "", "malformed"},
		{"unknown", "unknown-token-0123456789", "", "unknown"},
		{"revoked", revokedToken, "", "revoked"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name, err := p.Authenticate(c.token)
			if c.msg == "" {
				if err != nil || name != c.principal {
					t.Fatalf("got %q, %v", name, err)
				}
				return
			}
			if err == nil || err.Code != actors.Code_UNAUTHENTICATED || !strings.Contains(err.Message, c.msg) {
				t.Fatalf("got %q, %v; want UNAUTHENTICATED %q", name, err, c.msg)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	if err := (Config{Insecure: true, Policy: []byte(testPolicy())}).Validate(); err == nil || err.(*actors.Error).Field != "security.insecure" {
		t.Fatalf("insecure with a policy: %v", err)
	}
	if err := (Config{PolicyFile: "x", Policy: []byte(testPolicy())}).Validate(); err == nil || err.(*actors.Error).Field != "security.policy" {
		t.Fatalf("file and document: %v", err)
	}
	if err := (Config{PolicyFile: "/nonexistent/policy.yaml"}).Validate(); err == nil || err.(*actors.Error).Field != "security.policy_file" {
		t.Fatalf("missing file: %v", err)
	}
	if !(Config{}).IsZero() || (Config{Insecure: true}).IsZero() {
		t.Fatal("IsZero")
	}
}

// SetPolicy keeps the policy in force when the new one is older or bad.
func TestSetPolicy(t *testing.T) {
	a, err := New(Config{Policy: []byte(testPolicy())}, "g", "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	only := "version: 1\nroles: {r: [status]}\nprincipals:\n  - name: w\n    token_sha256: " + HashToken(writerToken) + "\n    roles: [r]\n"
	a.SetPolicy([]byte(only), 10)
	if _, err := a.Decide(writerToken, "write"); err == nil || err.Code != actors.Code_PERMISSION_DENIED {
		t.Fatalf("after change: %v", err)
	}
	a.SetPolicy([]byte(testPolicy()), 5)  // older: ignored
	a.SetPolicy([]byte("version: 9"), 11) // bad: ignored
	if _, idx := a.Policy(); idx != 10 {
		t.Fatalf("policy index %d, want 10", idx)
	}
	if _, err := a.Decide(adminToken, "status"); err == nil || err.Code != actors.Code_UNAUTHENTICATED {
		t.Fatalf("admin is gone from the new policy: %v", err)
	}
}

// FuzzParse: no document makes the parser panic, and what it accepts it
// accepts again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(testPolicy()))
	f.Add([]byte(`{"version":1,"roles":{"r":["*"]},"principals":[]}`))
	f.Add([]byte("version: 1\nroles: {r: [write]}\nprincipals:\n  - name: a\n    token_sha256: 00\n"))
	f.Add([]byte("version: 1\nroles: &a [*a]\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := Parse(doc)
		if err != nil {
			if ae, ok := err.(*actors.Error); !ok || ae.Code != actors.Code_INVALID_ARGUMENT {
				t.Fatalf("refusal is not INVALID_ARGUMENT: %v", err)
			}
			return
		}
		if _, err := Parse(doc); err != nil {
			t.Fatalf("accepted once, refused again: %v", err)
		}
		_ = p.Roles()
	})
}

// FuzzAuthenticate: any credential string is answered without a panic,
// either with a principal or UNAUTHENTICATED.
func FuzzAuthenticate(f *testing.F) {
	p := mustParse(f, testPolicy())
	for _, s := range []string{"", adminToken, revokedToken, "x", strings.Repeat("z", 600), "tok\x00en-0123456789abcdef"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		name, err := p.Authenticate(token)
		if err != nil && err.Code != actors.Code_UNAUTHENTICATED {
			t.Fatalf("code %v", err.Code)
		}
		if err == nil && name == "" {
			t.Fatal("authenticated without a principal")
		}
	})
}

// A parsed policy gives its document back byte for byte, comments
// included, and describes its roles and principals without token hashes.
func TestPolicyDescribesItself(t *testing.T) {
	doc := "# kept\n" + testPolicy()
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	got := p.Document()
	if string(got) != doc {
		t.Fatalf("Document:\n%s", got)
	}
	got[0] = 'X' // a copy: the policy in force cannot be changed through it
	if string(p.Document()) != doc {
		t.Fatal("Document returned the policy's own bytes")
	}
	if ops := p.Permissions("writer"); strings.Join(ops, ",") != "leader,read_lease,read_linearizable,read_stale,status,write" {
		t.Errorf("Permissions(writer) = %v", ops)
	}
	if p.Permissions("nosuch") != nil {
		t.Error("Permissions of an undefined role")
	}
	var revoked []string
	for _, pr := range p.Principals() {
		if !pr.HasToken {
			t.Errorf("principal %s: no token", pr.Name)
		}
		if pr.Revoked {
			revoked = append(revoked, pr.Name)
		}
	}
	if len(p.Principals()) == 0 || len(revoked) != 1 {
		t.Errorf("principals %+v", p.Principals())
	}
}

package policies

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/protoraft/protoraft/actors"
)

// SchemaVersion is the only policy document version this build reads.
const SchemaVersion = 1

// MaxDocumentSize bounds a policy document, file or PolicyUpdateRequest: it
// is replicated in every snapshot and parsed on every node.
const MaxDocumentSize = 1 << 20

// Token length bounds: shorter tokens are guessable, longer ones are a
// hashing cost an unauthenticated caller could impose on the front door.
const (
	MinTokenLength = 16
	MaxTokenLength = 512
)

// Wildcard, as a role's permission, allows every operation, including ones
// added by later releases. It must be written out: nothing implies it.
const Wildcard = "*"

// Operations are the operation names a role may grant: the names actors.Op
// gives the protocol's requests, plus operations served outside the node
// ("metrics", "health"). A permission naming anything else is refused, so a
// typo cannot silently grant nothing (or, worse, be read as a wildcard).
var Operations = []string{
	"write",
	"read_linearizable", "read_lease", "read_stale",
	"leader", "members", "status", "get_timeouts",
	"add_voter", "add_nonvoter", "promote", "demote", "remove",
	"transfer_leadership", "update_timeouts", "snapshot", "snapshot_read",
	"policy_update", "policy_read", "metrics", "health",
	"update_limits", "limiter_stats",
}

// adminOps are the operations whose every decision goes to the audit log.
var adminOps = map[string]bool{
	"add_voter": true, "add_nonvoter": true, "promote": true, "demote": true, "remove": true,
	"transfer_leadership": true, "update_timeouts": true, "snapshot": true, "snapshot_read": true, "policy_update": true,
	// Reading the policy back tells who may do what (and the token
	// hashes), so who asked is worth a record as much as who changed it.
	"policy_read": true, "update_limits": true,
}

// IsAdministrative reports whether op is an administrative operation, whose
// every authorization decision is audited.
func IsAdministrative(op string) bool { return adminOps[op] }

// Policy is a parsed, validated policy document. It is immutable: a change
// builds a new Policy, and the authorizer swaps the pointer.
type Policy struct {
	roles      map[string]map[string]bool
	principals []principal
	// subjects maps a TLS subject to the index of its principal.
	subjects map[string]int
	digest   string
	// doc is the document as it was given, so the policy can be read back
	// byte for byte (comments and order included).
	doc []byte
}

// principal is one identity of the document with the SHA-256 of its token
// (when it has one) and its TLS subjects.
type principal struct {
	name     string
	hasToken bool
	hash     [sha256.Size]byte
	subjects []string
	roles    []string
	revoked  bool
}

// document is the schema of a policy file; see doc.go.
type document struct {
	Version    int                 `yaml:"version"`
	Roles      yaml.Node           `yaml:"roles"`
	Principals []principalDocument `yaml:"principals"`
}

type principalDocument struct {
	Name        string   `yaml:"name"`
	TokenSHA256 string   `yaml:"token_sha256"`
	TLSSubjects []string `yaml:"tls_subjects"`
	Roles       []string `yaml:"roles"`
	Revoked     bool     `yaml:"revoked"`
	line        int
}

// UnmarshalYAML keeps the entry's line, so semantic errors can point at it.
func (p *principalDocument) UnmarshalYAML(n *yaml.Node) error {
	type plain principalDocument
	var v plain
	dec := n.Decode
	if err := dec(&v); err != nil {
		return err
	}
	if err := knownKeys(n, "name", "token_sha256", "tls_subjects", "roles", "revoked"); err != nil {
		return err
	}
	*p = principalDocument(v)
	p.line = n.Line
	return nil
}

// knownKeys refuses a mapping key the schema does not define: yaml.v3's
// KnownFields does not reach into custom unmarshalers.
func knownKeys(n *yaml.Node, keys ...string) error {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(keys, k.Value) {
			return fmt.Errorf("line %d: field %s not found in the schema", k.Line, k.Value)
		}
	}
	return nil
}

// Parse reads a policy document (YAML, or JSON, which is YAML) and checks
// it. A refusal is an *actors.Error with code INVALID_ARGUMENT whose Field
// names the field at fault (for example "principals[2].token_sha256") and
// whose message starts with the line ("line 14: ...").
func Parse(doc []byte) (*Policy, error) {
	p, err := parse(doc)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// parse is Parse with the concrete error type, so callers inside the
// package never meet a typed nil in an error interface.
func parse(doc []byte) (*Policy, *actors.Error) {
	if len(doc) > MaxDocumentSize {
		return nil, actors.InvalidArgument("policy", "document is %d bytes, larger than %d", len(doc), MaxDocumentSize)
	}
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil, actors.InvalidArgument("policy", "document is empty")
	}
	var d document
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil {
		return nil, syntaxError(err)
	}
	if d.Version != SchemaVersion {
		return nil, actors.InvalidArgument("version", "version %d: this build reads version %d", d.Version, SchemaVersion)
	}
	p := &Policy{roles: map[string]map[string]bool{}, subjects: map[string]int{}}
	sum := sha256.Sum256(doc)
	p.digest = hex.EncodeToString(sum[:])
	p.doc = bytes.Clone(doc)
	if d.Roles.Kind != yaml.MappingNode {
		return nil, actors.InvalidArgument("roles", "line %d: roles must be a mapping of role name to a list of operations", max(d.Roles.Line, 1))
	}
	for i := 0; i+1 < len(d.Roles.Content); i += 2 {
		k, v := d.Roles.Content[i], d.Roles.Content[i+1]
		field := "roles." + k.Value
		if err := validName(k.Value); err != nil {
			return nil, actors.InvalidArgument(field, "line %d: role name: %v", k.Line, err)
		}
		if _, dup := p.roles[k.Value]; dup {
			return nil, actors.InvalidArgument(field, "line %d: role %q is defined twice", k.Line, k.Value)
		}
		if v.Kind != yaml.SequenceNode {
			return nil, actors.InvalidArgument(field, "line %d: a role is a list of operations", v.Line)
		}
		perms := map[string]bool{}
		for j, op := range v.Content {
			f := fmt.Sprintf("%s[%d]", field, j)
			if op.Kind != yaml.ScalarNode {
				return nil, actors.InvalidArgument(f, "line %d: an operation is a string", op.Line)
			}
			if op.Value != Wildcard && !slices.Contains(Operations, op.Value) {
				return nil, actors.InvalidArgument(f, "line %d: unknown operation %q (known: %s, or %q for all)",
					op.Line, op.Value, strings.Join(Operations, ", "), Wildcard)
			}
			perms[op.Value] = true
		}
		p.roles[k.Value] = perms
	}
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]string{}
	for i, pd := range d.Principals {
		f := fmt.Sprintf("principals[%d]", i)
		if err := validName(pd.Name); err != nil {
			return nil, actors.InvalidArgument(f+".name", "line %d: %v", pd.line, err)
		}
		if names[pd.Name] {
			return nil, actors.InvalidArgument(f+".name", "line %d: principal %q is defined twice", pd.line, pd.Name)
		}
		names[pd.Name] = true
		pr := principal{name: pd.Name, revoked: pd.Revoked}
		switch {
		case pd.TokenSHA256 != "":
			raw, err := hex.DecodeString(pd.TokenSHA256)
			if err != nil || len(raw) != sha256.Size {
				return nil, actors.InvalidArgument(f+".token_sha256", "line %d: must be the SHA-256 of the token in hex (64 characters); see HashToken", pd.line)
			}
			pr.hasToken, pr.hash = true, [sha256.Size]byte(raw)
			if other, dup := hashes[pr.hash]; dup {
				return nil, actors.InvalidArgument(f+".token_sha256", "line %d: the same token as principal %q", pd.line, other)
			}
			hashes[pr.hash] = pd.Name
		case len(pd.TLSSubjects) == 0:
			return nil, actors.InvalidArgument(f+".token_sha256", "line %d: principal %q has neither token_sha256 nor tls_subjects", pd.line, pd.Name)
		}
		for j, subject := range pd.TLSSubjects {
			sf := fmt.Sprintf("%s.tls_subjects[%d]", f, j)
			if err := checkSubjectSyntax(subject); err != nil {
				return nil, actors.InvalidArgument(sf, "line %d: %v", pd.line, err)
			}
			if other, dup := p.subjects[subject]; dup {
				return nil, actors.InvalidArgument(sf, "line %d: subject %q is already listed for principal %q", pd.line, subject, d.Principals[other].Name)
			}
			p.subjects[subject] = i
			pr.subjects = append(pr.subjects, subject)
		}
		for j, r := range pd.Roles {
			if _, ok := p.roles[r]; !ok {
				return nil, actors.InvalidArgument(fmt.Sprintf("%s.roles[%d]", f, j), "line %d: role %q is not defined", pd.line, r)
			}
			pr.roles = append(pr.roles, r)
		}
		p.principals = append(p.principals, pr)
	}
	return p, nil
}

// syntaxError turns a yaml error into INVALID_ARGUMENT, keeping its line.
func syntaxError(err error) *actors.Error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return actors.InvalidArgument("policy", "%s", te.Errors[0])
	}
	return actors.InvalidArgument("policy", "%v", err)
}

// validName checks a role or principal name: names appear in audit records
// and log fields, so they are kept to a plain character set.
func validName(s string) error {
	if s == "" || len(s) > 128 {
		return errors.New("must be 1 to 128 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-@:", c) >= 0) {
			return fmt.Errorf("%q: only letters, digits and . _ - @ : are allowed", s)
		}
	}
	return nil
}

// Digest is the SHA-256 of the document the policy was parsed from, in hex;
// audit records name a policy by it.
func (p *Policy) Digest() string { return p.digest }

// Document returns a copy of the document the policy was parsed from.
func (p *Policy) Document() []byte { return bytes.Clone(p.doc) }

// Permissions returns the sorted operations role grants ("*" for all), nil
// for a role the policy does not define.
func (p *Policy) Permissions(role string) []string {
	perms, ok := p.roles[role]
	if !ok {
		return nil
	}
	out := make([]string, 0, len(perms))
	for op := range perms {
		out = append(out, op)
	}
	sort.Strings(out)
	return out
}

// PrincipalInfo describes one principal of a policy, without its token
// hash: what an operator's listing shows.
type PrincipalInfo struct {
	// Name is the principal's name, as audit records write it.
	Name string `json:"name"`
	// HasToken says the principal authenticates with a token (its hash is
	// in the document, never in PrincipalInfo).
	HasToken bool `json:"has_token"`
	// TLSSubjects are the certificate subjects that are this principal.
	TLSSubjects []string `json:"tls_subjects,omitempty"`
	// Roles are the principal's roles, in document order.
	Roles []string `json:"roles"`
	// Revoked principals are refused as UNAUTHENTICATED.
	Revoked bool `json:"revoked,omitempty"`
}

// Principals returns the policy's principals in document order.
func (p *Policy) Principals() []PrincipalInfo {
	out := make([]PrincipalInfo, len(p.principals))
	for i, pr := range p.principals {
		out[i] = PrincipalInfo{Name: pr.name, HasToken: pr.hasToken, TLSSubjects: slices.Clone(pr.subjects),
			Roles: slices.Clone(pr.roles), Revoked: pr.revoked}
	}
	return out
}

// Roles returns the sorted role names the policy defines.
func (p *Policy) Roles() []string {
	out := make([]string, 0, len(p.roles))
	for r := range p.roles {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Authenticate finds the principal a bearer token belongs to. It returns
// an UNAUTHENTICATED error for a missing, malformed, unknown or revoked
// token. Every principal's hash is compared, in constant time, so the time
// taken does not tell which one (or whether any) matched.
func (p *Policy) Authenticate(token string) (string, *actors.Error) {
	if token == "" {
		return "", actors.Errorf(actors.Code_UNAUTHENTICATED, "no credentials")
	}
	if err := checkTokenSyntax(token); err != nil {
		return "", actors.Errorf(actors.Code_UNAUTHENTICATED, "malformed credentials: %v", err)
	}
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i := range p.principals {
		// Which principals have a token is no secret; the hashes are.
		if p.principals[i].hasToken && subtle.ConstantTimeCompare(sum[:], p.principals[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", actors.Errorf(actors.Code_UNAUTHENTICATED, "unknown credentials")
	}
	if p.principals[found].revoked {
		return "", actors.Errorf(actors.Code_UNAUTHENTICATED, "revoked credentials")
	}
	return p.principals[found].name, nil
}

// AuthenticateSubject finds the principal whose tls_subjects list subject,
// the subject of a verified TLS client certificate (see
// actors.HeaderPeerSubject). The match is exact on the RFC 2253 string. It
// returns an UNAUTHENTICATED error for a missing or unknown subject, or the
// subject of a revoked principal. Subjects are not secrets (a certificate
// is public; the private key is the proof), so the lookup is a plain map
// lookup.
func (p *Policy) AuthenticateSubject(subject string) (string, *actors.Error) {
	if subject == "" {
		return "", actors.Errorf(actors.Code_UNAUTHENTICATED, "no credentials")
	}
	i, ok := p.subjects[subject]
	if !ok {
		return "", actors.Errorf(actors.Code_UNAUTHENTICATED, "no credentials, and the TLS client certificate's subject is not in the policy")
	}
	if p.principals[i].revoked {
		return "", actors.Errorf(actors.Code_UNAUTHENTICATED, "revoked credentials")
	}
	return p.principals[i].name, nil
}

// Allowed reports whether one of the principal's roles grants op.
func (p *Policy) Allowed(name, op string) bool {
	for i := range p.principals {
		if p.principals[i].name != name {
			continue
		}
		for _, r := range p.principals[i].roles {
			if perms := p.roles[r]; perms[op] || perms[Wildcard] {
				return true
			}
		}
	}
	return false
}

// MaxSubjectLength bounds a tls_subjects entry.
const MaxSubjectLength = 1024

// checkSubjectSyntax refuses what can never equal pkix.Name.String of a
// certificate's subject: an empty string, one without any "attribute=value"
// pair, or one with surrounding white space (which String escapes).
func checkSubjectSyntax(s string) error {
	switch {
	case s == "":
		return errors.New("a TLS subject must not be empty")
	case len(s) > MaxSubjectLength:
		return fmt.Errorf("a TLS subject is at most %d bytes", MaxSubjectLength)
	case strings.TrimSpace(s) != s:
		return fmt.Errorf("TLS subject %q has leading or trailing white space; write it exactly as the certificate's subject in RFC 2253 form, e.g. \"CN=client-a,O=Example\"", s)
	case !strings.Contains(s, "="):
		return fmt.Errorf("TLS subject %q is not in RFC 2253 form (attribute=value pairs, e.g. \"CN=client-a,O=Example\")", s)
	}
	return nil
}

// checkTokenSyntax accepts the characters of base64, base64url and hex
// tokens; anything else is refused before it is hashed.
func checkTokenSyntax(token string) error {
	if len(token) < MinTokenLength || len(token) > MaxTokenLength {
		return fmt.Errorf("length must be %d to %d", MinTokenLength, MaxTokenLength)
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0) {
			return errors.New("only letters, digits and - . _ ~ + / = are allowed")
		}
	}
	return nil
}

// HashToken returns what a policy stores for token: its SHA-256 in hex.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewToken returns a fresh random bearer token (32 bytes, base64url).
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

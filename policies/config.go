package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
)

// Config says how a group's front door authenticates and authorizes.
//
// The zero value runs without authentication, like Insecure, but is logged
// as an unconfigured door: it exists so tests and first experiments work
// without a policy. Production must set PolicyFile or Policy.
type Config struct {
	// Insecure turns authentication and authorization off: every request
	// is allowed, as principal "anonymous". Logged as a warning at start.
	// It cannot be combined with a policy.
	Insecure bool
	// PolicyFile is the path of the policy document (YAML or JSON, see the
	// package documentation), read once at spawn.
	PolicyFile string
	// Policy is the policy document itself, for programs that do not keep
	// it in a file. Set at most one of PolicyFile and Policy.
	Policy []byte
	// AuditLogger receives one record per administrative decision, at
	// info level; route it wherever audit records must go. Default: the
	// group's logger, named "audit", which drops the records when it
	// shows warnings only: give audit a logger of its own at info level.
	AuditLogger *zap.Logger
}

// IsZero reports whether c is the zero value: no policy and no explicit
// Insecure.
func (c Config) IsZero() bool {
	return !c.Insecure && c.PolicyFile == "" && c.Policy == nil && c.AuditLogger == nil
}

// Validate checks the configuration and parses its policy, naming the
// field at fault (prefixed "security.").
func (c Config) Validate() error {
	if _, err := c.load(); err != nil {
		return err
	}
	return nil
}

// load returns the policy at spawn, nil when insecure.
func (c Config) load() (*Policy, *actors.Error) {
	switch {
	case c.Insecure && (c.PolicyFile != "" || c.Policy != nil):
		return nil, actors.InvalidArgument("security.insecure", "insecure mode cannot be combined with a policy")
	case c.PolicyFile != "" && c.Policy != nil:
		return nil, actors.InvalidArgument("security.policy", "set either a policy file or a policy document, not both")
	case c.PolicyFile != "":
		doc, err := os.ReadFile(c.PolicyFile)
		if err != nil {
			return nil, actors.InvalidArgument("security.policy_file", "%v", err)
		}
		p, perr := parse(doc)
		if perr != nil {
			return nil, prefixed(perr, "security.policy_file: "+c.PolicyFile)
		}
		return p, nil
	case c.Policy != nil:
		p, perr := parse(c.Policy)
		if perr != nil {
			return nil, prefixed(perr, "security.policy")
		}
		return p, nil
	}
	return nil, nil
}

// prefixed says where a refused document came from without losing the
// field inside it.
func prefixed(e *actors.Error, where string) *actors.Error {
	out := proto.Clone(e).(*actors.Error)
	out.Message = where + ": " + e.Message
	return out
}

// Authorizer holds the policy in force on one node and makes the
// decisions. It outlives restarts of the authorizer actor (Props), and the
// node's state machine swaps a committed policy into it (SetPolicy).
type Authorizer struct {
	insecure bool
	group    string
	node     string
	log      *zap.Logger
	audit    *zap.Logger
	current  atomic.Pointer[policyInForce]
}

// policyInForce is the policy and where it came from.
type policyInForce struct {
	policy *Policy
	// index is the log index it was committed at; 0 for the spawn policy.
	index uint64
}

// New validates cfg, loads its policy and returns the node's authorizer.
// log receives the start-up warning of an insecure door; group and node
// name the node in audit records.
func New(cfg Config, group, node string, log *zap.Logger) (*Authorizer, error) {
	p, err := cfg.load()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("group", group), zap.String("node", node), zap.String("component", "authorizer"))
	audit := cfg.AuditLogger
	if audit == nil {
		audit = log.Named("audit")
	}
	a := &Authorizer{insecure: p == nil, group: group, node: node, log: log,
		audit: audit}
	if cfg.AuditLogger != nil {
		a.audit = audit.With(zap.String("group", group), zap.String("node", node))
	}
	switch {
	case cfg.Insecure:
		warnInsecure(log, group, "INSECURE: authentication and authorization are off (security.insecure); every caller may do everything")
	case p == nil:
		warnInsecure(log, group, "INSECURE: no security policy configured; every caller may do everything. Set cluster.Config.Security for production")
	default:
		a.current.Store(&policyInForce{policy: p})
		log.Info("security policy loaded", zap.String("digest", p.Digest()), zap.Strings("roles", p.Roles()))
	}
	return a, nil
}

// Insecure reports whether the door lets every request through.
func (a *Authorizer) Insecure() bool { return a.insecure }

// CheckPolicy parses a proposed policy document without installing it: a
// PolicyUpdateRequest is refused with it before anything reaches Raft.
func (a *Authorizer) CheckPolicy(doc []byte) *actors.Error {
	_, err := parse(doc)
	return err
}

// SetPolicy installs a policy committed at index. The node's state machine
// calls it from Raft's FSM goroutine (apply and restore), so it only parses
// and swaps a pointer. An older index than the one in force is ignored,
// which keeps a late call from bringing back a replaced policy. An
// insecure door records nothing: it was told to let everyone in.
func (a *Authorizer) SetPolicy(doc []byte, index uint64) {
	if a.insecure {
		a.log.Warn("a policy was committed, but this node's door is insecure and does not enforce it", zap.Uint64("index", index))
		return
	}
	p, err := parse(doc)
	if err != nil {
		// Checked before Raft, so only a newer build's schema gets here;
		// keeping the old policy is the safe side.
		a.log.Error("committed policy refused; the previous policy stays in force", zap.Uint64("index", index), zap.Error(err))
		return
	}
	for {
		cur := a.current.Load()
		if cur != nil && cur.index > index {
			return
		}
		if a.current.CompareAndSwap(cur, &policyInForce{policy: p, index: index}) {
			a.log.Info("committed policy in force", zap.Uint64("index", index), zap.String("digest", p.Digest()))
			return
		}
	}
}

// Policy returns the policy in force and the index it was committed at (0
// for the one loaded at spawn); nil when insecure.
func (a *Authorizer) Policy() (*Policy, uint64) {
	cur := a.current.Load()
	if cur == nil {
		return nil, 0
	}
	return cur.policy, cur.index
}

// Decide authenticates the credentials and authorizes op. It returns the
// principal, and nil or an UNAUTHENTICATED or PERMISSION_DENIED error.
func (a *Authorizer) Decide(credentials, op string) (string, *actors.Error) {
	return a.DecidePeer(credentials, "", op)
}

// DecidePeer is Decide for a request that may also come with the subject
// of its connection's verified TLS client certificate (the
// actors.HeaderPeerSubject header; "" when none). Credentials always win:
// a request that carries a token is authenticated by the token alone, and
// a bad token is refused even when the subject would match. Without a
// token, the principal whose tls_subjects list peerSubject is the caller;
// without either, the request is UNAUTHENTICATED.
func (a *Authorizer) DecidePeer(credentials, peerSubject, op string) (string, *actors.Error) {
	if a.insecure {
		return Anonymous, nil
	}
	p, _ := a.Policy()
	var name string
	var err *actors.Error
	if credentials == "" && peerSubject != "" {
		name, err = p.AuthenticateSubject(peerSubject)
	} else {
		name, err = p.Authenticate(credentials)
	}
	if err != nil {
		return "", err
	}
	if !p.Allowed(name, op) {
		return name, actors.Errorf(actors.Code_PERMISSION_DENIED, "principal %s may not %s", name, op)
	}
	return name, nil
}

// Anonymous is the principal of every request at an insecure door.
const Anonymous = "anonymous"

// documentDigest names a proposed policy in audit records.
func documentDigest(doc []byte) string {
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:])
}

// warned holds the groups whose insecure door this process has warned
// about: a process that runs several nodes of one group (a one-process
// sample, a test) needs the warning once, not once per node.
var warned sync.Map

func warnInsecure(log *zap.Logger, group, msg string) {
	if _, done := warned.LoadOrStore(group, true); !done {
		log.Warn(msg)
	}
}

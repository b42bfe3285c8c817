// Package policies is authentication, authorization and audit at a
// group's front door: the authorizer actor, the policy document it
// enforces, and the audit records of administrative decisions.
//
// It owns: turning a request's credentials (a bearer token in
// RequestMeta.credentials) or, without a token, the subject of its
// connection's verified TLS client certificate (the
// actors.HeaderPeerSubject header) into a principal; deciding, from the roles of
// that principal, whether the request's operation (actors.Op) is allowed;
// refusing at once with UNAUTHENTICATED or PERMISSION_DENIED; forwarding
// allowed requests to the next stage with the principal in the
// actors.HeaderPrincipal header and the caller kept as sender; parsing and
// checking policy documents; and one audit record per administrative
// decision (membership, leadership transfer, timeouts, policy changes and
// read-backs, snapshot, limits), allowed or denied, with principal, operation, target, result
// and time, on Config.AuditLogger.
//
// It must never: store or log a token (only SHA-256 hashes are kept, and
// compared in constant time); let a request it refused reach the limiter or
// Raft; block its mailbox; import raftactor, limiter, telemetry or cluster;
// or change the policy in force by any path other than the policy loaded at
// spawn and the policies committed through Raft (Authorizer.SetPolicy, fed
// by the node's state machine), so every node enforces the policy of the log.
//
// # Policy document
//
// YAML, or JSON (a subset of YAML). Unknown fields are refused; every
// refusal is INVALID_ARGUMENT naming the field (e.g. "roles.ops[2]",
// "principals[1].token_sha256") with the line in the message.
//
//	version: 1                 # required; the only version this build reads
//	roles:                     # role name -> operations it allows
//	  admin: ["*"]             # "*" allows everything; it must be written out
//	  writer: [write, read_linearizable, read_lease, read_stale, leader, status]
//	  operator: [add_voter, add_nonvoter, promote, demote, remove,
//	             transfer_leadership, update_timeouts, get_timeouts, snapshot,
//	             members, status, leader]
//	  security: [policy_update]
//	principals:
//	  - name: deploy-bot                     # letters, digits, . _ - @ :
//	    token_sha256: 9f86d0...              # HashToken(token): 64 hex characters
//	    roles: [writer]
//	  - name: old-laptop
//	    token_sha256: 2c26b4...
//	    roles: [admin]
//	    revoked: true                        # refused as UNAUTHENTICATED
//	  - name: billing-service                # a TLS identity, no token
//	    tls_subjects: ["CN=billing,OU=payments,O=Example"]
//	    roles: [writer]
//
// Operations are the names of Operations: write, read_linearizable,
// read_lease, read_stale, leader, members, status, get_timeouts, add_voter,
// add_nonvoter, promote, demote, remove, transfer_leadership,
// update_timeouts, snapshot, snapshot_read, policy_update, policy_read,
// metrics, health, update_limits, limiter_stats. Anything not granted is denied. Tokens are 16 to 512
// characters of letters, digits and - . _ ~ + / =; NewToken makes one.
//
// A principal has a token_sha256, tls_subjects, or both (one of them is
// required). A tls_subjects entry is compared exactly, byte for byte, with
// the subject of the caller's verified client certificate as Go's
// crypto/x509/pkix.Name.String writes it: RFC 2253, most specific attribute
// first, no spaces after the commas, for example
// "CN=client-a,OU=ops,O=Example,C=DE", with "," "+" and the like escaped by
// a backslash (in YAML, put such a subject in single quotes:
// 'CN=billing,O=Example\, Inc'). For a subject in the usual order (C,
// ST, L, O, OU, CN) `openssl x509 -noout -subject -nameopt RFC2253` prints
// the same string; Subject.String() of the parsed certificate is the
// reference (Go orders the standard attributes itself, and writes
// attributes it does not name as OID=#hex). A subject may be
// listed only once in the whole document; an empty one, or one that is not
// attribute=value pairs, is refused with its field
// ("principals[1].tls_subjects[0]").
//
// # Which principal a request is
//
// A request that carries a token (RequestMeta.credentials) is the token's
// principal, and a bad token is UNAUTHENTICATED: the token always wins,
// even over a certificate whose subject is in the policy. A request without
// a token is the principal whose tls_subjects list the actors.HeaderPeerSubject
// header of its envelope; without that either, it is UNAUTHENTICATED. A
// revoked principal is refused both ways. A request marked
// RequestMeta.token_only (what cluster.Client.As sends for the callers it
// relays, such as an HTTP front) is authenticated by its token alone: the
// certificate is the relaying process's, not its caller's.
//
// The door takes the header as given. That is safe because the endpoint
// guard of remoteguard.Config overwrites the header on every message
// received over remote with the subject of the connection's verified client
// certificate (remoteguard.MutualTLS), and deletes it when there is none: a
// remote caller cannot choose it. A local (in-process) sender can set it,
// and is trusted code of the same program. A remote endpoint started
// without remoteguard.Config has no such guard, so a group reachable
// through one must not list tls_subjects.
//
// # Where the policy comes from
//
// At spawn, Config.PolicyFile or Config.Policy. At run time only through
// Raft: a PolicyUpdateRequest (permission policy_update) is checked at the
// door and again at the node, written to the log as a system entry, and
// once it applies every node's state machine hands it to its Authorizer
// (SetPolicy). The committed policy is kept in snapshots and replaces the
// spawn policy as soon as a node has applied or restored it; until then a
// restarting node enforces its spawn policy, so keep the file in step with
// the committed policy. A bad change is refused before Raft and the policy
// in force stays.
//
// A PolicyGetRequest (permission policy_read, audited) reads the policy
// back, byte for byte as it was set: the last one committed, or before the
// first one the spawn policy of the node that answers. It is answered by
// the node from its state machine, linearizably by default (see
// actors.PolicyGetRequest), so any member answers with every change
// committed before the request.
//
// # Without a policy
//
// Config{Insecure: true} lets every request in, as principal "anonymous",
// and says so in a warning at start, once per group and process. The zero
// Config does the same (with a warning that no policy is configured) so
// tests and first experiments need no setup. Production must set a policy.
//
// TLS and the cluster key protect the Raft RPCs between nodes (see
// remoteguard.MutualTLS, raftactor.Config.ClusterKey): a node's certificate
// subject in tls_subjects grants that node's process the listed roles at
// the front door, nothing more.
package policies

package actors

import "time"

// Header keys a stage may attach when it forwards a request (as a new
// actor.MessageEnvelope with the original sender), so later stages and the
// node can tell whom and what the request carries without decoding
// credentials again.
const (
	// HeaderPrincipal names the authenticated principal.
	HeaderPrincipal = "protoraft-principal"
	// HeaderPermit identifies the limiter permit the request holds.
	HeaderPermit = "protoraft-permit"
	// HeaderPeerSubject is the subject of the verified TLS client
	// certificate of the connection a remote message arrived on, in the
	// RFC 2253 form that crypto/x509/pkix.Name.String writes (for example
	// "CN=client-a,O=Example"). The endpoint guard of remoteguard.Config
	// sets it on every message it receives over a connection with a verified
	// client certificate and deletes it from every other, so it can never
	// be forged over the wire; the front door maps it to a principal (the
	// policy's tls_subjects). In-process senders are trusted code: whatever
	// they set is taken as is.
	HeaderPeerSubject = "protoraft-peer-subject"
)

// Outcome reports how one request ended at one stage or at the node. It is
// told (never requested) to the group's observers, off the critical path,
// after the reply went out. Local only: it never crosses remote.
type Outcome struct {
	// Stage is where the request ended: "authorizer", "limiter" or "node".
	Stage string
	// Op is the operation (see Op).
	Op string
	// Code is the reply's code.
	Code Code
	// Latency is from the stage receiving the request to the reply.
	Latency time.Duration
	// RequestID, Principal and Permit come from the request's metadata and
	// the headers the stages attached.
	RequestID string
	Principal string
	Permit    string
	// Detail qualifies Code for the observers: the name of the limit when
	// the limiter refuses (RESOURCE_EXHAUSTED), so refusals are counted by
	// reason; empty otherwise.
	Detail string
}

// Outcomes reports, in one message, the ends of requests that ended
// together: the node answers a batch of reads after one leadership
// confirmation, and a batch of writes after one log entry, so it tells its
// observers once per batch rather than once per request. Observers of the
// node handle both Outcome and Outcomes, and must not change List, which
// every observer of the batch shares.
type Outcomes struct {
	List []Outcome
}

package raftactor

import (
	"time"
	"unicode/utf8"

	"github.com/protoraft/protoraft/actors"
)

// Default request size bounds (Config.MaxCommandSize, Config.MaxQuerySize).
// A command lives in every node's log and snapshot; a query is only read,
// so it gets less room.
const (
	DefaultMaxCommandSize = 1 << 20
	DefaultMaxQuerySize   = 64 << 10
)

// Bounds on request metadata: these strings end up in the session table,
// log fields and audit records.
const (
	maxClientIDLength  = 128
	maxRequestIDLength = 256
)

// deadlineSlack tolerates clock skew between a caller that set the deadline
// and this node when checking it against actors.MaxRequestTimeout.
const deadlineSlack = 5 * time.Second

// admit checks a request before it can reach Raft: sizes, deadline and
// metadata bounds. A refusal is INVALID_ARGUMENT naming the field, and
// nothing is written to the log.
func (n *Node) admit(req actors.Request, now time.Time) *actors.Error {
	if err := checkMeta(req.GetMeta(), now); err != nil {
		return err
	}
	switch m := req.(type) {
	case *actors.WriteRequest:
		if l := len(m.GetCommand()); l > n.cfg.MaxCommandSize {
			return actors.InvalidArgument("command", "command is %d bytes, larger than %d", l, n.cfg.MaxCommandSize)
		}
	case *actors.ReadRequest:
		if l := len(m.GetQuery()); l > n.cfg.MaxQuerySize {
			return actors.InvalidArgument("query", "query is %d bytes, larger than %d", l, n.cfg.MaxQuerySize)
		}
		if qs := m.GetQueries(); len(qs) > 0 {
			if len(m.GetQuery()) > 0 {
				return actors.InvalidArgument("query", "a batch carries its queries in queries; query must be empty")
			}
			if len(qs) > actors.MaxReadBatch {
				return actors.InvalidArgument("queries", "a batch of %d queries, more than %d", len(qs), actors.MaxReadBatch)
			}
			for i, q := range qs {
				if len(q) > n.cfg.MaxQuerySize {
					return actors.InvalidArgument("queries", "query %d is %d bytes, larger than %d", i, len(q), n.cfg.MaxQuerySize)
				}
			}
		}
	case *actors.PolicyUpdateRequest:
		if l := len(m.GetDocument()); l > n.cfg.MaxCommandSize {
			return actors.InvalidArgument("document", "policy document is %d bytes, larger than %d", l, n.cfg.MaxCommandSize)
		}
	}
	return nil
}

// CheckMeta validates request metadata against now: a deadline (when set)
// must lie in the future and no more than actors.MaxRequestTimeout ahead
// (plus a few seconds of clock skew); client and request IDs are bounded.
// Exported for the fuzz tests and for stages that want the same rules.
func CheckMeta(m *actors.RequestMeta, now time.Time) *actors.Error {
	return checkMeta(m, now)
}

func checkMeta(m *actors.RequestMeta, now time.Time) *actors.Error {
	if m == nil {
		return nil
	}
	if d := m.GetDeadlineUnixNano(); d != 0 {
		switch deadline := time.Unix(0, d); {
		case !deadline.After(now):
			// Not the caller's mistake: the request spent its time in transit
			// or in a mailbox. It is refused before Raft, so it was not applied.
			return actors.DeadlineExceeded("the request arrived after its deadline")
		case deadline.Sub(now) > actors.MaxRequestTimeout+deadlineSlack:
			return actors.InvalidArgument("meta.deadline_unix_nano", "deadline is %v ahead, more than %v", deadline.Sub(now).Round(time.Second), actors.MaxRequestTimeout)
		}
	}
	if l := len(m.GetClientId()); l > maxClientIDLength {
		return actors.InvalidArgument("meta.client_id", "client ID is %d bytes, longer than %d", l, maxClientIDLength)
	}
	if !utf8.ValidString(m.GetClientId()) {
		// It is written to the log as a protobuf string, which must be UTF-8.
		return actors.InvalidArgument("meta.client_id", "client ID is not valid UTF-8")
	}
	if l := len(m.GetRequestId()); l > maxRequestIDLength {
		return actors.InvalidArgument("meta.request_id", "request ID is %d bytes, longer than %d", l, maxRequestIDLength)
	}
	return nil
}

package raftactor

import (
	"time"

	"github.com/protoraft/protoraft/actors"
)

// Default request size bounds (Config.MaxCommandSize, Config.MaxQuerySize).
// A command lives in every node's log and snapshot; a query is only read,
// so it gets less room. A command has room for a 1 MiB payload and 64 KiB
// of what a state machine wraps around it (its encoding, a key), so a
// state machine that takes values of up to 1 MiB, like kvstore, takes them
// with the defaults.
const (
	DefaultMaxCommandSize = 1<<20 + 64<<10
	DefaultMaxQuerySize   = 64 << 10
)

// admit checks a request before it can reach Raft: sizes, deadline and
// metadata bounds. A refusal is INVALID_ARGUMENT naming the field, and
// nothing is written to the log.
func (n *Node) admit(req actors.Request, now time.Time) *actors.Error {
	if err := actors.ValidateMeta(req.GetMeta(), now); err != nil {
		return err
	}
	switch m := req.(type) {
	case *actors.WriteRequest:
		if l := len(m.GetCommand()); l > n.cfg.MaxCommandSize {
			return actors.InvalidArgument("command", "command is %d bytes, larger than %d", l, n.cfg.MaxCommandSize)
		}
		if md := m.GetMeta(); md.GetOpenSession() || md.GetRegisteredSession() {
			if md.GetClientId() == "" {
				return actors.InvalidArgument("meta.client_id", "a session open or a registered write needs a client ID")
			}
			if md.GetOpenSession() && len(m.GetCommand()) > 0 {
				return actors.InvalidArgument("command", "a session open carries no command")
			}
		}
		if md := m.GetMeta(); md.GetSessionOpenIndex() != 0 && !md.GetRegisteredSession() {
			return actors.InvalidArgument("meta.session_open_index", "only a registered write names the opening of its session")
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

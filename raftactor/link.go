package raftactor

import (
	"crypto/tls"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/internal/link"
)

// LinkConfig configures StartLink.
type LinkConfig struct {
	// Listen is the host:port the link accepts connections on; port 0
	// picks a free port.
	Listen string
	// Advertise is the host:port peers dial, when it differs from the
	// listener's address (a wildcard bind, NAT). It must not be a wildcard.
	Advertise string
	// TLS, when set, puts the link behind mutual TLS, as
	// remoteguard.MutualTLS does for remote: the listener demands a client
	// certificate signed by ClientCAs (RootCAs when unset), every dial
	// presents Certificates and checks the peer against RootCAs, both at
	// TLS 1.2 or later. Without it the link is plaintext, as remote without
	// MutualTLS is; the cluster key authenticates every RPC on it either
	// way.
	TLS *tls.Config
	// Key, when set, makes every connection open with a mutual proof of
	// it: a challenge-response with HMAC-SHA256 in which each side proves,
	// within the DialTimeout, that it holds the key. A peer that does not is
	// refused (with a warning in the log) before the link reads a single
	// frame from it, and a dial to a link with another key counts in
	// DialsFailed, its RPCs staying on remote. Pass the group's cluster key
	// (Config.ClusterKey), the same in every process: at least 16 bytes. A
	// link with TLS may have a key too. A link with neither accepts any peer
	// that speaks its protocol; the cluster key still authenticates every
	// RPC inside, so such a peer can neither vote nor append, but it can
	// take connection slots. The key proves who is at the other end; it
	// neither encrypts nor protects what follows: that is TLS's job.
	Key []byte
	// DialTimeout bounds one connection attempt, TLS and link handshake
	// included, and the same on a connection accepted. Default 2s.
	DialTimeout time.Duration
	// Logger receives connection events; nil logs nothing.
	Logger *zap.Logger
}

// Link is a running Raft link (StartLink).
type Link struct{ l *link.Link }

// LinkStats counts a link's traffic since it started.
type LinkStats struct {
	// RequestsSent is the number of RPCs this process sent on its links.
	RequestsSent uint64
	// RequestsReceived is the number of RPCs peers sent to this process's
	// node actors on its link.
	RequestsReceived uint64
	// Dials is the number of connections this process opened to peers.
	Dials uint64
	// DialsFailed is the number of peers' links this process could not
	// connect to (its RPCs to them went on through remote).
	DialsFailed uint64
	// Connections is the number of connections open now, both ways.
	Connections int
}

// StartLink starts a Raft link for system's node actors: a carrier of their
// Raft RPCs to the node actors of other processes on one TCP connection
// each way (mutual TLS with LinkConfig.TLS), in place of protoactor remote,
// whose gRPC streams cost several goroutine hand-offs on each side of every
// message. Start protoactor remote first: a node asks each remote peer, over
// remote, where that peer's process serves its link, dials it, and sends its
// RPCs there; until the connection is up, or when the peer serves no link,
// RPCs go through remote as before, and a broken connection fails the RPCs
// in flight on it (Raft retries them).
//
// The nodes spawned into system from now on use the link; one started
// before it goes on without. A system has at most one link at a time.
// Nothing else changes: the same messages travel, signed with the cluster
// key, and fault injection applies before a message reaches the link.
func StartLink(system *actor.ActorSystem, cfg LinkConfig) (*Link, error) {
	l, err := link.Start(system, link.Config{
		Listen: cfg.Listen, Advertise: cfg.Advertise, TLS: cfg.TLS, Key: cfg.Key, DialTimeout: cfg.DialTimeout, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &Link{l: l}, nil
}

// Addr is the host:port peers dial.
func (l *Link) Addr() string { return l.l.Addr() }

// Stats returns the link's counts.
func (l *Link) Stats() LinkStats {
	s := l.l.Stats()
	return LinkStats{RequestsSent: s.RequestsSent, RequestsReceived: s.RequestsReceived, Dials: s.Dials, DialsFailed: s.DialsFailed, Connections: s.Connections}
}

// Close stops listening and closes every connection; RPCs in flight on
// them fail and node actors go on through remote, also those spawned later,
// unless another link is started for the system. Close returns once the
// link's goroutines have ended and is safe to call more than once.
func (l *Link) Close() error { return l.l.Close() }

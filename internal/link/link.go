package link

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/extensions"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/mtls"
	"github.com/protoraft/protoraft/internal/wire"
)

// Defaults of Config.
const (
	// DefaultDialTimeout bounds one connection attempt, TLS handshake
	// included.
	DefaultDialTimeout = 2 * time.Second
	// linkRetry is how long a process waits before asking a peer for its
	// link again after the question or the dial failed; it doubles with
	// every failure in a row, up to linkRetryMax, so a peer that cannot
	// answer (restarting, an older release, a wrong Advertise) costs little
	// while remote carries its RPCs.
	linkRetry    = time.Second
	linkRetryMax = 30 * time.Second
	// linkRetryNoLink is the wait after a peer said it serves no link: a
	// node uses the link of its system when it starts, so the answer holds
	// until that peer restarts.
	linkRetryNoLink = 30 * time.Second
	// linkWriteTimeout closes a connection whose peer stopped reading, so
	// its calls fail and RPCs go back to remote instead of piling up.
	linkWriteTimeout = 10 * time.Second
	// linkFrameTimeout bounds the reading of a frame larger than
	// linkReadStep on an accepted connection, from its length prefix on:
	// twice what its sender allows itself to write it (linkWriteTimeout).
	linkFrameTimeout = 2 * linkWriteTimeout
	// maxLinkAccepted bounds the connections a link holds open for peers
	// that passed the handshake: a group needs one per peer process, and
	// one more is refused.
	maxLinkAccepted = 256
	// maxLinkPending bounds the accepted connections still in their TLS
	// handshake or link handshake, apart from maxLinkAccepted: when it is
	// full, a new connection closes the oldest pending one. A stranger that
	// opens connections without end thus holds at most this many, each for
	// at most the DialTimeout, and cannot keep a member out: the member's
	// connection is pending only for its own handshake, a round trip or
	// two, and is evicted only if maxLinkPending newer ones arrive meanwhile.
	maxLinkPending = 16
	// linkIdleTimeout closes an accepted connection on which no whole frame
	// arrived for this long. A leader sends heartbeats many times a second;
	// a connection that carries none is a former leader's, or a stranger's.
	linkIdleTimeout = 2 * time.Minute
	// linkFrameBudget bounds the bytes of the frames being read on all of a
	// link's accepted connections together (each frame also being at most
	// remoteguard.MaxMessageSize); linkReadStep is the size a frame's
	// buffer starts at, and it doubles only once the bytes so far filled
	// it, so a frame never holds more than twice what arrived of it, plus
	// one step. A reader that cannot get budget waits at most
	// linkBudgetWait, then its connection closes.
	linkFrameBudget = 64 << 20
	linkReadStep    = 64 << 10
	linkBudgetWait  = time.Second
	// acceptRetry is the wait after the listener fails to accept (out of
	// file descriptors, say), doubling with every failure in a row up to
	// acceptRetryMax, as net/http's Server.Serve does; the link goes on
	// accepting until it closes.
	acceptRetry    = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// ErrClosed is what an RPC on a link gets when its connection closes
// before the answer arrived: raft sees it as the failed RPC it is and
// retries, over remote until the link is back.
var ErrClosed = errors.New("raft link closed")

// linkExtensionID registers a Link as an extension of its ActorSystem, which
// is how the node actors spawned there find it.
var linkExtensionID = extensions.NextExtensionID()

// Config configures Start.
type Config struct {
	// Listen is the host:port the link accepts connections on; port 0
	// picks a free port.
	Listen string
	// Advertise is the host:port peers dial, when it differs from the
	// listener's address (a wildcard bind, NAT). It must not be a wildcard.
	Advertise string
	// TLS, when set, puts the link behind mutual TLS, as
	// remoteguard.MutualTLS does for remote: the listener demands a client certificate signed by
	// ClientCAs (RootCAs when unset), every dial presents Certificates and
	// checks the peer against RootCAs. Without it the link is plaintext, as
	// remote without MutualTLS is; the cluster key authenticates every RPC
	// on it either way.
	TLS *tls.Config
	// Key, when set (at least MinKeyLength bytes, the same in every process
	// of the group), makes every connection open with a mutual proof of it
	// (wire.LinkHello): a peer that does not hold it is refused before the
	// link reads a single frame from it, and a dial to a link with another
	// key fails (the RPCs stay on remote). Pass the group's cluster key. A
	// link with TLS may have a key too; a link with neither accepts any
	// peer that speaks its protocol, and then only the cluster key, which
	// authenticates every RPC inside, keeps strangers from voting or
	// appending. The key proves who is at the other end; it neither
	// encrypts nor protects what follows: that is TLS's job.
	Key []byte
	// DialTimeout bounds one connection attempt, TLS and link handshake
	// included, and the same on a connection accepted; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// Logger receives connection events; nil logs nothing.
	Logger *zap.Logger
}

// Handler takes the RPCs a link receives for one node actor: the node's
// transport. HandleRPC is called from the connection's reader goroutine and
// must not block; the answer goes to sender, which writes it back on the
// connection.
type Handler interface {
	HandleRPC(sender *actor.PID, rpc *wire.RaftRPC)
}

// Link carries the Raft RPCs between the node actors of two processes over
// one TCP connection each way, in place of protoactor remote, whose gRPC
// streams cost several goroutine hand-offs on each side of every message.
// It is started once per ActorSystem, after remote (Start), and every
// node actor spawned into that system then uses it: a node asks each remote
// peer, over remote, where that peer's process serves its link, dials it,
// and sends its RPCs there. Until the connection is up, or when the peer
// serves no link, RPCs go through remote as before; a broken connection
// fails the RPCs in flight on it (raft retries them) and the next ones go
// through remote until the link is dialed again.
//
// Nothing else changes: the frames carry the same RaftRPC messages, signed
// with the cluster key, fault injection applies before a message reaches
// the link, and an inbound RPC takes the node's transport's own path to
// Raft (its Handler, without the hop through the node actor's mailbox),
// with a sender that writes the answer back on the connection. Only the
// handlers of the node actors spawned into this system can be reached
// through it.
type Link struct {
	system    *actor.ActorSystem
	listener  net.Listener
	advertise string
	serverTLS *tls.Config
	clientTLS *tls.Config
	key       []byte
	dial      time.Duration
	log       *zap.Logger
	done      chan struct{} // closed by Close

	mu          sync.Mutex // guards everything below
	closed      bool
	maxAccepted int                  // maxLinkAccepted; tests lower it
	maxPending  int                  // maxLinkPending; tests lower it
	idle        time.Duration        // linkIdleTimeout; tests lower it
	budget      *budget              // of the frames accepted connections are reading; tests shrink it
	budgetWait  time.Duration        // linkBudgetWait; tests lower it
	pending     *list.List           // of *pendingConn, oldest first
	targets     map[string]Handler   // by the ID of their node actor
	peers       map[string]*linkPeer // by the peer's actor system address
	accepted    map[*Conn]struct{}

	wg    sync.WaitGroup
	stats linkCounters
	// readBytes counts the bytes of the read buffers accepted connections
	// allocated, hellos included: a test hook.
	readBytes atomic.Int64
}

// pendingConn is an accepted connection in its handshakes.
type pendingConn struct {
	nc      net.Conn
	evicted bool // closed to make room for a newer one
}

// linkPeer is what a process knows of one peer process's link.
type linkPeer struct {
	conn      *Conn         // the open connection; nil while there is none
	busy      bool          // a query or dial runs
	notBefore time.Time     // no new query before this
	backoff   time.Duration // the last wait after a failure; 0 after a success
}

// linkCounters are the counts LinkStats reports.
type linkCounters struct {
	requestsSent     atomic.Uint64
	requestsReceived atomic.Uint64
	dials            atomic.Uint64
	dialsFailed      atomic.Uint64
}

// Stats counts a link's traffic since it started.
type Stats struct {
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

// Start starts a Raft link for system's node actors: it listens on
// cfg.Listen and registers itself with system, so nodes spawned there from
// now on use it. Start protoactor remote first: peers find the link by
// asking over remote, and only remote peers (another actor system address)
// are reached through it.
func Start(system *actor.ActorSystem, cfg Config) (*Link, error) {
	return start(system, cfg, func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) })
}

// start is Start with the listener made by listen, which tests wrap.
func start(system *actor.ActorSystem, cfg Config, listen func(addr string) (net.Listener, error)) (*Link, error) {
	if system == nil {
		return nil, errors.New("raft link: no actor system")
	}
	if Of(system) != nil {
		return nil, errors.New("raft link: this actor system has one already")
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return nil, actors.InvalidArgument("listen", "address %q is not host:port: %v", cfg.Listen, err)
	}
	if cfg.Advertise != "" {
		if e := actors.ValidateHostPort("advertise", cfg.Advertise); e != nil {
			return nil, e
		}
	}
	if len(cfg.Key) > 0 && len(cfg.Key) < MinKeyLength {
		return nil, actors.InvalidArgument("key", "link key is %d bytes, shorter than %d", len(cfg.Key), MinKeyLength)
	}
	l := &Link{
		system:      system,
		key:         append([]byte(nil), cfg.Key...),
		dial:        cfg.DialTimeout,
		log:         cfg.Logger,
		done:        make(chan struct{}),
		budget:      newBudget(linkFrameBudget),
		maxAccepted: maxLinkAccepted,
		maxPending:  maxLinkPending,
		idle:        linkIdleTimeout,
		budgetWait:  linkBudgetWait,
		pending:     list.New(),
		targets:     make(map[string]Handler),
		peers:       make(map[string]*linkPeer),
		accepted:    make(map[*Conn]struct{}),
	}
	if l.dial <= 0 {
		l.dial = DefaultDialTimeout
	}
	if l.log == nil {
		l.log = zap.NewNop()
	}
	if cfg.TLS != nil {
		server, client, err := mtls.Sides(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("raft link: %w", err)
		}
		l.serverTLS, l.clientTLS = server, client
	}
	if len(l.key) == 0 {
		l.key = nil
	}
	ln, err := listen(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("raft link: listen: %w", err)
	}
	l.listener = ln
	l.advertise = cfg.Advertise
	if l.advertise == "" {
		l.advertise = ln.Addr().String()
		if e := actors.ValidateHostPort("listen", l.advertise); e != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("raft link: listens on %s, which peers cannot dial; set Advertise: %w", l.advertise, e)
		}
	}
	system.Extensions.Register(l)
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// noLink takes a closed link's place among its system's extensions, so
// the system may start another.
type noLink struct{}

// ExtensionID implements extensions.Extension.
func (noLink) ExtensionID() extensions.ExtensionID { return linkExtensionID }

// Of returns the link started for system, or nil.
func Of(system *actor.ActorSystem) *Link {
	if system == nil {
		return nil
	}
	l, _ := system.Extensions.Get(linkExtensionID).(*Link)
	return l
}

// ExtensionID implements extensions.Extension.
func (l *Link) ExtensionID() extensions.ExtensionID { return linkExtensionID }

// Addr is the host:port peers dial.
func (l *Link) Addr() string { return l.advertise }

// Stats returns the link's counts.
func (l *Link) Stats() Stats {
	l.mu.Lock()
	conns := len(l.accepted)
	for _, p := range l.peers {
		if p.conn != nil {
			conns++
		}
	}
	l.mu.Unlock()
	return Stats{
		RequestsSent:     l.stats.requestsSent.Load(),
		RequestsReceived: l.stats.requestsReceived.Load(),
		Dials:            l.stats.dials.Load(),
		DialsFailed:      l.stats.dialsFailed.Load(),
		Connections:      conns,
	}
}

// Close stops listening and closes every connection; RPCs in flight on
// them fail with ErrClosed and node actors go on through remote, also
// those spawned later, unless another link is started for the system. A
// node uses the link its system had when the node started: one started
// after it serves only the nodes started after that. Close returns once the
// link's goroutines have ended and is safe to call more than once.
func (l *Link) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.wg.Wait()
		return nil
	}
	l.closed = true
	close(l.done)
	conns := make([]*Conn, 0, len(l.accepted)+len(l.peers))
	for c := range l.accepted {
		conns = append(conns, c)
	}
	for _, p := range l.peers {
		if p.conn != nil {
			conns = append(conns, p.conn)
		}
	}
	var pending []net.Conn
	for e := l.pending.Front(); e != nil; e = e.Next() {
		pending = append(pending, e.Value.(*pendingConn).nc)
	}
	l.mu.Unlock()
	err := l.listener.Close()
	for _, nc := range pending {
		_ = nc.Close()
	}
	if Of(l.system) == l {
		l.system.Extensions.Register(noLink{})
	}
	for _, c := range conns {
		c.close(ErrClosed)
	}
	l.wg.Wait()
	return err
}

// Serve makes h the receiver of the RPCs for the local node actor id.
func (l *Link) Serve(id string, h Handler) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.targets[id] = h
}

// Unserve undoes Serve, unless a newer handler of id (the node actor
// restarted) took its place meanwhile.
func (l *Link) Unserve(id string, h Handler) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.targets[id] == h {
		delete(l.targets, id)
	}
}

// receiver returns the handler of the local node actor id, or nil.
func (l *Link) receiver(id string) Handler {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.targets[id]
}

// Advertised is the address a LinkQuery is answered with: none once the
// link closed.
func (l *Link) Advertised() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ""
	}
	return l.advertise
}

// Route returns the open connection to the process at address, if any.
// query is true when the caller should find the peer's link now (ask, then
// call Found): at most one caller at a time gets it, and not again before
// the retry wait after a failure. Local addresses never take the link.
func (l *Link) Route(address string) (c *Conn, query bool) {
	if address == l.system.Address() || address == actors.LocalSystemAddress || address == "" {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, false
	}
	p := l.peers[address]
	if p == nil {
		p = &linkPeer{}
		l.peers[address] = p
	}
	if p.conn != nil {
		return p.conn, false
	}
	if p.busy || time.Now().Before(p.notBefore) {
		return nil, false
	}
	p.busy = true
	return nil, true
}

// Found ends a query Route asked for: it dials linkAddr (empty when the
// peer serves none, or err when the peer did not answer the question) and
// makes the connection the peer's route.
func (l *Link) Found(address, linkAddr string, err error) {
	var c *Conn
	failed := err != nil
	if !failed && linkAddr != "" {
		c, err = l.connect(address, linkAddr)
		if failed = err != nil; failed {
			l.stats.dialsFailed.Add(1)
			if errors.Is(err, errKey) {
				l.log.Warn("raft link: peer refused: it does not hold the link's key; staying on remote", zap.String("peer", address), zap.String("link", linkAddr), zap.Error(err))
			} else {
				l.log.Info("raft link: dial failed; staying on remote", zap.String("peer", address), zap.String("link", linkAddr), zap.Error(err))
			}
		}
	}
	l.mu.Lock()
	p := l.peers[address]
	if p == nil || l.closed {
		l.mu.Unlock()
		if c != nil {
			c.close(ErrClosed)
		}
		return
	}
	p.busy = false
	switch {
	case failed:
		p.backoff = min(max(2*p.backoff, linkRetry), linkRetryMax)
		p.notBefore = time.Now().Add(p.backoff)
	case c == nil:
		p.backoff = 0
		p.notBefore = time.Now().Add(linkRetryNoLink)
	default:
		p.backoff = 0
	}
	if c == nil {
		l.mu.Unlock()
		return
	}
	p.conn = c
	l.wg.Add(1)
	l.mu.Unlock()
	l.log.Debug("raft link: connected", zap.String("peer", address), zap.String("link", linkAddr))
	go c.run()
}

// connect dials the link of the process at address and completes both
// handshakes within the dial timeout.
func (l *Link) connect(address, linkAddr string) (*Conn, error) {
	if e := actors.ValidateHostPort("link_address", linkAddr); e != nil {
		return nil, e
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.dial)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", linkAddr)
	if err != nil {
		return nil, err
	}
	if l.clientTLS != nil {
		cfg := l.clientTLS
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(linkAddr)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("raft link: tls: %w", err)
		}
		nc = tc
	}
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	if err := Handshake(nc, l.key, linkAddr); err != nil {
		_ = nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	l.stats.dials.Add(1)
	return newConn(l, address, nc, false), nil
}

// lost forgets c as a route once it closed.
func (l *Link) lost(c *Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.accepted {
		delete(l.accepted, c)
		return
	}
	if p := l.peers[c.peer]; p != nil && p.conn == c {
		p.conn = nil
		p.notBefore = time.Now().Add(linkRetry)
	}
}

// accept serves the listener until Close. An error other than the
// listener's closing (out of file descriptors, say) only pauses it, for
// acceptRetry doubling up to acceptRetryMax, as net/http's Server.Serve
// does.
func (l *Link) accept() {
	defer l.wg.Done()
	var wait time.Duration
	for {
		nc, err := l.listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-l.done:
				return
			default:
			}
			wait = min(max(2*wait, acceptRetry), acceptRetryMax)
			l.log.Warn("raft link: accept failed; retrying", zap.Duration("in", wait), zap.Error(err))
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
			continue
		}
		wait = 0
		p := &pendingConn{nc: nc}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = nc.Close()
			return
		}
		var evicted *pendingConn
		limit := l.maxPending
		if l.pending.Len() >= limit {
			evicted = l.pending.Remove(l.pending.Front()).(*pendingConn)
			evicted.evicted = true
		}
		e := l.pending.PushBack(p)
		l.wg.Add(1)
		l.mu.Unlock()
		if evicted != nil {
			l.log.Warn("raft link: too many connections in their handshake; closed the oldest",
				zap.String("closed", evicted.nc.RemoteAddr().String()), zap.Int("pending", limit))
			_ = evicted.nc.Close()
		}
		go func() {
			defer l.wg.Done()
			l.admit(p, e)
		}()
	}
}

// admit completes an accepted connection's TLS handshake and link
// handshake, both within the dial timeout, and starts it if it passed and
// an authenticated place is free. Until then it is pending (p, at e in
// l.pending): it reads nothing but hellos, and a newer connection may evict
// it.
func (l *Link) admit(p *pendingConn, e *list.Element) {
	nc := p.nc
	from := nc.RemoteAddr().String()
	leave := func() (evicted bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.pending.Remove(e) // a no-op once evicted
		return p.evicted
	}
	refuse := func(why string, err error) {
		_ = nc.Close()
		if leave() || errors.Is(err, net.ErrClosed) {
			return // evicted, or the link closed: said already
		}
		l.log.Warn("raft link: connection refused: "+why, zap.String("from", from), zap.Error(err))
	}
	_ = nc.SetDeadline(time.Now().Add(l.dial))
	if l.serverTLS != nil {
		tc := tls.Server(nc, l.serverTLS)
		if err := tc.Handshake(); err != nil {
			refuse("tls handshake failed", err)
			return
		}
		nc = tc
	}
	if err := handshakeAccepted(nc, l.key, l.advertise, l.countRead); err != nil {
		why := "link handshake failed"
		if errors.Is(err, errKey) {
			why = "the peer does not hold the link's key"
		}
		refuse(why, err)
		return
	}
	c := newConn(l, from, nc, true)
	if err := c.prepare(); err != nil {
		leave()
		c.close(err)
		return
	}
	l.mu.Lock()
	l.pending.Remove(e)
	gone, full, limit := p.evicted || l.closed, len(l.accepted) >= l.maxAccepted, l.maxAccepted
	if !gone && !full {
		c.idle, c.budget, c.wait = l.idle, l.budget, l.budgetWait
		l.accepted[c] = struct{}{}
	}
	l.mu.Unlock()
	if gone || full {
		if !gone {
			l.log.Warn("raft link: connection refused: too many open", zap.String("from", from), zap.Int("open", limit))
		}
		c.close(ErrClosed)
		return
	}
	if err := acceptHello(nc); err != nil {
		c.close(err)
		return
	}
	_ = nc.SetDeadline(time.Time{})
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.close(ErrClosed)
		return
	}
	l.wg.Add(1)
	l.mu.Unlock()
	go c.run()
}

// countRead is readHello's and the frames' test hook.
func (l *Link) countRead(n int) { l.readBytes.Add(int64(n)) }

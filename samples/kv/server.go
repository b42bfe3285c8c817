package main

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// serverLimits bound what HTTP clients can hold of this process: time per
// request and per idle connection, header size, and connections at once.
type serverLimits struct {
	// readHeader bounds reading a request's headers; read its headers and
	// body together, so a client that trickles a body is cut off.
	readHeader, read time.Duration
	// write bounds a response from the end of its request's headers: it
	// covers reading the body, the request's own timeout and writing.
	write time.Duration
	// idle is how long a keep-alive connection may wait for its next
	// request before the server closes it.
	idle time.Duration
	// headerBytes bounds a request's headers (a bearer token is at most
	// 512 bytes).
	headerBytes int
	// conns bounds the connections served at once. The next one waits in
	// the kernel's accept queue until one of them closes, where it holds
	// no descriptor of this process.
	conns int
	// onFull, when set, is called each time a connection waits because
	// conns are open: tests observe the limit with it.
	onFull func()
}

// maxHTTPConns caps serverLimits.conns whatever the descriptor limit.
const maxHTTPConns = 1024

// defaultServerLimits are the limits the sample serves with. The
// connection bound is a quarter of the process's descriptor limit (Go
// raises the soft limit to the hard one at start), at most maxHTTPConns,
// so the nodes' own files (logs, snapshots, remote and link connections)
// are never starved by HTTP clients.
func defaultServerLimits() serverLimits {
	read := 20 * time.Second
	return serverLimits{
		readHeader:  5 * time.Second,
		read:        read,
		write:       read + defaultRequestTimeout + 5*time.Second,
		idle:        30 * time.Second,
		headerBytes: 64 << 10,
		conns:       connLimit(openFileLimit()),
	}
}

// connLimit is the HTTP connection bound for a descriptor limit of
// nofile: a quarter of it, at most maxHTTPConns, at least 8.
func connLimit(nofile uint64) int {
	return int(max(8, min(maxHTTPConns, nofile/4)))
}

// startServer serves handler on ln within limits and returns the server;
// Shutdown or Close stops it. The log receives the server's own errors
// (failed TLS handshakes, panics in handlers) and a stop that was not
// asked for.
func startServer(ln net.Listener, handler http.Handler, limits serverLimits, log *zap.Logger) *http.Server {
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: limits.readHeader,
		ReadTimeout:       limits.read,
		WriteTimeout:      limits.write,
		IdleTimeout:       limits.idle,
		MaxHeaderBytes:    limits.headerBytes,
		ErrorLog:          zap.NewStdLog(log),
	}
	ln = limitListener(ln, limits.conns, limits.onFull)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", zap.Error(err))
		}
	}()
	return srv
}

// limitListener returns ln accepting at most n connections open at once:
// Accept waits for one of them to close before it takes the next from ln.
// onFull, when not nil, is called whenever Accept starts to wait.
func limitListener(ln net.Listener, n int, onFull func()) net.Listener {
	return &limitedListener{Listener: ln, slots: make(chan struct{}, n), onFull: onFull, done: make(chan struct{})}
}

// limitedListener is limitListener's listener. A slot is taken before the
// connection is accepted, so a waiting connection holds no descriptor.
type limitedListener struct {
	net.Listener
	slots     chan struct{}
	onFull    func()
	done      chan struct{}
	closeOnce sync.Once
}

// Accept implements net.Listener.
func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		if l.onFull != nil {
			l.onFull()
		}
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

// Close implements net.Listener; an Accept waiting for a slot returns.
func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitedConn gives its slot back when it is closed, once.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Close implements net.Conn.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

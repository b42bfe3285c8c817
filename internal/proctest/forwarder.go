package proctest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// dialTimeout bounds the forwarder's connection to its target. The target
// is on loopback: a process that is up answers at once (a stopped one's
// kernel still completes the handshake), so a slow dial means a dead one.
const dialTimeout = 2 * time.Second

// Forwarder holds a TCP listener on 127.0.0.1 for its whole life and joins
// every connection it accepts to a new connection to its current target,
// copying bytes both ways until either side ends. It lets a node keep one
// address while its processes come and go: each new process listens where
// the kernel put it, and Route points the forwarder there.
//
// It is where faults at the TCP level belong (accept and forward nothing,
// hold connections open): the place every byte between two nodes passes.
type Forwarder struct {
	ln net.Listener

	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{} // both ends of every joined pair
	closed bool
	wg     sync.WaitGroup

	accepted, joined, refused atomic.Int64
}

// ForwarderStats counts a forwarder's connections.
type ForwarderStats struct {
	// Accepted counts every connection accepted.
	Accepted int64
	// Joined counts those joined to a connection to the target.
	Joined int64
	// Refused counts those closed at once: no target was set, or it could
	// not be dialed (its process had died).
	Refused int64
}

// NewForwarder listens on a port of 127.0.0.1 the kernel picks, with no
// target yet: until Route sets one, connections are accepted and closed.
func NewForwarder() (*Forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proctest: forwarder listen: %w", err)
	}
	f := &Forwarder{ln: ln, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.acceptLoop()
	return f, nil
}

// Addr is the address the forwarder listens on, the one to advertise.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

// Route sends the connections accepted from now on to target (host:port);
// "" closes them instead, as a port nobody listens on would. Connections
// joined already stay with the process they reached, and end with it.
func (f *Forwarder) Route(target string) {
	f.mu.Lock()
	f.target = target
	f.mu.Unlock()
}

// Stats returns the forwarder's counts so far.
func (f *Forwarder) Stats() ForwarderStats {
	return ForwarderStats{Accepted: f.accepted.Load(), Joined: f.joined.Load(), Refused: f.refused.Load()}
}

// Close stops listening, ends every joined connection and returns once
// every goroutine of the forwarder has.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	err := f.ln.Close()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return err
}

func (f *Forwarder) acceptLoop() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				// A transient accept error (out of descriptors): keep
				// serving rather than lose the address for the run.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		f.accepted.Add(1)
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			_ = c.Close()
			return
		}
		target := f.target
		f.wg.Add(1)
		f.mu.Unlock()
		go f.join(c, target)
	}
}

// join dials target for the accepted connection c and copies both ways
// until either side ends, then closes both.
func (f *Forwarder) join(c net.Conn, target string) {
	defer f.wg.Done()
	if target == "" {
		f.refused.Add(1)
		_ = c.Close()
		return
	}
	up, err := net.DialTimeout("tcp", target, dialTimeout)
	if err != nil {
		f.refused.Add(1)
		_ = c.Close()
		return
	}
	if !f.track(c, up) {
		return
	}
	defer f.untrack(c, up)
	f.joined.Add(1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(up, c)
		_ = up.Close()
		_ = c.Close()
	}()
	_, _ = io.Copy(c, up)
	_ = c.Close()
	_ = up.Close()
	<-copied
}

// track registers a joined pair, so Close can end it; false (with both
// closed) when the forwarder is closing.
func (f *Forwarder) track(a, b net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		_ = a.Close()
		_ = b.Close()
		return false
	}
	f.conns[a], f.conns[b] = struct{}{}, struct{}{}
	return true
}

func (f *Forwarder) untrack(a, b net.Conn) {
	f.mu.Lock()
	delete(f.conns, a)
	delete(f.conns, b)
	f.mu.Unlock()
}

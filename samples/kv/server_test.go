package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/protoraft/protoraft/internal/testutil"
)

// testServer serves a handler that answers "ok" within limits on a port of
// its own, and returns its address and the number of connections it has
// accepted so far.
func testServer(t *testing.T, limits serverLimits) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	// Connections are counted by their first requests, which only a
	// connection the server accepted can answer.
	srv := startServer(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-First") != "" {
			accepted.Add(1)
		}
		_, _ = io.WriteString(w, "ok")
	}), limits, zap.NewNop())
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), &accepted
}

// testConn is a raw keep-alive HTTP/1.1 connection, so a test decides when
// it is opened, used and closed.
type testConn struct {
	net.Conn
	r *bufio.Reader
}

func dialTest(t *testing.T, addr string) *testConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// Every read is bounded by the test's own deadline, never needed when
	// the server behaves.
	if err := c.SetDeadline(time.Now().Add(testutil.WaitFor)); err != nil {
		t.Fatal(err)
	}
	return &testConn{Conn: c, r: bufio.NewReader(c)}
}

// send writes one request; first marks the connection's first one.
func (c *testConn) send(t *testing.T, first bool) {
	t.Helper()
	req := "GET / HTTP/1.1\r\nHost: kv\r\n"
	if first {
		req += "X-First: 1\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
}

// answer reads one response and checks it is the handler's.
func (c *testConn) answer(t *testing.T) {
	t.Helper()
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("answer %s %q", resp.Status, body)
	}
}

// lowLimits are the sample's limits with the idle timeout lowered, so a
// test sees the server close an idle connection.
func lowLimits() serverLimits {
	l := defaultServerLimits()
	l.idle = 50 * time.Millisecond
	return l
}

// An idle keep-alive connection is closed by the server once the idle
// timeout passes: the client reads the end of the stream.
func TestServerClosesIdleConnections(t *testing.T) {
	addr, _ := testServer(t, lowLimits())
	c := dialTest(t, addr)
	c.send(t, true)
	c.answer(t)
	// Nothing more is sent: the next read ends when the server closes the
	// connection (or, if it never does, at the test's deadline).
	_, err := c.r.ReadByte()
	if !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %v, want the server to close it (EOF)", err)
	}
}

// While conns connections are open the next one waits, unserved, and it is
// served as soon as one of them closes.
func TestServerLimitsConnections(t *testing.T) {
	limits := defaultServerLimits() // idle connections stay open for this test
	limits.conns = 2
	full := make(chan struct{}, 16)
	limits.onFull = func() {
		select {
		case full <- struct{}{}:
		default:
		}
	}
	addr, accepted := testServer(t, limits)

	open := []*testConn{dialTest(t, addr), dialTest(t, addr)}
	for _, c := range open {
		c.send(t, true)
		c.answer(t)
	}
	// The third connection is made by the kernel, but the server does not
	// take it: its listener waits for a slot.
	third := dialTest(t, addr)
	third.send(t, true)
	select {
	case <-full:
	case <-time.After(testutil.WaitFor):
		t.Fatal("the listener never waited with 2 connections open")
	}
	answered := make(chan error, 1)
	var closed atomic.Bool
	go func() {
		resp, err := http.ReadResponse(third.r, nil)
		if err == nil {
			_ = resp.Body.Close()
			if !closed.Load() {
				err = errors.New("the third connection was served while 2 were open")
			}
		}
		answered <- err
	}()
	if n := accepted.Load(); n != 2 {
		t.Fatalf("the server serves %d connections, want 2", n)
	}
	// The open ones are still served meanwhile.
	open[1].send(t, false)
	open[1].answer(t)

	closed.Store(true)
	_ = open[0].Close()
	if err := <-answered; err != nil {
		t.Fatalf("third connection: %v", err)
	}
	if n := accepted.Load(); n != 3 {
		t.Fatalf("the server served %d connections, want 3", n)
	}
}

// The connection bound is a quarter of the descriptor limit, capped, and
// the server is built with every timeout set.
func TestServerLimitsDefaults(t *testing.T) {
	for nofile, want := range map[uint64]int{64: 16, 1024: 256, 4096: 1024, 1 << 20: maxHTTPConns, 8: 8} {
		if got := connLimit(nofile); got != want {
			t.Errorf("connLimit(%d) = %d, want %d", nofile, got, want)
		}
	}
	l := defaultServerLimits()
	if l.readHeader <= 0 || l.read <= 0 || l.idle <= 0 || l.write <= l.read+defaultRequestTimeout || l.headerBytes <= 0 {
		t.Errorf("limits %+v: every timeout must be set, and the write timeout cover reading and serving a request", l)
	}
	if l.conns != connLimit(openFileLimit()) {
		t.Errorf("connection bound %d for a descriptor limit of %d", l.conns, openFileLimit())
	}
}

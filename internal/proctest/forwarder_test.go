package proctest

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// echoServer answers every line with the line prefixed by name, until
// closed; it stands in for one process of a node.
type echoServer struct {
	ln    net.Listener
	name  string
	conns chan net.Conn
}

func startEcho(t *testing.T, name string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, name: name, conns: make(chan net.Conn, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns <- c
			go func() {
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := io.WriteString(c, s.name+":"+sc.Text()+"\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s
}

// stop closes the listener and every connection it accepted, as the
// kernel does when a process dies.
func (s *echoServer) stop() {
	_ = s.ln.Close()
	for {
		select {
		case c := <-s.conns:
			_ = c.Close()
		default:
			return
		}
	}
}

// roundTrip sends one line on c and returns the answer, or the error.
func roundTrip(c net.Conn, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	answer, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return answer[:len(answer)-1], nil
}

func dial(t *testing.T, f *Forwarder) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", f.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestForwarderFollowsTheProcess checks what a node's peers rely on: one
// address across its processes. Without a target a connection is closed at
// once; with one it reaches it both ways; a connection joined to a process
// ends when the process does, and the next one reaches its successor.
func TestForwarderFollowsTheProcess(t *testing.T) {
	defer goleak.VerifyNone(t)
	f, err := NewForwarder()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()

	if _, err := roundTrip(dial(t, f), "hello"); err == nil {
		t.Fatal("a connection without a target was answered")
	}

	first := startEcho(t, "first")
	defer first.stop()
	f.Route(first.ln.Addr().String())
	old := dial(t, f)
	if got, err := roundTrip(old, "a"); err != nil || got != "first:a" {
		t.Fatalf("through the forwarder: %q, %v", got, err)
	}

	// The process dies: its connections end, and so does the peer's.
	first.stop()
	f.Route("")
	if _, err := roundTrip(old, "b"); err == nil {
		t.Fatal("a connection to a dead process still answered")
	}

	second := startEcho(t, "second")
	defer second.stop()
	f.Route(second.ln.Addr().String())
	if got, err := roundTrip(dial(t, f), "c"); err != nil || got != "second:c" {
		t.Fatalf("after the restart: %q, %v", got, err)
	}
	if st := f.Stats(); st.Accepted != 3 || st.Joined != 2 || st.Refused != 1 {
		t.Errorf("stats %+v, want 3 accepted, 2 joined, 1 refused", st)
	}
}

// TestForwarderRefusesADeadTarget: a target nobody listens on any more (a
// process gone before its exit was noticed) ends the connection at once.
func TestForwarderRefusesADeadTarget(t *testing.T) {
	defer goleak.VerifyNone(t)
	f, err := NewForwarder()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	gone := startEcho(t, "gone")
	addr := gone.ln.Addr().String()
	gone.stop()
	f.Route(addr)
	if _, err := roundTrip(dial(t, f), "x"); err == nil {
		t.Fatal("a connection to a dead target was answered")
	}
	if st := f.Stats(); st.Refused != 1 {
		t.Errorf("stats %+v, want 1 refused", st)
	}
}

// TestForwarderCloseEndsEverything: Close ends joined connections and
// frees the address, and returns only once its goroutines have.
func TestForwarderCloseEndsEverything(t *testing.T) {
	defer goleak.VerifyNone(t)
	s := startEcho(t, "s")
	defer s.stop()
	f, err := NewForwarder()
	if err != nil {
		t.Fatal(err)
	}
	f.Route(s.ln.Addr().String())
	c := dial(t, f)
	if got, err := roundTrip(c, "a"); err != nil || got != "s:a" {
		t.Fatalf("through the forwarder: %q, %v", got, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(c, "b"); err == nil {
		t.Fatal("a connection outlived its forwarder's Close")
	}
	if c2, err := net.DialTimeout("tcp", f.Addr(), time.Second); err == nil {
		_ = c2.Close()
		t.Fatal("the forwarder's address still accepts after Close")
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

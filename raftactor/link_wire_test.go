package raftactor

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
)

// wireConn is a raw client of a link: it writes frames and reads answers
// as a peer process would, without a transport.
type wireConn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialWire(t *testing.T, addr string, cfg *tls.Config) (*wireConn, error) {
	t.Helper()
	d := net.Dialer{Timeout: remoteTestTimeout}
	var nc net.Conn
	var err error
	if cfg != nil {
		nc, err = tls.DialWithDialer(&d, "tcp", addr, cfg)
	} else {
		nc, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(remoteTestTimeout))
	t.Cleanup(func() { _ = nc.Close() })
	return &wireConn{t: t, nc: nc, r: bufio.NewReader(nc)}, nil
}

func (w *wireConn) writeRaw(b []byte) error {
	_, err := w.nc.Write(b)
	return err
}

func (w *wireConn) write(f *actors.LinkFrame) error {
	b, err := proto.Marshal(f)
	if err != nil {
		w.t.Fatal(err)
	}
	head := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	return w.writeRaw(append(head, b...))
}

func (w *wireConn) read() (*actors.LinkFrame, error) {
	var head [4]byte
	if _, err := io.ReadFull(w.r, head[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(head[:]))
	if _, err := io.ReadFull(w.r, b); err != nil {
		return nil, err
	}
	f := &actors.LinkFrame{}
	return f, proto.Unmarshal(b, f)
}

// ask sends a LinkQuery and returns the answer frame.
func (w *wireConn) ask(call uint32, target string) *actors.LinkFrame {
	w.t.Helper()
	rpc := &actors.RaftRPC{Group: "g", Body: &actors.RaftRPC_LinkQuery{LinkQuery: &actors.LinkQuery{}}}
	if err := w.write(&actors.LinkFrame{Call: call, Target: target, Rpc: rpc}); err != nil {
		w.t.Fatal(err)
	}
	f, err := w.read()
	if err != nil {
		w.t.Fatalf("no answer from the link: %v", err)
	}
	return f
}

// startTestLink starts a link on a system without remote, and a transport
// of group "g" for the node actor "node" there, which the link serves;
// with clusterKey, the transport refuses RPCs not signed with it.
func startTestLink(t *testing.T, cfg *tls.Config, clusterKey ...byte) *Link {
	t.Helper()
	verifyNoLeaks(t)
	sys := newTCSystem()
	l, err := StartLink(sys, LinkConfig{Listen: "127.0.0.1:0", TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTransport(TransportConfig{System: sys, Group: "g", LocalID: "n1", LocalAddr: raft.ServerAddress(sys.Address() + "/node"), ClusterKey: clusterKey})
	t.Cleanup(func() {
		_ = tr.Close()
		_ = l.Close()
		sys.Shutdown()
	})
	return l
}

// answersWithAddress reports whether f answers a LinkQuery with l's address.
func answersWithAddress(f *actors.LinkFrame, l *Link) bool {
	return f.GetReply().GetLinkAddress().GetAddress() == l.Addr() && f.GetReply().GetError() == ""
}

// A request reaches the transport of the node actor it names and its
// answer comes back with its call number; a request for an actor the link
// does not serve is answered with a dead letter, not delivered.
func TestLinkDeliversOnlyToTheNodesItServes(t *testing.T) {
	l := startTestLink(t, nil)
	w, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := w.ask(7, "node"); f.GetCall() != 7 || !answersWithAddress(f, l) {
		t.Fatalf("answer = %v, want call 7 answered by the node", f)
	}
	if f := w.ask(8, "front-door"); f.GetCall() != 8 || !strings.Contains(f.GetReply().GetError(), ErrDeadLetter.Error()) {
		t.Fatalf("answer = %v, want call 8 refused as a dead letter", f)
	}
	if got := l.Stats().RequestsReceived; got != 2 {
		t.Fatalf("RequestsReceived = %d, want 2", got)
	}
}

// On a link as over remote, a group with a cluster key refuses an RPC
// without its MAC.
func TestLinkRefusesAnRPCWithoutTheClusterKey(t *testing.T) {
	l := startTestLink(t, nil, []byte("a cluster key of the link group")...)
	w, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := w.ask(1, "node"); f.GetReply().GetError() != ErrRPCAuth.Error() || f.GetReply().GetLinkAddress() != nil {
		t.Fatalf("answer to an unsigned rpc = %v, want %v", f, ErrRPCAuth)
	}
}

// A peer that breaks the protocol (a frame larger than any message may be,
// an answer sent to the accepting side, bytes that are no frame) loses its
// connection; the link goes on serving others.
func TestLinkClosesAConnectionThatBreaksTheProtocol(t *testing.T) {
	l := startTestLink(t, nil)
	cases := map[string][]byte{
		"oversized frame": binary.BigEndian.AppendUint32(nil, RemoteMaxMessageSize+1),
		"not a frame":     append(binary.BigEndian.AppendUint32(nil, 3), 0xff, 0xff, 0xff),
	}
	answer, _ := proto.Marshal(&actors.LinkFrame{Call: 1, Reply: &actors.RaftRPCReply{}})
	cases["an answer"] = append(binary.BigEndian.AppendUint32(nil, uint32(len(answer))), answer...)
	for name, b := range cases {
		w, err := dialWire(t, l.Addr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.writeRaw(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := w.read(); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
			t.Fatalf("%s: read after it = %v, want the connection closed", name, err)
		}
	}
	w, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := w.ask(9, "node"); !answersWithAddress(f, l) {
		t.Fatalf("answer after the bad peers = %v", f)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// With TLS the link talks only to holders of a certificate of the group's
// CA, over TLS 1.2 or later even when the configuration allows older: a
// plaintext peer, one with another CA's certificate and one speaking TLS
// 1.1 get nothing.
func TestLinkWithMutualTLS(t *testing.T) {
	ca, other := newTestCA(t, "group-ca"), newTestCA(t, "other-ca")
	cfg := ca.config(ca.issue(t, "n1"))
	cfg.MinVersion = tls.VersionTLS10 // raised to 1.2 by the link
	l := startTestLink(t, cfg)

	plain, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.write(&actors.LinkFrame{Call: 1, Target: "node", Rpc: &actors.RaftRPC{}}); err == nil {
		if f, err := plain.read(); err == nil {
			t.Fatalf("a plaintext peer got an answer: %v", f)
		}
	}
	if w, err := dialWire(t, l.Addr(), other.config(other.issue(t, "stranger"))); err == nil {
		if err := w.write(&actors.LinkFrame{Call: 2, Target: "node", Rpc: &actors.RaftRPC{}}); err == nil {
			if f, err := w.read(); err == nil {
				t.Fatalf("a peer with another CA's certificate got an answer: %v", f)
			}
		}
	}
	old := ca.config(ca.issue(t, "n3"))
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if w, err := dialWire(t, l.Addr(), old); err == nil {
		if err := w.write(&actors.LinkFrame{Call: 3, Target: "node", Rpc: &actors.RaftRPC{}}); err == nil {
			if f, err := w.read(); err == nil {
				t.Fatalf("a member speaking TLS 1.1 got an answer: %v", f)
			}
		}
	}
	member, err := dialWire(t, l.Addr(), ca.config(ca.issue(t, "n2")))
	if err != nil {
		t.Fatal(err)
	}
	if f := member.ask(3, "node"); !answersWithAddress(f, l) {
		t.Fatalf("answer to a member = %v", f)
	}
}

// StartLink refuses what peers could not dial, a second link for one
// system, and TLS without a certificate or CA; a closed link makes room
// for a new one.
func TestStartLinkRefusesBadConfigurations(t *testing.T) {
	sys := newTCSystem()
	defer sys.Shutdown()
	ca := newTestCA(t, "ca")
	for name, cfg := range map[string]LinkConfig{
		"no port":            {Listen: "127.0.0.1"},
		"wildcard advertise": {Listen: "127.0.0.1:0", Advertise: "0.0.0.0:7000"},
		"wildcard listen":    {Listen: "0.0.0.0:0"},
		"tls without CA":     {Listen: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "n1")}}},
		"tls without cert":   {Listen: "127.0.0.1:0", TLS: &tls.Config{RootCAs: ca.pool}},
	} {
		if l, err := StartLink(sys, cfg); err == nil {
			_ = l.Close()
			t.Fatalf("%s: StartLink accepted %+v", name, cfg)
		}
	}
	l, err := StartLink(sys, LinkConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if LinkOf(sys) != l {
		t.Fatal("LinkOf does not return the system's link")
	}
	if l2, err := StartLink(sys, LinkConfig{Listen: "127.0.0.1:0"}); err == nil {
		_ = l2.Close()
		t.Fatal("a second link for one system was accepted")
	}
	// Once closed, the link leaves its place to another.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if LinkOf(sys) != nil {
		t.Fatal("LinkOf returns a closed link")
	}
	l3, err := StartLink(sys, LinkConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("a link after a closed one: %v", err)
	}
	defer l3.Close()
	if LinkOf(sys) != l3 {
		t.Fatal("LinkOf does not return the new link")
	}
}

// A link holds at most maxAccepted connections for peers: one more is
// closed at once, and a place freed by a closed one can be taken again.
func TestLinkBoundsItsAcceptedConnections(t *testing.T) {
	l := startTestLink(t, nil)
	l.mu.Lock()
	l.maxAccepted = 2
	l.mu.Unlock()
	var open []*wireConn
	for i := range 2 {
		w, err := dialWire(t, l.Addr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if f := w.ask(uint32(i), "node"); !answersWithAddress(f, l) {
			t.Fatalf("connection %d within the bound: answer %v", i, f)
		}
		open = append(open, w)
	}
	extra, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = extra.write(&actors.LinkFrame{Call: 3, Target: "node", Rpc: &actors.RaftRPC{Group: "g"}})
	if f, err := extra.read(); err == nil {
		t.Fatalf("a connection past the bound got an answer: %v", f)
	}
	_ = open[0].nc.Close()
	deadline := time.Now().Add(remoteTestTimeout)
	for l.Stats().Connections >= 2 {
		if time.Now().After(deadline) {
			t.Fatal("the closed connection was never forgotten")
		}
		time.Sleep(time.Millisecond)
	}
	again, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := again.ask(4, "node"); !answersWithAddress(f, l) {
		t.Fatalf("a connection after one closed: answer %v", f)
	}
}

// A peer that does not answer where its link is gets asked again after a
// wait that doubles with every failure in a row, up to linkRetryMax, and
// only one question is out at a time; an answer resets the wait.
func TestLinkBacksOffAPeerThatDoesNotAnswer(t *testing.T) {
	l := startTestLink(t, nil)
	const peer = "127.0.0.1:9"
	elapse := func() { // the wait has passed
		l.mu.Lock()
		l.peers[peer].notBefore = time.Time{}
		l.mu.Unlock()
	}
	backoff := func() time.Duration {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.peers[peer].backoff
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, linkRetryMax, linkRetryMax}
	for i, w := range want {
		if _, query := l.route(peer); !query {
			t.Fatalf("failure %d: no question asked once the wait passed", i)
		}
		if _, query := l.route(peer); query {
			t.Fatalf("failure %d: a second question while one is out", i)
		}
		l.found(peer, "", ErrRPCTimeout)
		if _, query := l.route(peer); query {
			t.Fatalf("failure %d: asked again before the wait", i)
		}
		if got := backoff(); got != w {
			t.Fatalf("failure %d: wait %v, want %v", i, got, w)
		}
		elapse()
	}
	if _, query := l.route(peer); !query {
		t.Fatal("no question after the last wait")
	}
	l.found(peer, "", nil) // answered: it serves no link
	if got := backoff(); got != 0 {
		t.Fatalf("wait after an answer %v, want it reset", got)
	}
	if _, query := l.route(peer); query {
		t.Fatal("asked again right after the peer said it serves no link")
	}
}

// Connections still in their TLS handshake count against the bound too: a
// stranger that opens connections and never completes a handshake cannot
// make the link hold more than maxAccepted of them, and a member that
// comes while it does is refused until a place frees.
func TestLinkBoundCountsHandshakesInProgress(t *testing.T) {
	ca := newTestCA(t, "group-ca")
	l := startTestLink(t, ca.config(ca.issue(t, "n1")))
	l.mu.Lock()
	l.maxAccepted = 1
	l.mu.Unlock()
	stalled, err := dialWire(t, l.Addr(), nil) // TCP only: no handshake ever
	if err != nil {
		t.Fatal(err)
	}
	waitAdmitting(t, l, 1, "the stalled connection never began its handshake")
	if w, err := dialWire(t, l.Addr(), ca.config(ca.issue(t, "n2"))); err == nil {
		_ = w.write(&actors.LinkFrame{Call: 1, Target: "node", Rpc: &actors.RaftRPC{Group: "g"}})
		if f, err := w.read(); err == nil {
			t.Fatalf("a connection past the bound got an answer while another was in its handshake: %v", f)
		}
	}
	_ = stalled.nc.Close()
	waitAdmitting(t, l, 0, "the failed handshake kept its place")
	member, err := dialWire(t, l.Addr(), ca.config(ca.issue(t, "n3")))
	if err != nil {
		t.Fatal(err)
	}
	if f := member.ask(2, "node"); !answersWithAddress(f, l) {
		t.Fatalf("a member after the stalled connection left: answer %v", f)
	}
}

// waitAdmitting waits until n accepted connections are in their handshake,
// or fails the test with why.
func waitAdmitting(t *testing.T, l *Link, n int, why string) {
	t.Helper()
	deadline := time.Now().Add(remoteTestTimeout)
	for {
		l.mu.Lock()
		pending := l.admitting
		l.mu.Unlock()
		if pending == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
		time.Sleep(time.Millisecond)
	}
}

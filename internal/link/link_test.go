package link

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

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/internal/wire"
	"github.com/protoraft/protoraft/remoteguard"
)

// testTimeout bounds every wait of these tests on a connection.
const testTimeout = 5 * time.Second

// errNoAnswer stands for a peer that did not answer a LinkQuery.
var errNoAnswer = errors.New("no answer")

// wireConn is a raw client of a link: it writes frames and reads answers
// as a peer process would, without a transport.
type wireConn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialWire(t *testing.T, addr string, cfg *tls.Config) (*wireConn, error) {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout}
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
	_ = nc.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { _ = nc.Close() })
	return &wireConn{t: t, nc: nc, r: bufio.NewReader(nc)}, nil
}

func (w *wireConn) writeRaw(b []byte) error {
	_, err := w.nc.Write(b)
	return err
}

func (w *wireConn) write(f *wire.LinkFrame) error {
	b, err := proto.Marshal(f)
	if err != nil {
		w.t.Fatal(err)
	}
	head := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	return w.writeRaw(append(head, b...))
}

func (w *wireConn) read() (*wire.LinkFrame, error) {
	var head [4]byte
	if _, err := io.ReadFull(w.r, head[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(head[:]))
	if _, err := io.ReadFull(w.r, b); err != nil {
		return nil, err
	}
	f := &wire.LinkFrame{}
	return f, proto.Unmarshal(b, f)
}

// ask sends a LinkQuery and returns the answer frame.
func (w *wireConn) ask(call uint32, target string) *wire.LinkFrame {
	w.t.Helper()
	rpc := &wire.RaftRPC{Group: "g", Body: &wire.RaftRPC_LinkQuery{LinkQuery: &wire.LinkQuery{}}}
	if err := w.write(&wire.LinkFrame{Call: call, Target: target, Rpc: rpc}); err != nil {
		w.t.Fatal(err)
	}
	f, err := w.read()
	if err != nil {
		w.t.Fatalf("no answer from the link: %v", err)
	}
	return f
}

// startTestLink starts a link on a system without remote and serves the
// node actor "node" there with a handler that answers every RPC with the
// link's address, as a transport answers a LinkQuery.
func startTestLink(t *testing.T, cfg *tls.Config) *Link {
	t.Helper()
	testutil.VerifyNoLeaks(t)
	sys := testutil.QuietSystem()
	l, err := Start(sys, Config{Listen: "127.0.0.1:0", TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	h := &addressHandler{system: sys, link: l}
	l.Serve("node", h)
	t.Cleanup(func() {
		l.Unserve("node", h)
		_ = l.Close()
		sys.Shutdown()
	})
	return l
}

// addressHandler stands in for a node's transport: it answers every RPC
// with where its link is.
type addressHandler struct {
	system *actor.ActorSystem
	link   *Link
}

func (h *addressHandler) HandleRPC(sender *actor.PID, _ *wire.RaftRPC) {
	h.system.Root.Send(sender, &wire.RaftRPCReply{Body: &wire.RaftRPCReply_LinkAddress{LinkAddress: &wire.LinkAddress{Address: h.link.Advertised()}}})
}

// answersWithAddress reports whether f answers a LinkQuery with l's address.
func answersWithAddress(f *wire.LinkFrame, l *Link) bool {
	return f.GetReply().GetLinkAddress().GetAddress() == l.Addr() && f.GetReply().GetError() == ""
}

// A request reaches the handler of the node actor it names and its answer
// comes back with its call number; a request for an actor the link does
// not serve is answered NOT_FOUND, not delivered.
func TestLinkDeliversOnlyToTheNodesItServes(t *testing.T) {
	l := startTestLink(t, nil)
	w, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := w.ask(7, "node"); f.GetCall() != 7 || !answersWithAddress(f, l) {
		t.Fatalf("answer = %v, want call 7 answered by the node", f)
	}
	if f := w.ask(8, "front-door"); f.GetCall() != 8 || f.GetReply().GetCode() != wire.RPCError_RPC_ERROR_NOT_FOUND {
		t.Fatalf("answer = %v, want call 8 refused with NOT_FOUND", f)
	}
	if got := l.Stats().RequestsReceived; got != 2 {
		t.Fatalf("RequestsReceived = %d, want 2", got)
	}
}

// A peer that breaks the protocol (a frame larger than any message may be,
// an answer sent to the accepting side, bytes that are no frame) loses its
// connection; the link goes on serving others.
func TestLinkClosesAConnectionThatBreaksTheProtocol(t *testing.T) {
	l := startTestLink(t, nil)
	cases := map[string][]byte{
		"oversized frame": binary.BigEndian.AppendUint32(nil, remoteguard.MaxMessageSize+1),
		"not a frame":     append(binary.BigEndian.AppendUint32(nil, 3), 0xff, 0xff, 0xff),
	}
	answer, _ := proto.Marshal(&wire.LinkFrame{Call: 1, Reply: &wire.RaftRPCReply{}})
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
	ca, other := testutil.NewCA(t, "group-ca"), testutil.NewCA(t, "other-ca")
	cfg := ca.Config(ca.Issue(t, "n1"))
	cfg.MinVersion = tls.VersionTLS10 // raised to 1.2 by the link
	l := startTestLink(t, cfg)

	plain, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.write(&wire.LinkFrame{Call: 1, Target: "node", Rpc: &wire.RaftRPC{}}); err == nil {
		if f, err := plain.read(); err == nil {
			t.Fatalf("a plaintext peer got an answer: %v", f)
		}
	}
	if w, err := dialWire(t, l.Addr(), other.Config(other.Issue(t, "stranger"))); err == nil {
		if err := w.write(&wire.LinkFrame{Call: 2, Target: "node", Rpc: &wire.RaftRPC{}}); err == nil {
			if f, err := w.read(); err == nil {
				t.Fatalf("a peer with another CA's certificate got an answer: %v", f)
			}
		}
	}
	old := ca.Config(ca.Issue(t, "n3"))
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if w, err := dialWire(t, l.Addr(), old); err == nil {
		if err := w.write(&wire.LinkFrame{Call: 3, Target: "node", Rpc: &wire.RaftRPC{}}); err == nil {
			if f, err := w.read(); err == nil {
				t.Fatalf("a member speaking TLS 1.1 got an answer: %v", f)
			}
		}
	}
	member, err := dialWire(t, l.Addr(), ca.Config(ca.Issue(t, "n2")))
	if err != nil {
		t.Fatal(err)
	}
	if f := member.ask(3, "node"); !answersWithAddress(f, l) {
		t.Fatalf("answer to a member = %v", f)
	}
}

// Start refuses what peers could not dial, a second link for one
// system, and TLS without a certificate or CA; a closed link makes room
// for a new one.
func TestStartRefusesBadConfigurations(t *testing.T) {
	sys := testutil.NewSystem(t)
	ca := testutil.NewCA(t, "ca")
	for name, cfg := range map[string]Config{
		"no port":            {Listen: "127.0.0.1"},
		"wildcard advertise": {Listen: "127.0.0.1:0", Advertise: "0.0.0.0:7000"},
		"wildcard listen":    {Listen: "0.0.0.0:0"},
		"tls without CA":     {Listen: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "n1")}}},
		"tls without cert":   {Listen: "127.0.0.1:0", TLS: &tls.Config{RootCAs: ca.Pool}},
	} {
		if l, err := Start(sys, cfg); err == nil {
			_ = l.Close()
			t.Fatalf("%s: Start accepted %+v", name, cfg)
		}
	}
	l, err := Start(sys, Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if Of(sys) != l {
		t.Fatal("Of does not return the system's link")
	}
	if l2, err := Start(sys, Config{Listen: "127.0.0.1:0"}); err == nil {
		_ = l2.Close()
		t.Fatal("a second link for one system was accepted")
	}
	// Once closed, the link leaves its place to another.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if Of(sys) != nil {
		t.Fatal("Of returns a closed link")
	}
	l3, err := Start(sys, Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("a link after a closed one: %v", err)
	}
	defer l3.Close()
	if Of(sys) != l3 {
		t.Fatal("Of does not return the new link")
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
	_ = extra.write(&wire.LinkFrame{Call: 3, Target: "node", Rpc: &wire.RaftRPC{Group: "g"}})
	if f, err := extra.read(); err == nil {
		t.Fatalf("a connection past the bound got an answer: %v", f)
	}
	_ = open[0].nc.Close()
	deadline := time.Now().Add(testTimeout)
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
		if _, query := l.Route(peer); !query {
			t.Fatalf("failure %d: no question asked once the wait passed", i)
		}
		if _, query := l.Route(peer); query {
			t.Fatalf("failure %d: a second question while one is out", i)
		}
		l.Found(peer, "", errNoAnswer)
		if _, query := l.Route(peer); query {
			t.Fatalf("failure %d: asked again before the wait", i)
		}
		if got := backoff(); got != w {
			t.Fatalf("failure %d: wait %v, want %v", i, got, w)
		}
		elapse()
	}
	if _, query := l.Route(peer); !query {
		t.Fatal("no question after the last wait")
	}
	l.Found(peer, "", nil) // answered: it serves no link
	if got := backoff(); got != 0 {
		t.Fatalf("wait after an answer %v, want it reset", got)
	}
	if _, query := l.Route(peer); query {
		t.Fatal("asked again right after the peer said it serves no link")
	}
}

// Connections still in their TLS handshake count against the bound too: a
// stranger that opens connections and never completes a handshake cannot
// make the link hold more than maxAccepted of them, and a member that
// comes while it does is refused until a place frees.
func TestLinkBoundCountsHandshakesInProgress(t *testing.T) {
	ca := testutil.NewCA(t, "group-ca")
	l := startTestLink(t, ca.Config(ca.Issue(t, "n1")))
	l.mu.Lock()
	l.maxAccepted = 1
	l.mu.Unlock()
	stalled, err := dialWire(t, l.Addr(), nil) // TCP only: no handshake ever
	if err != nil {
		t.Fatal(err)
	}
	waitAdmitting(t, l, 1, "the stalled connection never began its handshake")
	if w, err := dialWire(t, l.Addr(), ca.Config(ca.Issue(t, "n2"))); err == nil {
		_ = w.write(&wire.LinkFrame{Call: 1, Target: "node", Rpc: &wire.RaftRPC{Group: "g"}})
		if f, err := w.read(); err == nil {
			t.Fatalf("a connection past the bound got an answer while another was in its handshake: %v", f)
		}
	}
	_ = stalled.nc.Close()
	waitAdmitting(t, l, 0, "the failed handshake kept its place")
	member, err := dialWire(t, l.Addr(), ca.Config(ca.Issue(t, "n3")))
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
	deadline := time.Now().Add(testTimeout)
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

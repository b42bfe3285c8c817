package link

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
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

// dialWire dials the link at addr (through TLS with cfg) and completes the
// link handshake without a key.
func dialWire(t *testing.T, addr string, cfg *tls.Config) (*wireConn, error) {
	t.Helper()
	return dialWireKey(t, addr, cfg, nil)
}

// dialWireKey is dialWire with key for the handshake.
func dialWireKey(t *testing.T, addr string, cfg *tls.Config, key []byte) (*wireConn, error) {
	t.Helper()
	w, err := dialRaw(t, addr, cfg)
	if err != nil {
		return nil, err
	}
	if err := Handshake(w.nc, key, addr); err != nil {
		return nil, err
	}
	return w, nil
}

// dialRaw dials the link at addr (through TLS with cfg) and sends nothing,
// as a stranger would.
func dialRaw(t *testing.T, addr string, cfg *tls.Config) (*wireConn, error) {
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
	return startTestLinkWith(t, Config{TLS: cfg})
}

// startTestLinkWith is startTestLink with cfg (its Listen set here) and no
// leak check of its own: a test of several links checks once, before the
// first.
func startTestLinkWith(t *testing.T, cfg Config) *Link {
	t.Helper()
	sys := testutil.QuietSystem()
	cfg.Listen = "127.0.0.1:0"
	l, err := Start(sys, cfg)
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

	plain, err := dialRaw(t, l.Addr(), nil)
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
		"short key":          {Listen: "127.0.0.1:0", Key: []byte("fifteen bytes..")},
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
	if _, err := dialWire(t, l.Addr(), nil); err == nil {
		t.Fatal("a connection past the bound was accepted")
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

// testKey is a link key of the tests; otherKey is another group's.
var (
	testKey  = []byte("the link key of the test group")
	otherKey = []byte("the link key of another group")
)

// answers is where a link delivers the answer to a Request of the tests.
type answers chan any

func (a answers) SendUserMessage(_ *actor.PID, m any) { a <- m }
func (answers) SendSystemMessage(*actor.PID, any)     {}
func (answers) Stop(*actor.PID)                       {}

// peerAddress stands for the actor system address of the process whose
// link a test dials: any remote-looking address does.
const peerAddress = "127.0.0.1:1"

// linkTo makes from find to's link as a node's transport would after a
// LinkQuery, and returns the connection, or nil if the dial failed.
func linkTo(t *testing.T, from, to *Link) *Conn {
	t.Helper()
	if _, query := from.Route(peerAddress); !query {
		t.Fatal("Route asked for no query for a new peer")
	}
	from.Found(peerAddress, to.Addr(), nil)
	c, _ := from.Route(peerAddress)
	return c
}

// request sends a LinkQuery-like RPC for the node actor "node" on c and
// waits for the answer.
func request(t *testing.T, c *Conn) any {
	t.Helper()
	got := make(answers, 1)
	rpc := &wire.RaftRPC{Group: "g", Body: &wire.RaftRPC_LinkQuery{LinkQuery: &wire.LinkQuery{}}}
	if _, ok := c.Request("node", rpc, got); !ok {
		t.Fatal("the connection closed before the request went out")
	}
	select {
	case m := <-got:
		return m
	case <-time.After(testTimeout):
		t.Fatal("no answer on the link")
		return nil
	}
}

// pending returns how many accepted connections are in their handshakes.
func pendingConns(l *Link) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending.Len()
}

// acceptedConns returns how many accepted connections passed the handshake.
func acceptedConns(l *Link) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

// waitClosed waits until the link closed w's connection.
func waitClosed(t *testing.T, w *wireConn, why string) {
	t.Helper()
	for {
		_, err := w.read()
		if err == nil {
			continue // an answer sent before: read on
		}
		if errors.Is(err, io.EOF) || isReset(err) {
			return
		}
		t.Fatalf("%s: read = %v, want the connection closed", why, err)
	}
}

// A link with a key reads nothing but hellos of at most maxHelloSize
// bytes from a connection before it proved the key: a stranger that sends
// a 16 MiB length prefix first, one that sends a hello without a nonce and
// then a large frame, and one that sends it in place of its proof are each
// closed with no frame buffer allocated and no budget taken; a member is
// answered after them.
func TestLinkReadsNothingLargeBeforeTheHandshake(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	l := startTestLinkWith(t, Config{Key: testKey})
	big := binary.BigEndian.AppendUint32(nil, remoteguard.MaxMessageSize)
	big = append(big, make([]byte, 1000)...)
	hello := func(h *wire.LinkHello) []byte {
		var b bytes.Buffer
		if err := writeHello(&b, h); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	strangers := map[string]func(w *wireConn){
		"a large prefix first": func(w *wireConn) { _ = w.writeRaw(big) },
		"no nonce, then a large frame": func(w *wireConn) {
			_ = w.writeRaw(append(hello(&wire.LinkHello{Version: linkVersion}), big...))
		},
		"a large frame for its proof": func(w *wireConn) {
			_ = w.writeRaw(hello(&wire.LinkHello{Version: linkVersion, Nonce: newNonce()}))
			if h, err := readHello(w.nc, nil); err != nil || len(h.GetProof()) == 0 {
				t.Errorf("the acceptor's hello = %v, %v; want one with a proof", h, err)
			}
			_ = w.writeRaw(big)
		},
	}
	for name, send := range strangers {
		w, err := dialRaw(t, l.Addr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		send(w)
		waitClosed(t, w, name)
	}
	testutil.Eventually(t, "the strangers' connections are forgotten", func() bool { return pendingConns(l) == 0 })
	if n := l.readBytes.Load(); n >= maxHelloSize {
		t.Fatalf("the strangers made the link allocate %d bytes for reading, want only their hellos", n)
	}
	if used, peak := l.budget.inUse(); used != 0 || peak != 0 {
		t.Fatalf("budget used %d, peak %d before any handshake completed; want none", used, peak)
	}
	w, err := dialWireKey(t, l.Addr(), nil, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if f := w.ask(1, "node"); !answersWithAddress(f, l) {
		t.Fatalf("answer to a member after the strangers = %v", f)
	}
}

// After the handshake a frame's buffer grows as its bytes arrive, one
// linkReadStep and then doubling: a peer that announces 16 MiB and sends a
// little has one step allocated, and the budget comes back when its
// connection closes.
func TestLinkGrowsAFrameAsItsBytesArrive(t *testing.T) {
	l := startTestLink(t, nil)
	w, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := w.ask(1, "node"); !answersWithAddress(f, l) {
		t.Fatalf("answer = %v", f)
	}
	before := l.readBytes.Load()
	if err := w.writeRaw(append(binary.BigEndian.AppendUint32(nil, remoteguard.MaxMessageSize), make([]byte, 1000)...)); err != nil {
		t.Fatal(err)
	}
	used := func() int { u, _ := l.budget.inUse(); return u }
	testutil.Eventually(t, "the frame's first step is taken", func() bool { return used() == linkReadStep })
	if got := l.readBytes.Load() - before; got != linkReadStep {
		t.Fatalf("allocated %d bytes for 1000 of a 16 MiB frame, want one step (%d)", got, linkReadStep)
	}
	if err := w.writeRaw(make([]byte, linkReadStep)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the buffer doubles once the first step filled", func() bool { return used() == 2*linkReadStep })
	if got := l.readBytes.Load() - before; got != 3*linkReadStep {
		t.Fatalf("allocated %d bytes for %d of a 16 MiB frame, want %d", got, 1000+linkReadStep, 3*linkReadStep)
	}
	_ = w.nc.Close()
	testutil.Eventually(t, "the budget comes back when the connection closes", func() bool { return used() == 0 && acceptedConns(l) == 0 })
}

// The frames being read on all accepted connections share one budget: a
// reader that cannot get its bytes waits, then its connection closes, and
// the link goes on serving once the budget is back.
func TestLinkBoundsTheBytesOfFramesBeingRead(t *testing.T) {
	l := startTestLink(t, nil)
	l.mu.Lock()
	l.budget = newBudget(linkReadStep)
	l.budgetWait = 10 * time.Millisecond
	l.mu.Unlock()
	largeStart := append(binary.BigEndian.AppendUint32(nil, 1<<20), make([]byte, 100)...)
	holder, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.writeRaw(largeStart); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the first large frame takes the whole budget", func() bool { u, _ := l.budget.inUse(); return u == linkReadStep })
	starved, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := starved.writeRaw(largeStart); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, starved, "a reader without budget")
	_ = holder.nc.Close()
	testutil.Eventually(t, "the budget comes back", func() bool { u, _ := l.budget.inUse(); return u == 0 })
	w, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := w.ask(1, "node"); !answersWithAddress(f, l) {
		t.Fatalf("answer once the budget is back = %v", f)
	}
}

// Two links talk only if they hold the same key, or both none: a dial to
// a link with another key, or with a key on one side only, fails (the
// dialer counts it, and its RPCs would stay on remote) and the acceptor
// keeps no connection; with the same key the RPC goes over the link.
func TestLinkRefusesAPeerWithoutItsKey(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	for _, tc := range []struct {
		name             string
		acceptor, dialer []byte
		ok               bool
	}{
		{"same key", testKey, testKey, true},
		{"no key", nil, nil, true},
		{"another key", testKey, otherKey, false},
		{"dialer without key", testKey, nil, false},
		{"acceptor without key", nil, testKey, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acceptor := startTestLinkWith(t, Config{Key: tc.acceptor})
			dialer := startTestLinkWith(t, Config{Key: tc.dialer})
			c := linkTo(t, dialer, acceptor)
			if !tc.ok {
				if c != nil || dialer.Stats().DialsFailed != 1 {
					t.Fatalf("route %v, DialsFailed %d; want no route and one failed dial", c, dialer.Stats().DialsFailed)
				}
				testutil.Eventually(t, "the acceptor forgets the refused connection", func() bool {
					return pendingConns(acceptor) == 0 && acceptedConns(acceptor) == 0
				})
				return
			}
			if c == nil {
				t.Fatalf("no route after the dial: %+v", dialer.Stats())
			}
			m := request(t, c)
			if r, ok := m.(*wire.RaftRPCReply); !ok || r.GetLinkAddress().GetAddress() != acceptor.Addr() {
				t.Fatalf("answer over the link = %v", m)
			}
			if got := acceptor.Stats().RequestsReceived; got != 1 {
				t.Fatalf("the acceptor received %d RPCs, want 1", got)
			}
		})
	}
}

// A peer with another key fails the handshake, and one that sends back the
// acceptor's own proof (reflected, with the acceptor's label) is closed.
func TestLinkRefusesAWrongProof(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	l2 := startTestLinkWith(t, Config{Key: testKey})
	if _, err := dialWireKey(t, l2.Addr(), nil, otherKey); !errors.Is(err, errKey) {
		t.Fatalf("handshake with another key = %v, want %v", err, errKey)
	}
	w, err := dialRaw(t, l2.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	nonce := newNonce()
	if err := writeHello(w.nc, &wire.LinkHello{Version: linkVersion, Nonce: nonce}); err != nil {
		t.Fatal(err)
	}
	h, err := readHello(w.nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A proof made with the acceptor's label, as if reflected back.
	reflected := proof(testKey, acceptorLabel, nonce, h.GetNonce(), l2.Addr())
	if err := writeHello(w.nc, &wire.LinkHello{Proof: reflected}); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, w, "a reflected proof")
}

// 300 strangers that open connections and say nothing do not keep a member
// out: each new connection evicts the oldest pending one once
// maxLinkPending are, so the member's dial finds a place and its RPC goes
// over the link.
func TestLinkAdmitsAMemberPastIdleStrangers(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	l := startTestLinkWith(t, Config{Key: testKey})
	for range 300 {
		if _, err := dialRaw(t, l.Addr(), nil); err != nil {
			t.Fatal(err)
		}
	}
	member := startTestLinkWith(t, Config{Key: testKey})
	c := linkTo(t, member, l)
	if c == nil {
		t.Fatalf("the member's dial failed past 300 idle strangers: %+v", member.Stats())
	}
	if r, ok := request(t, c).(*wire.RaftRPCReply); !ok || r.GetLinkAddress().GetAddress() != l.Addr() {
		t.Fatalf("answer over the link = %v", r)
	}
	if n := pendingConns(l); n > maxLinkPending {
		t.Fatalf("%d connections pending, more than %d", n, maxLinkPending)
	}
	if n := acceptedConns(l); n != 1 {
		t.Fatalf("%d connections accepted, want the member's alone", n)
	}
}

// A stranger stalled in its TLS handshake is pending too: when the pending
// bound is full a member's connection evicts it, and is answered.
func TestLinkEvictsTheOldestPendingConnection(t *testing.T) {
	ca := testutil.NewCA(t, "group-ca")
	l := startTestLink(t, ca.Config(ca.Issue(t, "n1")))
	l.mu.Lock()
	l.maxPending = 1
	l.mu.Unlock()
	stalled, err := dialRaw(t, l.Addr(), nil) // TCP only: no TLS handshake ever
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the stalled connection is pending", func() bool { return pendingConns(l) == 1 })
	member, err := dialWire(t, l.Addr(), ca.Config(ca.Issue(t, "n2")))
	if err != nil {
		t.Fatal(err)
	}
	if f := member.ask(2, "node"); !answersWithAddress(f, l) {
		t.Fatalf("a member while a stranger stalled: answer %v", f)
	}
	waitClosed(t, stalled, "the evicted stranger")
}

// An accepted connection on which no frame arrives for the idle timeout is
// closed, and forgotten.
func TestLinkClosesAnIdleConnection(t *testing.T) {
	l := startTestLink(t, nil)
	l.mu.Lock()
	l.idle = 50 * time.Millisecond
	l.mu.Unlock()
	w, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := w.ask(1, "node"); !answersWithAddress(f, l) {
		t.Fatalf("answer = %v", f)
	}
	waitClosed(t, w, "an idle connection")
	testutil.Eventually(t, "the idle connection is forgotten", func() bool { return l.Stats().Connections == 0 })
}

// failingListener fails its first fail Accepts as a process out of file
// descriptors does (all of them, with fail < 0).
type failingListener struct {
	net.Listener
	fail  int
	calls atomic.Int64
}

func (f *failingListener) Accept() (net.Conn, error) {
	n := f.calls.Add(1)
	if f.fail < 0 || n <= int64(f.fail) {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: f.Listener.Addr(), Err: os.NewSyscallError("accept", syscall.EMFILE)}
	}
	return f.Listener.Accept()
}

// startFailing starts a link whose listener fails as f says.
func startFailing(t *testing.T, fail int) (*Link, *failingListener) {
	t.Helper()
	testutil.VerifyNoLeaks(t)
	sys := testutil.NewSystem(t)
	var f *failingListener
	l, err := start(sys, Config{Listen: "127.0.0.1:0"}, func(addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		f = &failingListener{Listener: ln, fail: fail}
		return f, err
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &addressHandler{system: sys, link: l}
	l.Serve("node", h)
	t.Cleanup(func() { _ = l.Close() })
	return l, f
}

// A listener that fails to accept (EMFILE) only pauses the link: after
// five failures in a row it accepts a peer and answers it.
func TestLinkAcceptsAfterAcceptErrors(t *testing.T) {
	l, f := startFailing(t, 5)
	w, err := dialWire(t, l.Addr(), nil)
	if err != nil {
		t.Fatalf("no handshake after the accept errors: %v", err)
	}
	if f := w.ask(1, "node"); !answersWithAddress(f, l) {
		t.Fatalf("answer after the accept errors = %v", f)
	}
	if n := f.calls.Load(); n <= 5 {
		t.Fatalf("%d accepts, want more than the 5 that failed", n)
	}
}

// A link whose listener never stops failing still closes, promptly.
func TestLinkClosesWhileAcceptFails(t *testing.T) {
	l, f := startFailing(t, -1)
	testutil.Eventually(t, "the listener is retried", func() bool { return f.calls.Load() >= 3 })
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case <-closed:
	case <-time.After(testTimeout):
		t.Fatal("Close did not return while the listener failed")
	}
}

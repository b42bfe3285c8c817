package remoteguard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/protoraft/protoraft/actors"
)

// otherAuth is the AuthInfo of a transport that is not TLS.
type otherAuth struct{}

func (otherAuth) AuthType() string { return "other" }

// Only a verified chain names the peer: a certificate the client merely
// presented, a connection without TLS, or no peer at all give "".
func TestPeerSubject(t *testing.T) {
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "client-a", Organization: []string{"Example"}}}
	withAuth := func(a credentials.AuthInfo) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{}, AuthInfo: a})
	}
	verified := credentials.TLSInfo{State: tls.ConnectionState{
		PeerCertificates: []*x509.Certificate{leaf},
		VerifiedChains:   [][]*x509.Certificate{{leaf, {Subject: pkix.Name{CommonName: "CA"}}}},
	}}
	cases := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"verified chain", withAuth(verified), "CN=client-a,O=Example"},
		{"verified chain by pointer", withAuth(&verified), "CN=client-a,O=Example"},
		{"presented, not verified", withAuth(credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}}), ""},
		{"empty chain", withAuth(credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{}}}}), ""},
		{"no TLS", withAuth(otherAuth{}), ""},
		{"no auth info", withAuth(nil), ""},
		{"no peer", context.Background(), ""},
	}
	for _, c := range cases {
		if got := peerSubject(c.ctx); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// stampPeerSubject overwrites or deletes the header on every envelope, and
// creates the header where there was none.
func TestStampPeerSubject(t *testing.T) {
	batch := func() *remote.MessageBatch {
		return &remote.MessageBatch{Envelopes: []*remote.MessageEnvelope{
			{},
			{MessageHeader: &remote.MessageHeader{}},
			{MessageHeader: &remote.MessageHeader{HeaderData: map[string]string{actors.HeaderPeerSubject: "CN=forged", "x-trace": "t1"}}},
		}}
	}
	b := batch()
	stampPeerSubject(b, "CN=client-a")
	for i, e := range b.Envelopes {
		if got := e.GetMessageHeader().GetHeaderData()[actors.HeaderPeerSubject]; got != "CN=client-a" {
			t.Fatalf("envelope %d: subject %q", i, got)
		}
	}
	if b.Envelopes[2].MessageHeader.HeaderData["x-trace"] != "t1" {
		t.Fatal("another header was lost")
	}
	b = batch()
	stampPeerSubject(b, "")
	for i, e := range b.Envelopes {
		if _, ok := e.GetMessageHeader().GetHeaderData()[actors.HeaderPeerSubject]; ok {
			t.Fatalf("envelope %d: a header without a verified certificate survived", i)
		}
	}
	if b.Envelopes[0].MessageHeader != nil {
		t.Fatal("a header was made for nothing")
	}
	if b.Envelopes[2].MessageHeader.HeaderData["x-trace"] != "t1" {
		t.Fatal("another header was lost")
	}
}

// Over a plaintext connection the endpoint deletes a peer subject header a
// sender supplied before any actor sees it, and keeps the other headers.
func TestRemotePeerSubjectHeaderNotForgeable(t *testing.T) {
	n := sharedRemoteNode(t)
	got := make(chan map[string]string, 1)
	pid := n.sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(*actors.StatusRequest); ok {
			h := map[string]string{}
			if mh := c.MessageHeader(); mh != nil {
				h = mh.ToMap()
			}
			got <- h
		}
	}))
	t.Cleanup(func() { n.sys.Root.Stop(pid) })
	b := validBatch(pid)
	b.Envelopes[0].MessageHeader = &remote.MessageHeader{HeaderData: map[string]string{
		actors.HeaderPeerSubject: "CN=client-a,O=Example", "x-trace": "t1",
	}}
	sendBatch(t, n.addr, b)
	select {
	case h := <-got:
		if v, ok := h[actors.HeaderPeerSubject]; ok {
			t.Fatalf("forged peer subject %q reached the actor", v)
		}
		if h["x-trace"] != "t1" {
			t.Fatalf("headers %v: x-trace lost", h)
		}
	case <-contextDone(t):
		t.Fatal("the batch was not delivered")
	}
}

// contextDone is closed after remoteTestTimeout.
func contextDone(t *testing.T) <-chan struct{} {
	ctx, cancel := context.WithTimeout(context.Background(), remoteTestTimeout)
	t.Cleanup(cancel)
	return ctx.Done()
}

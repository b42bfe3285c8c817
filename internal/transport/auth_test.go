package transport

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/internal/wire"
)

// FuzzRPCAuth: any envelope decoded from bytes is checked without a panic,
// and only a correctly signed one passes.
func FuzzRPCAuth(f *testing.F) {
	a := newRPCAuth([]byte("0123456789abcdef0123456789abcdef"))
	signed := &wire.RaftRPC{Group: "g", From: "x", Body: &wire.RaftRPC_TimeoutNow{TimeoutNow: &wire.TimeoutNowRequest{}}}
	if err := a.sign(signed); err != nil {
		f.Fatal(err)
	}
	b, _ := proto.Marshal(signed)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		rpc := &wire.RaftRPC{}
		if proto.Unmarshal(data, rpc) != nil {
			return
		}
		if a.verify(rpc) == nil {
			// Accepted: it must be exactly what signing it gives.
			check := proto.Clone(rpc).(*wire.RaftRPC)
			if err := a.sign(check); err != nil || string(check.Auth) != string(rpc.Auth) {
				t.Fatal("accepted an envelope its own signature does not match")
			}
		}
	})
}

// The MAC binds group, sender and body: changing any of them, or moving
// the body to another RPC type, breaks it.
func TestRPCAuthBindsEnvelope(t *testing.T) {
	a := newRPCAuth([]byte("0123456789abcdef0123456789abcdef"))
	mk := func() *wire.RaftRPC {
		rpc := &wire.RaftRPC{Group: "g", From: "nonhost/a", Body: &wire.RaftRPC_RequestVote{RequestVote: &wire.RequestVoteRequest{Term: 5}}}
		if err := a.sign(rpc); err != nil {
			t.Fatal(err)
		}
		return rpc
	}
	if err := a.verify(mk()); err != nil {
		t.Fatalf("signed envelope refused: %v", err)
	}
	for name, change := range map[string]func(*wire.RaftRPC){
		"group": func(r *wire.RaftRPC) { r.Group = "h" },
		"from":  func(r *wire.RaftRPC) { r.From = "nonhost/b" },
		"body":  func(r *wire.RaftRPC) { r.GetRequestVote().Term = 6 },
		"type": func(r *wire.RaftRPC) {
			r.Body = &wire.RaftRPC_RequestPreVote{RequestPreVote: &wire.RequestPreVoteRequest{Term: 5}}
		},
		"key": func(r *wire.RaftRPC) { _ = newRPCAuth([]byte("another-key-0123456789abcdefghij")).sign(r) },
	} {
		rpc := mk()
		change(rpc)
		if a.verify(rpc) == nil {
			t.Fatalf("changed %s still verifies", name)
		}
	}
	if newRPCAuth(nil).verify(&wire.RaftRPC{}) != nil {
		t.Fatal("no key must check nothing")
	}
}

package raftactor

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
)

// FuzzCheckMeta: request metadata decoded from any bytes is either
// accepted within the documented bounds, refused as DEADLINE_EXCEEDED when
// its deadline has passed, or refused as INVALID_ARGUMENT on a meta field;
// it never panics.
func FuzzCheckMeta(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	for _, m := range []*actors.RequestMeta{
		{},
		{DeadlineUnixNano: now.Add(time.Second).UnixNano()},
		{DeadlineUnixNano: now.Add(-time.Second).UnixNano()},
		{DeadlineUnixNano: now.Add(time.Hour).UnixNano()},
		{DeadlineUnixNano: -1, ClientId: "c", Sequence: 1},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &actors.RequestMeta{}
		if proto.Unmarshal(data, m) != nil {
			return
		}
		err := CheckMeta(m, now)
		if err == nil {
			if d := m.GetDeadlineUnixNano(); d != 0 && (d <= now.UnixNano() || time.Duration(d-now.UnixNano()) > actors.MaxRequestTimeout+deadlineSlack) {
				t.Fatalf("deadline %d accepted", d)
			}
			return
		}
		if err.Code == actors.Code_DEADLINE_EXCEEDED {
			if d := m.GetDeadlineUnixNano(); d == 0 || d > now.UnixNano() {
				t.Fatalf("deadline %d refused as passed", d)
			}
			return
		}
		if err.Code != actors.Code_INVALID_ARGUMENT || len(err.Field) < 5 || err.Field[:5] != "meta." {
			t.Fatalf("refusal %v", err)
		}
	})
}

// FuzzRPCAuth: any envelope decoded from bytes is checked without a panic,
// and only a correctly signed one passes.
func FuzzRPCAuth(f *testing.F) {
	a := newRPCAuth([]byte("0123456789abcdef0123456789abcdef"))
	signed := &actors.RaftRPC{Group: "g", From: "x", Body: &actors.RaftRPC_TimeoutNow{TimeoutNow: &actors.TimeoutNowRequest{}}}
	if err := a.sign(signed); err != nil {
		f.Fatal(err)
	}
	b, _ := proto.Marshal(signed)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		rpc := &actors.RaftRPC{}
		if proto.Unmarshal(data, rpc) != nil {
			return
		}
		if a.verify(rpc) == nil {
			// Accepted: it must be exactly what signing it gives.
			check := proto.Clone(rpc).(*actors.RaftRPC)
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
	mk := func() *actors.RaftRPC {
		rpc := &actors.RaftRPC{Group: "g", From: "nonhost/a", Body: &actors.RaftRPC_RequestVote{RequestVote: &actors.RequestVoteRequest{Term: 5}}}
		if err := a.sign(rpc); err != nil {
			t.Fatal(err)
		}
		return rpc
	}
	if err := a.verify(mk()); err != nil {
		t.Fatalf("signed envelope refused: %v", err)
	}
	for name, change := range map[string]func(*actors.RaftRPC){
		"group": func(r *actors.RaftRPC) { r.Group = "h" },
		"from":  func(r *actors.RaftRPC) { r.From = "nonhost/b" },
		"body":  func(r *actors.RaftRPC) { r.GetRequestVote().Term = 6 },
		"type": func(r *actors.RaftRPC) {
			r.Body = &actors.RaftRPC_RequestPreVote{RequestPreVote: &actors.RequestPreVoteRequest{Term: 5}}
		},
		"key": func(r *actors.RaftRPC) { _ = newRPCAuth([]byte("another-key-0123456789abcdefghij")).sign(r) },
	} {
		rpc := mk()
		change(rpc)
		if a.verify(rpc) == nil {
			t.Fatalf("changed %s still verifies", name)
		}
	}
	if newRPCAuth(nil).verify(&actors.RaftRPC{}) != nil {
		t.Fatal("no key must check nothing")
	}
}

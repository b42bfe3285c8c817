package actors

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// protocolMessages lists every message type of the client protocol (package
// protoraft.v1, as far as this package defines it), so the decoding fuzz
// target covers messages added later without being edited.
func protocolMessages(t testing.TB) []protoreflect.MessageType {
	var out []protoreflect.MessageType
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if strings.HasPrefix(string(mt.Descriptor().FullName()), "protoraft.v1.") && !wireFile(mt.Descriptor().ParentFile().Path()) {
			out = append(out, mt)
		}
		return true
	})
	if len(out) < 25 {
		t.Fatalf("only %d protocol messages registered", len(out))
	}
	return out
}

// FuzzDecodeProtocol decodes arbitrary bytes as every protocol message:
// decoding never panics, and what decodes re-encodes and decodes equal.
// The helpers that read a decoded request (Op, ErrorReply, Deadline) run on
// it too.
func FuzzDecodeProtocol(f *testing.F) {
	seeds := []proto.Message{
		&WriteRequest{Meta: &RequestMeta{RequestId: "r", DeadlineUnixNano: 1, Credentials: "tok", ClientId: "c", Sequence: 7}, Command: []byte("x")},
		&ReadRequest{Query: []byte("q"), Consistency: Consistency_STALE},
		&MembershipRequest{Op: MembershipOp_ADD_VOTER, Id: "n1", Address: "127.0.0.1:7000/x"},
		&PolicyUpdateRequest{Document: []byte("version: 1")},
		&Error{Code: Code_NOT_LEADER, Leader: &Server{Id: "n1"}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Add([]byte{0x0a, 0x80, 0x80, 0x80, 0x80, 0x10})
	types := protocolMessages(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, mt := range types {
			m := mt.New().Interface()
			if err := proto.Unmarshal(data, m); err != nil {
				continue
			}
			if req, ok := m.(Request); ok {
				_ = Op(req)
				_ = req.GetMeta().Deadline(DefaultRequestTimeout)
				if ErrorReply(req, &Error{Code: Code_INTERNAL}) == nil && Op(req) != "unknown" {
					t.Fatalf("%s has an op but no error reply", mt.Descriptor().FullName())
				}
			}
			if e, ok := m.(*Error); ok {
				_ = e.Error()
			}
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			if err != nil {
				t.Fatalf("%s: decoded but does not encode: %v", mt.Descriptor().FullName(), err)
			}
			again := mt.New().Interface()
			if err := proto.Unmarshal(b, again); err != nil || !proto.Equal(m, again) {
				t.Fatalf("%s: round trip differs: %v", mt.Descriptor().FullName(), err)
			}
		}
	})
}

// FuzzValidators: the validators never panic, accept only what their
// documented rules allow, and name the field they were given.
func FuzzValidators(f *testing.F) {
	for _, s := range []string{"n1", "", "a.b_c-d", "-x", strings.Repeat("a", 65), "127.0.0.1:7000", "nonhost/x",
		"localhost:1/protoraft/g/n1", "[::1]:7000/x", "0.0.0.0:1/x", "host:0/x", "h:65536/x", "a..b:1/x", "\x00:1/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := ValidateNodeID("f", s); err != nil {
			if err.Field != "f" || err.Code != Code_INVALID_ARGUMENT {
				t.Fatalf("node ID error %v", err)
			}
		} else if s == "" || len(s) > MaxNodeIDLength || strings.ContainsAny(s, " /:\x00") {
			t.Fatalf("node ID %q accepted", s)
		}
		if err := ValidateHostPort("f", s); err == nil && (strings.HasPrefix(s, "0.0.0.0:") || strings.HasPrefix(s, "[::]:")) {
			t.Fatalf("wildcard address %q accepted", s)
		} else if err != nil && err.Field != "f" {
			t.Fatalf("address error %v", err)
		}
		if err := ValidateRaftAddress("f", s); err == nil && !strings.Contains(s, "/") {
			t.Fatalf("raft address %q without actor accepted", s)
		}
	})
}

// wireFile reports whether a .proto file is one of internal/wire's, which
// have a fuzz target of their own there.
func wireFile(path string) bool { return strings.HasPrefix(path, "internal/wire/") }

package wire

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// wireMessages lists every message of this package's .proto files, so the
// decoding fuzz target covers messages added later without being edited.
func wireMessages(t testing.TB) []protoreflect.MessageType {
	var out []protoreflect.MessageType
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		switch mt.Descriptor().ParentFile().Path() {
		case "internal/wire/proto/raftrpc.proto", "internal/wire/proto/entry.proto":
			out = append(out, mt)
		}
		return true
	})
	if len(out) < 25 {
		t.Fatalf("only %d wire messages registered", len(out))
	}
	return out
}

// FuzzDecodeWire decodes arbitrary bytes as every wire message, as a peer
// or a damaged disk could hand them over: decoding never panics, and what
// decodes re-encodes and decodes equal.
func FuzzDecodeWire(f *testing.F) {
	seeds := []proto.Message{
		&RaftRPC{Group: "g", From: "a", Auth: []byte{1}, Body: &RaftRPC_AppendEntries{AppendEntries: &AppendEntriesRequest{Entries: []*LogEntry{{Index: 1, Data: []byte("d")}}}}},
		&RaftRPCReply{Error: "e", Code: RPCError_RPC_ERROR_QUEUE_FULL},
		&LinkFrame{Call: 1, Target: "node", Rpc: &RaftRPC{Body: &RaftRPC_LinkQuery{LinkQuery: &LinkQuery{}}}},
		&SessionTable{Clock: 1, Sessions: []*Session{{ClientId: "c", Results: []*SessionResult{{Sequence: 1}}}}, Policy: &PolicyState{Document: []byte("p"), Index: 3}},
		&EntryMeta{ClientId: "c", System: "policy"},
		&WriteBatch{Writes: []*BatchedWrite{{Command: []byte("x"), ClientId: "c", Sequence: 2}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0xff, 0xff})
	types := wireMessages(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, mt := range types {
			m := mt.New().Interface()
			if err := proto.Unmarshal(data, m); err != nil {
				continue
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

package transport

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/internal/link"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/internal/wire"
)

// On a link as over remote, an RPC goes through the transport's checks: a
// group with a cluster key refuses one without its MAC, and answers one with
// it; the refusal carries its code.
func TestLinkRPCsPassTheTransportsChecks(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	sys := testutil.NewSystem(t)
	l, err := link.Start(sys, link.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	key := []byte("a cluster key of the link group")
	tr := New(Config{System: sys, Group: "g", LocalID: "n1", LocalAddr: raft.ServerAddress(sys.Address() + "/node"), ClusterKey: key})
	t.Cleanup(func() { _ = tr.Close() })

	nc, err := net.DialTimeout("tcp", l.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := link.Handshake(nc, nil, l.Addr()); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(nc)
	ask := func(call uint32, rpc *wire.RaftRPC) *wire.RaftRPCReply {
		t.Helper()
		b, err := proto.Marshal(&wire.LinkFrame{Call: call, Target: "node", Rpc: rpc})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)); err != nil {
			t.Fatal(err)
		}
		var head [4]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			t.Fatal(err)
		}
		b = make([]byte, binary.BigEndian.Uint32(head[:]))
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatal(err)
		}
		f := &wire.LinkFrame{}
		if err := proto.Unmarshal(b, f); err != nil {
			t.Fatal(err)
		}
		return f.GetReply()
	}
	query := func() *wire.RaftRPC {
		return &wire.RaftRPC{Group: "g", From: "127.0.0.1:1/x", Body: &wire.RaftRPC_LinkQuery{LinkQuery: &wire.LinkQuery{}}}
	}
	if reply := ask(1, query()); reply.GetCode() != wire.RPCError_RPC_ERROR_UNAUTHENTICATED || reply.GetLinkAddress() != nil {
		t.Fatalf("answer to an unsigned rpc = %v, want it refused UNAUTHENTICATED", reply)
	}
	signed := query()
	if err := newRPCAuth(key).sign(signed); err != nil {
		t.Fatal(err)
	}
	if reply := ask(2, signed); reply.GetLinkAddress().GetAddress() != l.Addr() {
		t.Fatalf("answer to a signed rpc = %v, want the link's address", reply)
	}
}

//go:build unix

package main

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/internal/link"
	"github.com/protoraft/protoraft/internal/proctest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/internal/wire"
	"github.com/protoraft/protoraft/remoteguard"
)

// An attacker on 127.0.0.1 who reaches a node's ports sends a vote request
// and an append posing as n3, with a term 1000 above the group's, to every
// node's remote port and to every node's Raft link (speaking the link's
// handshake, as a peer without its key would). Against the sample as the
// README starts it (--secrets: mutual TLS, a cluster key) none reaches
// Raft and no node's term moves; against the same group started --insecure
// the same RPCs push every term up, so the test would see a forgery that
// got through.
func TestForgedRaftRPCsAgainstProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six OS processes; skipped with -short")
	}
	tmp := t.TempDir()
	bin, err := proctest.BuildKV(tmp)
	if err != nil {
		t.Fatal(err)
	}
	attacker := testutil.QuietSystem()
	r := remote.NewRemote(attacker, remoteguard.Config("127.0.0.1", 0))
	r.Start()
	t.Cleanup(func() {
		r.Shutdown(false)
		attacker.Shutdown()
	})
	for _, tc := range []struct {
		name     string
		insecure bool
	}{{"secure", false}, {"insecure", true}} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGroup(t, bin, tc.name, tc.insecure)
			up := map[string]*proctest.Node{}
			for _, n := range g.Nodes() {
				up[n.ID()] = n
			}
			leader := waitForLeader(t, up, "", 20*time.Second)
			before := maxTerm(t, g)
			as := g.Node("n3")
			asAddr := as.Addr() + "/protoraft/kv/n3/node"
			forged := forgedRPCs(asAddr, before+1000)
			var sent []*actor.Future
			for _, n := range g.Nodes() {
				target := actor.NewPID(n.Addr(), "protoraft/kv/"+n.ID()+"/node")
				for _, rpc := range forged {
					sent = append(sent, attacker.Root.RequestFuture(target, rpc, 3*time.Second))
				}
			}
			for _, f := range sent {
				// Over TLS there is no answer: the connection is refused.
				_, _ = f.Result()
			}
			// On the links a term above the remote one, so the insecure
			// group shows which path got through.
			for _, n := range g.Nodes() {
				if err := forgeOnLink(n, forgedRPCs(asAddr, before+5000)); err == nil && !tc.insecure {
					t.Errorf("%s's link took forged RPCs", n.ID())
				}
			}
			after := maxTerm(t, g)
			switch {
			case tc.insecure && after < before+5000:
				t.Fatalf("the insecure group's term went from %d to %d: the forgery did not get through, so the secure case shows nothing", before, after)
			case !tc.insecure && after != before:
				t.Fatalf("forged RPCs moved the secure group's term from %d to %d", before, after)
			case !tc.insecure:
				if st, err := nodeStatus(up[leader]); err != nil || st.GetState() != "Leader" {
					t.Fatalf("the leader %s after forged RPCs: %v %v", leader, st.GetState(), err)
				}
				if !putWithRetry(t, up, "after-forgery", "v", 20*time.Second) {
					t.Fatal("the secure group takes no write after forged RPCs")
				}
			}
			t.Logf("%s: term %d before, %d after", tc.name, before, after)
		})
	}
}

// forgedRPCs are a vote request and an append from asAddr at term.
func forgedRPCs(asAddr string, term uint64) []*wire.RaftRPC {
	header := &wire.RPCHeader{ProtocolVersion: int32(raft.ProtocolVersionMax), Id: []byte("n3"), Addr: []byte(asAddr)}
	return []*wire.RaftRPC{
		{Group: "kv", From: asAddr, Body: &wire.RaftRPC_RequestVote{RequestVote: &wire.RequestVoteRequest{
			Header: header, Term: term, Candidate: []byte(asAddr), LastLogIndex: 1 << 40, LastLogTerm: term - 1}}},
		{Group: "kv", From: asAddr, Body: &wire.RaftRPC_AppendEntries{AppendEntries: &wire.AppendEntriesRequest{
			Header: header, Term: term, Leader: []byte(asAddr), LeaderCommitIndex: 1 << 40}}},
	}
}

// forgeOnLink dials n's Raft link, does the handshake of a link without a
// key and sends rpcs, each as a frame to n's node actor. It returns nil
// when every RPC was answered.
func forgeOnLink(n *proctest.Node, rpcs []*wire.RaftRPC) error {
	_, fw := n.Forwarders()
	nc, err := net.DialTimeout("tcp", fw.Addr(), 2*time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = nc.Close() }()
	_ = nc.SetDeadline(time.Now().Add(3 * time.Second))
	if err := link.Handshake(nc, nil, fw.Addr()); err != nil {
		return err
	}
	r := bufio.NewReader(nc)
	for i, rpc := range rpcs {
		b, err := proto.Marshal(&wire.LinkFrame{Call: uint32(i + 1), Target: "protoraft/kv/" + n.ID() + "/node", Rpc: rpc})
		if err != nil {
			return err
		}
		if _, err := nc.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b)))); err != nil {
			return err
		}
		if _, err := nc.Write(b); err != nil {
			return err
		}
		var head [4]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return err
		}
		if _, err := io.ReadFull(r, make([]byte, binary.BigEndian.Uint32(head[:]))); err != nil {
			return err
		}
	}
	return nil
}

// startGroup starts three sample processes in dir/name, secured with a
// `kv certs` directory unless insecure.
func startGroup(t *testing.T, bin, name string, insecure bool) *proctest.Group {
	t.Helper()
	g, err := proctest.NewGroup(proctest.Config{Binary: bin, Dir: t.TempDir(), IDs: []string{"n1", "n2", "n3"},
		Link: func(string) bool { return true }, Insecure: insecure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	return g
}

// maxTerm is the highest term any node of g reports.
func maxTerm(t *testing.T, g *proctest.Group) uint64 {
	t.Helper()
	var term uint64
	for _, n := range g.Nodes() {
		st, err := nodeStatus(n)
		if err != nil {
			t.Fatalf("status of %s: %v", n.ID(), err)
		}
		term = max(term, st.GetTerm())
	}
	return term
}

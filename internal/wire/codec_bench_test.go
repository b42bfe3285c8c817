package wire

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// BenchmarkAppendEntriesCodec is the cost of carrying one AppendEntries RPC
// as an actor message over remote: raft's struct to protobuf, marshal,
// unmarshal, back to raft's struct. Remote does the marshal and unmarshal;
// the in-process path pays only the two conversions.
func BenchmarkAppendEntriesCodec(b *testing.B) {
	for _, tc := range []struct{ entries, size int }{{0, 0}, {1, 16}, {64, 16}, {64, 1024}} {
		b.Run(fmt.Sprintf("%dx%dB", tc.entries, tc.size), func(b *testing.B) {
			req := &raft.AppendEntriesRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n1"), Addr: []byte("127.0.0.1:7001/protoraft/g/n1/node")},
				Term:      7, PrevLogEntry: 1000, PrevLogTerm: 7, LeaderCommitIndex: 999,
			}
			for i := range tc.entries {
				req.Entries = append(req.Entries, &raft.Log{Index: uint64(1001 + i), Term: 7, Type: raft.LogCommand,
					Data: make([]byte, tc.size), AppendedAt: time.Now()})
			}
			b.ReportAllocs()
			for b.Loop() {
				msg := &RaftRPC{Group: "g", From: "127.0.0.1:7001/protoraft/g/n1/node",
					Body: &RaftRPC_AppendEntries{AppendEntries: EncodeAppendEntries(req)}}
				enc, err := proto.Marshal(msg)
				if err != nil {
					b.Fatal(err)
				}
				var got RaftRPC
				if err := proto.Unmarshal(enc, &got); err != nil {
					b.Fatal(err)
				}
				if r := got.GetAppendEntries().Decode(); len(r.Entries) != tc.entries {
					b.Fatalf("%d entries decoded, want %d", len(r.Entries), tc.entries)
				}
			}
		})
	}
}

// BenchmarkAppendEntriesResponseCodec is the reply's round trip, paid once
// per AppendEntries.
func BenchmarkAppendEntriesResponseCodec(b *testing.B) {
	resp := &raft.AppendEntriesResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n2")},
		Term: 7, LastLog: 1064, Success: true}
	b.ReportAllocs()
	for b.Loop() {
		msg := &RaftRPCReply{Body: &RaftRPCReply_AppendEntries{AppendEntries: EncodeAppendEntriesResponse(resp)}}
		enc, err := proto.Marshal(msg)
		if err != nil {
			b.Fatal(err)
		}
		var got RaftRPCReply
		if err := proto.Unmarshal(enc, &got); err != nil {
			b.Fatal(err)
		}
		if r := got.GetAppendEntries().Decode(); !r.Success {
			b.Fatal("lost the success flag")
		}
	}
}

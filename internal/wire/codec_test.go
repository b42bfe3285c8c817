package wire

import (
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestCodecRoundTrips(t *testing.T) {
	h := raft.RPCHeader{ProtocolVersion: 3, ID: []byte("n1"), Addr: []byte("nonhost/n1")}
	at := time.Unix(0, 1_700_000_000_123_456_789)
	ae := &raft.AppendEntriesRequest{
		//lint:ignore SA1019 the deprecated fields must survive the round trip too
		RPCHeader: h, Term: 5, Leader: []byte("L"), PrevLogEntry: 9, PrevLogTerm: 4, LeaderCommitIndex: 8,
		Entries: []*raft.Log{
			{Index: 10, Term: 5, Type: raft.LogCommand, Data: []byte("d"), Extensions: []byte("e"), AppendedAt: at},
			{Index: 11, Term: 5, Type: raft.LogConfiguration, Data: []byte("c")},
		},
	}
	check := func(name string, in, out interface{}) {
		t.Helper()
		if !reflect.DeepEqual(in, out) {
			t.Errorf("%s: round trip\n in: %#v\nout: %#v", name, in, out)
		}
	}
	got := EncodeAppendEntries(ae).Decode()
	check("AppendEntriesRequest", ae, got)
	if !got.Entries[1].AppendedAt.IsZero() {
		t.Error("zero AppendedAt did not stay zero")
	}
	check("AppendEntriesResponse", &raft.AppendEntriesResponse{RPCHeader: h, Term: 1, LastLog: 2, Success: true, NoRetryBackoff: true},
		EncodeAppendEntriesResponse(&raft.AppendEntriesResponse{RPCHeader: h, Term: 1, LastLog: 2, Success: true, NoRetryBackoff: true}).Decode())
	//lint:ignore SA1019 the deprecated fields must survive the round trip too
	rv := &raft.RequestVoteRequest{RPCHeader: h, Term: 2, Candidate: []byte("c"), LastLogIndex: 3, LastLogTerm: 1, LeadershipTransfer: true}
	check("RequestVoteRequest", rv, EncodeRequestVote(rv).Decode())
	rvr := &raft.RequestVoteResponse{RPCHeader: h, Term: 2, Peers: []byte("p"), Granted: true}
	check("RequestVoteResponse", rvr, EncodeRequestVoteResponse(rvr).Decode())
	pv := &raft.RequestPreVoteRequest{RPCHeader: h, Term: 2, LastLogIndex: 3, LastLogTerm: 1}
	check("RequestPreVoteRequest", pv, EncodeRequestPreVote(pv).Decode())
	pvr := &raft.RequestPreVoteResponse{RPCHeader: h, Term: 2, Granted: true}
	check("RequestPreVoteResponse", pvr, EncodeRequestPreVoteResponse(pvr).Decode())
	tn := &raft.TimeoutNowRequest{RPCHeader: h}
	check("TimeoutNowRequest", tn, EncodeTimeoutNow(tn).Decode())
	tnr := &raft.TimeoutNowResponse{RPCHeader: h}
	check("TimeoutNowResponse", tnr, EncodeTimeoutNowResponse(tnr).Decode())
	is := &raft.InstallSnapshotRequest{RPCHeader: h, SnapshotVersion: 1, Term: 4, Leader: []byte("L"), LastLogIndex: 30, LastLogTerm: 3,
		Peers: []byte("p"), Configuration: []byte("cfg"), ConfigurationIndex: 2, Size: 12345}
	check("InstallSnapshotRequest", is, EncodeInstallSnapshot(is).Decode())
	isr := &raft.InstallSnapshotResponse{RPCHeader: h, Term: 4, Success: true}
	check("InstallSnapshotResponse", isr, EncodeInstallSnapshotResponse(isr).Decode())
}

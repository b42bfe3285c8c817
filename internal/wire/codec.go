package wire

import (
	"time"

	"github.com/hashicorp/raft"
)

// The messages mirror hashicorp/raft's command structs field for field;
// EncodeX makes the message of a raft struct and Decode gives it back. The
// deprecated Leader and Candidate fields are carried as they are: a peer on
// an older raft protocol version still reads them.

// EncodeHeader encodes an RPC header.
func EncodeHeader(h raft.RPCHeader) *RPCHeader {
	return &RPCHeader{ProtocolVersion: int32(h.ProtocolVersion), Id: h.ID, Addr: h.Addr}
}

// Decode returns the raft header.
func (h *RPCHeader) Decode() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersion(h.GetProtocolVersion()), ID: h.GetId(), Addr: h.GetAddr()}
}

// EncodeLog encodes a log entry.
func EncodeLog(l *raft.Log) *LogEntry {
	e := &LogEntry{Index: l.Index, Term: l.Term, Type: uint32(l.Type), Data: l.Data, Extensions: l.Extensions}
	if !l.AppendedAt.IsZero() {
		e.AppendedAtUnixNano = l.AppendedAt.UnixNano()
	}
	return e
}

// Decode returns the raft log entry.
func (e *LogEntry) Decode() *raft.Log {
	l := &raft.Log{Index: e.GetIndex(), Term: e.GetTerm(), Type: raft.LogType(e.GetType()), Data: e.GetData(), Extensions: e.GetExtensions()}
	if n := e.GetAppendedAtUnixNano(); n != 0 {
		l.AppendedAt = time.Unix(0, n)
	}
	return l
}

// EncodeAppendEntries encodes an AppendEntries request.
func EncodeAppendEntries(r *raft.AppendEntriesRequest) *AppendEntriesRequest {
	p := &AppendEntriesRequest{
		//lint:ignore SA1019 carried for peers on older raft protocol versions
		Header: EncodeHeader(r.RPCHeader), Term: r.Term, Leader: r.Leader,
		PrevLogEntry: r.PrevLogEntry, PrevLogTerm: r.PrevLogTerm, LeaderCommitIndex: r.LeaderCommitIndex,
	}
	if len(r.Entries) > 0 {
		p.Entries = make([]*LogEntry, len(r.Entries))
		for i, l := range r.Entries {
			p.Entries[i] = EncodeLog(l)
		}
	}
	return p
}

// Decode returns the raft request.
func (p *AppendEntriesRequest) Decode() *raft.AppendEntriesRequest {
	r := &raft.AppendEntriesRequest{
		//lint:ignore SA1019 carried for peers on older raft protocol versions
		RPCHeader: p.GetHeader().Decode(), Term: p.GetTerm(), Leader: p.GetLeader(),
		PrevLogEntry: p.GetPrevLogEntry(), PrevLogTerm: p.GetPrevLogTerm(), LeaderCommitIndex: p.GetLeaderCommitIndex(),
	}
	if len(p.GetEntries()) > 0 {
		r.Entries = make([]*raft.Log, len(p.GetEntries()))
		for i, e := range p.GetEntries() {
			r.Entries[i] = e.Decode()
		}
	}
	return r
}

// EncodeAppendEntriesResponse encodes an AppendEntries response.
func EncodeAppendEntriesResponse(r *raft.AppendEntriesResponse) *AppendEntriesResponse {
	return &AppendEntriesResponse{Header: EncodeHeader(r.RPCHeader), Term: r.Term, LastLog: r.LastLog, Success: r.Success, NoRetryBackoff: r.NoRetryBackoff}
}

// Decode returns the raft response.
func (p *AppendEntriesResponse) Decode() *raft.AppendEntriesResponse {
	return &raft.AppendEntriesResponse{RPCHeader: p.GetHeader().Decode(), Term: p.GetTerm(), LastLog: p.GetLastLog(), Success: p.GetSuccess(), NoRetryBackoff: p.GetNoRetryBackoff()}
}

// EncodeRequestVote encodes a RequestVote request.
func EncodeRequestVote(r *raft.RequestVoteRequest) *RequestVoteRequest {
	//lint:ignore SA1019 carried for peers on older raft protocol versions
	return &RequestVoteRequest{Header: EncodeHeader(r.RPCHeader), Term: r.Term, Candidate: r.Candidate, LastLogIndex: r.LastLogIndex, LastLogTerm: r.LastLogTerm, LeadershipTransfer: r.LeadershipTransfer}
}

// Decode returns the raft request.
func (p *RequestVoteRequest) Decode() *raft.RequestVoteRequest {
	//lint:ignore SA1019 carried for peers on older raft protocol versions
	return &raft.RequestVoteRequest{RPCHeader: p.GetHeader().Decode(), Term: p.GetTerm(), Candidate: p.GetCandidate(), LastLogIndex: p.GetLastLogIndex(), LastLogTerm: p.GetLastLogTerm(), LeadershipTransfer: p.GetLeadershipTransfer()}
}

// EncodeRequestVoteResponse encodes a RequestVote response.
func EncodeRequestVoteResponse(r *raft.RequestVoteResponse) *RequestVoteResponse {
	return &RequestVoteResponse{Header: EncodeHeader(r.RPCHeader), Term: r.Term, Peers: r.Peers, Granted: r.Granted}
}

// Decode returns the raft response.
func (p *RequestVoteResponse) Decode() *raft.RequestVoteResponse {
	return &raft.RequestVoteResponse{RPCHeader: p.GetHeader().Decode(), Term: p.GetTerm(), Peers: p.GetPeers(), Granted: p.GetGranted()}
}

// EncodeRequestPreVote encodes a RequestPreVote request.
func EncodeRequestPreVote(r *raft.RequestPreVoteRequest) *RequestPreVoteRequest {
	return &RequestPreVoteRequest{Header: EncodeHeader(r.RPCHeader), Term: r.Term, LastLogIndex: r.LastLogIndex, LastLogTerm: r.LastLogTerm}
}

// Decode returns the raft request.
func (p *RequestPreVoteRequest) Decode() *raft.RequestPreVoteRequest {
	return &raft.RequestPreVoteRequest{RPCHeader: p.GetHeader().Decode(), Term: p.GetTerm(), LastLogIndex: p.GetLastLogIndex(), LastLogTerm: p.GetLastLogTerm()}
}

// EncodeRequestPreVoteResponse encodes a RequestPreVote response.
func EncodeRequestPreVoteResponse(r *raft.RequestPreVoteResponse) *RequestPreVoteResponse {
	return &RequestPreVoteResponse{Header: EncodeHeader(r.RPCHeader), Term: r.Term, Granted: r.Granted}
}

// Decode returns the raft response.
func (p *RequestPreVoteResponse) Decode() *raft.RequestPreVoteResponse {
	return &raft.RequestPreVoteResponse{RPCHeader: p.GetHeader().Decode(), Term: p.GetTerm(), Granted: p.GetGranted()}
}

// EncodeTimeoutNow encodes a TimeoutNow request.
func EncodeTimeoutNow(r *raft.TimeoutNowRequest) *TimeoutNowRequest {
	return &TimeoutNowRequest{Header: EncodeHeader(r.RPCHeader)}
}

// Decode returns the raft request.
func (p *TimeoutNowRequest) Decode() *raft.TimeoutNowRequest {
	return &raft.TimeoutNowRequest{RPCHeader: p.GetHeader().Decode()}
}

// EncodeTimeoutNowResponse encodes a TimeoutNow response.
func EncodeTimeoutNowResponse(r *raft.TimeoutNowResponse) *TimeoutNowResponse {
	return &TimeoutNowResponse{Header: EncodeHeader(r.RPCHeader)}
}

// Decode returns the raft response.
func (p *TimeoutNowResponse) Decode() *raft.TimeoutNowResponse {
	return &raft.TimeoutNowResponse{RPCHeader: p.GetHeader().Decode()}
}

// EncodeInstallSnapshot encodes an InstallSnapshot request.
func EncodeInstallSnapshot(r *raft.InstallSnapshotRequest) *InstallSnapshotRequest {
	return &InstallSnapshotRequest{
		Header: EncodeHeader(r.RPCHeader), SnapshotVersion: int32(r.SnapshotVersion), Term: r.Term, Leader: r.Leader,
		LastLogIndex: r.LastLogIndex, LastLogTerm: r.LastLogTerm, Peers: r.Peers, Configuration: r.Configuration,
		ConfigurationIndex: r.ConfigurationIndex, Size: r.Size,
	}
}

// Decode returns the raft request.
func (p *InstallSnapshotRequest) Decode() *raft.InstallSnapshotRequest {
	return &raft.InstallSnapshotRequest{
		RPCHeader: p.GetHeader().Decode(), SnapshotVersion: raft.SnapshotVersion(p.GetSnapshotVersion()), Term: p.GetTerm(), Leader: p.GetLeader(),
		LastLogIndex: p.GetLastLogIndex(), LastLogTerm: p.GetLastLogTerm(), Peers: p.GetPeers(), Configuration: p.GetConfiguration(),
		ConfigurationIndex: p.GetConfigurationIndex(), Size: p.GetSize(),
	}
}

// EncodeInstallSnapshotResponse encodes an InstallSnapshot response.
func EncodeInstallSnapshotResponse(r *raft.InstallSnapshotResponse) *InstallSnapshotResponse {
	return &InstallSnapshotResponse{Header: EncodeHeader(r.RPCHeader), Term: r.Term, Success: r.Success}
}

// Decode returns the raft response.
func (p *InstallSnapshotResponse) Decode() *raft.InstallSnapshotResponse {
	return &raft.InstallSnapshotResponse{RPCHeader: p.GetHeader().Decode(), Term: p.GetTerm(), Success: p.GetSuccess()}
}

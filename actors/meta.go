package actors

import (
	"time"

	"google.golang.org/protobuf/proto"
)

// DefaultRequestTimeout is the deadline of a request that carries none.
const DefaultRequestTimeout = 5 * time.Second

// MaxRequestTimeout bounds how far in the future a request's deadline may be.
const MaxRequestTimeout = 5 * time.Minute

// MaxReadBatch bounds the queries of one ReadRequest, so one message cannot
// hold the node's read path for long.
const MaxReadBatch = 1024

// Request is implemented by every request message of the protocol.
type Request interface {
	proto.Message
	GetMeta() *RequestMeta
}

// Response is implemented by every response message of the protocol.
type Response interface {
	proto.Message
	GetError() *Error
}

// NewMeta returns request metadata for a caller that waits timeout from
// now (SetTimeout).
func NewMeta(timeout time.Duration) *RequestMeta {
	m := &RequestMeta{}
	m.SetTimeout(timeout)
	return m
}

// SetTimeout says the caller waits timeout from now: as a timeout, which
// nodes count from the request's arrival on their own clock, and as the
// absolute deadline that nodes of earlier releases read.
func (m *RequestMeta) SetTimeout(timeout time.Duration) {
	m.TimeoutNanos = int64(timeout)
	m.DeadlineUnixNano = time.Now().Add(timeout).UnixNano()
}

// Deadline returns the deadline of a request on this process's clock: its
// timeout from now when it has one (the stage reading it calls Deadline
// when the request arrives), else its absolute deadline when set, else
// now plus fallback. A nil meta gets the fallback too.
//
// A timeout is what lets a node whose wall clock is hours off serve
// requests: an absolute deadline from a caller with another clock would
// have passed, or lie hours ahead, by the node's.
func (m *RequestMeta) Deadline(fallback time.Duration) time.Time {
	switch {
	case m == nil:
		return time.Now().Add(fallback)
	case m.TimeoutNanos > 0:
		return time.Now().Add(time.Duration(m.TimeoutNanos))
	case m.DeadlineUnixNano == 0:
		return time.Now().Add(fallback)
	}
	return time.Unix(0, m.DeadlineUnixNano)
}

// Op names the operation a request asks for, as used in metrics, audit
// records and authorization rules.
func Op(req any) string {
	switch r := req.(type) {
	case *WriteRequest:
		return "write"
	case *ReadRequest:
		switch r.GetConsistency() {
		case Consistency_LEASE:
			return "read_lease"
		case Consistency_STALE:
			return "read_stale"
		default:
			return "read_linearizable"
		}
	case *LeaderRequest:
		return "leader"
	case *MembershipRequest:
		switch r.GetOp() {
		case MembershipOp_ADD_VOTER:
			return "add_voter"
		case MembershipOp_ADD_NONVOTER:
			return "add_nonvoter"
		case MembershipOp_PROMOTE:
			return "promote"
		case MembershipOp_DEMOTE:
			return "demote"
		default:
			return "remove"
		}
	case *TransferLeadershipRequest:
		return "transfer_leadership"
	case *MembersRequest:
		return "members"
	case *UpdateTimeoutsRequest:
		return "update_timeouts"
	case *GetTimeoutsRequest:
		return "get_timeouts"
	case *StatusRequest:
		return "status"
	case *SnapshotRequest:
		return "snapshot"
	case *SnapshotReadRequest:
		return "snapshot_read"
	case *PolicyUpdateRequest:
		return "policy_update"
	case *PolicyGetRequest:
		return "policy_read"
	case *UpdateLimitsRequest:
		return "update_limits"
	case *LimiterStatsRequest:
		return "limiter_stats"
	default:
		return "unknown"
	}
}

// ErrorReply returns the response message that answers req with err, so a
// stage that refuses a request replies with the type the caller waits for.
// It returns nil for a message that is not a request of the protocol.
func ErrorReply(req any, err *Error) Response {
	switch req.(type) {
	case *WriteRequest:
		return &WriteResponse{Error: err}
	case *ReadRequest:
		return &ReadResponse{Error: err}
	case *LeaderRequest:
		return &LeaderResponse{Error: err}
	case *MembershipRequest:
		return &MembershipResponse{Error: err}
	case *TransferLeadershipRequest:
		return &TransferLeadershipResponse{Error: err}
	case *MembersRequest:
		return &MembersResponse{Error: err}
	case *UpdateTimeoutsRequest, *GetTimeoutsRequest:
		return &TimeoutsResponse{Error: err}
	case *StatusRequest:
		return &StatusResponse{Error: err}
	case *SnapshotRequest:
		return &SnapshotResponse{Error: err}
	case *SnapshotReadRequest:
		return &SnapshotReadResponse{Error: err}
	case *PolicyUpdateRequest:
		return &PolicyUpdateResponse{Error: err}
	case *PolicyGetRequest:
		return &PolicyGetResponse{Error: err}
	case *UpdateLimitsRequest:
		return &UpdateLimitsResponse{Error: err}
	case *LimiterStatsRequest:
		return &LimiterStatsResponse{Error: err}
	default:
		return nil
	}
}

package actors

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
)

// Error implements the error interface, so a reply's error can travel through
// Go code as an ordinary error and be recovered with errors.As.
func (e *Error) Error() string {
	if e == nil {
		return "OK"
	}
	s := e.Code.String()
	if e.Field != "" {
		s += " (" + e.Field + ")"
	}
	if e.Limit != "" {
		s += " (limit " + e.Limit + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Code == Code_NOT_LEADER && e.Leader != nil && e.Leader.Id != "" {
		s += " (leader " + e.Leader.Id + " at " + e.Leader.Address + ")"
	}
	return s
}

// Err returns e as a Go error, or nil when e reports success. Use it on a
// reply's error field: a nil *Error stored in an error interface is not nil.
func (e *Error) Err() error {
	if e == nil || e.Code == Code_OK {
		return nil
	}
	return e
}

// CodeOf returns the code of a reply error; nil is OK.
func CodeOf(e *Error) Code {
	if e == nil {
		return Code_OK
	}
	return e.Code
}

// Retryable reports whether a request that failed with code may be sent
// again unchanged. NOT_LEADER is retryable against the hinted leader; a
// DEADLINE_EXCEEDED write is retryable only with the same client ID and
// sequence, which makes the retry exactly-once. SESSION_EXPIRED is not: a
// retry can never be told from a new write again, so the write's outcome
// stays unknown.
func Retryable(code Code) bool {
	switch code {
	case Code_NOT_LEADER, Code_UNAVAILABLE, Code_DEADLINE_EXCEEDED, Code_RESOURCE_EXHAUSTED:
		return true
	default:
		return false
	}
}

// Errorf builds an Error with code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// NotLeader builds a NOT_LEADER error carrying the known leader, if any.
func NotLeader(leader *Server) *Error {
	e := &Error{Code: Code_NOT_LEADER, Message: "this node is not the leader"}
	if leader != nil && leader.Id != "" {
		e.Leader = leader
	} else {
		e.Message = "this node is not the leader and knows no leader"
	}
	return e
}

// InvalidArgument builds an INVALID_ARGUMENT error naming field.
func InvalidArgument(field, format string, args ...any) *Error {
	return &Error{Code: Code_INVALID_ARGUMENT, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ResourceExhausted builds a RESOURCE_EXHAUSTED error naming the limit hit
// and when the caller may retry.
func ResourceExhausted(limit string, retryAfter time.Duration, format string, args ...any) *Error {
	return &Error{
		Code:       Code_RESOURCE_EXHAUSTED,
		Limit:      limit,
		RetryAfter: durationpb.New(retryAfter),
		Message:    fmt.Sprintf(format, args...),
	}
}

// SessionExpired builds the SESSION_EXPIRED error of a registered write
// whose session the group does not know (any more): the write was not
// applied by this attempt, and its outcome is unknown.
func SessionExpired(format string, args ...any) *Error {
	return &Error{Code: Code_SESSION_EXPIRED, Message: fmt.Sprintf(format, args...)}
}

// DeadlineExceeded builds the DEADLINE_EXCEEDED error for a request whose
// deadline passed.
func DeadlineExceeded(what string) *Error {
	return &Error{Code: Code_DEADLINE_EXCEEDED, Message: what + ": deadline exceeded"}
}

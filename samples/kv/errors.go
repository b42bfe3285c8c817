package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/protoraft/protoraft/actors"
)

// codeNotFound is the sample's own code for a key that does not exist. It is
// not a protoraft code: a missing key is an answer of the state machine, not
// a failure of the request, so it only exists at the HTTP edge.
const codeNotFound = "NOT_FOUND"

// codeMethodNotAllowed is the sample's code for a known route asked with a
// method it does not serve; like NOT_FOUND it exists only at the HTTP edge.
const codeMethodNotAllowed = "METHOD_NOT_ALLOWED"

// errorBody is the JSON body of every non-2xx answer. code is what clients
// branch on; it is protoraft's code name, or NOT_FOUND.
type errorBody struct {
	Code         string      `json:"code"`
	Message      string      `json:"message,omitempty"`
	Field        string      `json:"field,omitempty"`
	Limit        string      `json:"limit,omitempty"`
	Leader       *serverJSON `json:"leader,omitempty"`
	RetryAfterMS int64       `json:"retry_after_ms,omitempty"`
}

// httpStatus maps a protoraft code to the HTTP status that tells a generic
// HTTP client the same thing: whether to fix the request, retry, or go
// elsewhere.
func httpStatus(code actors.Code) int {
	switch code {
	case actors.Code_OK:
		return http.StatusOK
	case actors.Code_NOT_LEADER:
		// 421 says "this server cannot answer for this resource, try
		// another": the body names the leader.
		return http.StatusMisdirectedRequest
	case actors.Code_UNAUTHENTICATED:
		return http.StatusUnauthorized
	case actors.Code_PERMISSION_DENIED:
		return http.StatusForbidden
	case actors.Code_RESOURCE_EXHAUSTED:
		return http.StatusTooManyRequests
	case actors.Code_INVALID_ARGUMENT:
		return http.StatusBadRequest
	case actors.Code_DEADLINE_EXCEEDED:
		return http.StatusGatewayTimeout
	case actors.Code_UNAVAILABLE:
		return http.StatusServiceUnavailable
	case actors.Code_SESSION_EXPIRED:
		// 409: the write conflicts with the group's session state; its
		// outcome is unknown, and sending it again is a new write.
		return http.StatusConflict
	default:
		return http.StatusInternalServerError
	}
}

// toActorsError turns any error met while serving a request into a protoraft
// error, so every failure leaves the API with a code. Errors that are not
// protoraft's come from the HTTP side (the client went away, our own request
// timeout) or from a bug.
func toActorsError(err error) *actors.Error {
	var ae *actors.Error
	switch {
	case errors.As(err, &ae) && ae != nil:
		return ae
	case errors.Is(err, context.DeadlineExceeded):
		return actors.DeadlineExceeded("request")
	case errors.Is(err, context.Canceled):
		return actors.Errorf(actors.Code_UNAVAILABLE, "request canceled")
	default:
		return actors.Errorf(actors.Code_INTERNAL, "%v", err)
	}
}

// writeError answers with the HTTP status and JSON body of err.
func writeError(w http.ResponseWriter, err error) {
	e := toActorsError(err)
	body := errorBody{Code: e.Code.String(), Message: e.Message, Field: e.Field, Limit: e.Limit}
	if e.Leader != nil && e.Leader.Id != "" {
		body.Leader = serverOf(e.Leader)
	}
	if ra := e.GetRetryAfter(); ra != nil {
		d := ra.AsDuration()
		body.RetryAfterMS = d.Milliseconds()
		w.Header().Set("Retry-After", retryAfterSeconds(d))
	} else if e.Code == actors.Code_UNAVAILABLE || e.Code == actors.Code_NOT_LEADER {
		// Both usually clear within an election timeout: hint a short wait
		// so naive clients do not hammer the node meanwhile.
		w.Header().Set("Retry-After", "1")
	}
	if e.Code == actors.Code_UNAUTHENTICATED {
		// RFC 6750: a 401 names the scheme the client must use.
		w.Header().Set("WWW-Authenticate", `Bearer realm="protoraft"`)
	}
	writeJSON(w, httpStatus(e.Code), body)
}

// writeNotFound answers 404 for a key the state machine does not hold.
func writeNotFound(w http.ResponseWriter, what string, extra map[string]any) {
	body := map[string]any{"code": codeNotFound, "message": what + " not found"}
	for k, v := range extra {
		body[k] = v
	}
	writeJSON(w, http.StatusNotFound, body)
}

// badRequest answers 400 INVALID_ARGUMENT naming field.
func badRequest(w http.ResponseWriter, field, format string, args ...any) {
	writeError(w, actors.InvalidArgument(field, format, args...))
}

// retryAfterSeconds renders d for the Retry-After header, which only takes
// whole seconds: round up so a client never retries too early.
func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// writeJSON writes v as the response body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// The status line is already out; a failed write means the client went
	// away and there is nobody left to tell.
	_ = enc.Encode(v)
}

package actors

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidateNodeID(t *testing.T) {
	good := []string{"n1", "node-1", "a.b_c", "N", strings.Repeat("x", MaxNodeIDLength)}
	for _, id := range good {
		if err := ValidateNodeID("id", id); err != nil {
			t.Errorf("%q refused: %v", id, err)
		}
	}
	bad := []string{"", "-n1", ".n", "_n", "n 1", "n/1", "n:1", "ü", "n\x00", strings.Repeat("x", MaxNodeIDLength+1)}
	for _, id := range bad {
		err := ValidateNodeID("id", id)
		if err == nil || err.Code != Code_INVALID_ARGUMENT || err.Field != "id" {
			t.Errorf("%q: got %v, want INVALID_ARGUMENT on id", id, err)
		}
	}
}

func TestValidateHostPort(t *testing.T) {
	good := []string{"127.0.0.1:1", "10.0.0.1:65535", "[::1]:8080", "node-1.example.com:443", "localhost:9000"}
	for _, a := range good {
		if err := ValidateHostPort("address", a); err != nil {
			t.Errorf("%q refused: %v", a, err)
		}
	}
	bad := []string{"", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:http",
		"0.0.0.0:80", "[::]:80", ":80", "224.0.0.1:80", "-bad.example:80", "bad_host:80", "a..b:80",
		strings.Repeat("a", 64) + ".com:80"}
	for _, a := range bad {
		err := ValidateHostPort("address", a)
		if err == nil || err.Code != Code_INVALID_ARGUMENT || err.Field != "address" {
			t.Errorf("%q: got %v, want INVALID_ARGUMENT on address", a, err)
		}
	}
}

func TestValidateRaftAddress(t *testing.T) {
	good := []string{"nonhost/protoraft/g/n1", "127.0.0.1:8090/protoraft/g/n1"}
	for _, a := range good {
		if err := ValidateRaftAddress("address", a); err != nil {
			t.Errorf("%q refused: %v", a, err)
		}
	}
	bad := []string{"", "nonhost", "nonhost/", "0.0.0.0:1/x", "127.0.0.1:8090", "127.0.0.1:8090/a b", "host/x"}
	for _, a := range bad {
		if err := ValidateRaftAddress("address", a); err == nil || err.Field != "address" {
			t.Errorf("%q: got %v, want INVALID_ARGUMENT on address", a, err)
		}
	}
}

func TestErrorAsGoError(t *testing.T) {
	var e *Error
	if e.Err() != nil || (&Error{Code: Code_OK}).Err() != nil {
		t.Fatal("OK must be a nil error")
	}
	err := NotLeader(&Server{Id: "n2", Address: "nonhost/x"}).Err()
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != Code_NOT_LEADER || perr.Leader.Id != "n2" {
		t.Fatalf("errors.As: %v", err)
	}
	if !strings.Contains(err.Error(), "n2") {
		t.Fatalf("message lacks the leader: %v", err)
	}
	if NotLeader(nil).Leader != nil {
		t.Fatal("no leader known must carry no hint")
	}
}

func TestRetryable(t *testing.T) {
	for code, want := range map[Code]bool{
		Code_NOT_LEADER: true, Code_UNAVAILABLE: true, Code_DEADLINE_EXCEEDED: true, Code_RESOURCE_EXHAUSTED: true,
		Code_INVALID_ARGUMENT: false, Code_PERMISSION_DENIED: false, Code_UNAUTHENTICATED: false, Code_INTERNAL: false,
	} {
		if Retryable(code) != want {
			t.Errorf("Retryable(%v) = %v", code, !want)
		}
	}
}

// Every request of the protocol gets a typed error reply of its own kind.
func TestErrorReplyCoversEveryRequest(t *testing.T) {
	reqs := []Request{&WriteRequest{}, &ReadRequest{}, &LeaderRequest{}, &MembershipRequest{},
		&TransferLeadershipRequest{}, &MembersRequest{}, &UpdateTimeoutsRequest{}, &GetTimeoutsRequest{},
		&StatusRequest{}, &SnapshotRequest{}, &SnapshotReadRequest{}}
	for _, r := range reqs {
		resp := ErrorReply(r, Errorf(Code_UNAVAILABLE, "x"))
		if resp == nil || CodeOf(resp.GetError()) != Code_UNAVAILABLE {
			t.Errorf("%T: reply %v", r, resp)
		}
		if Op(r) == "unknown" {
			t.Errorf("%T has no operation name", r)
		}
	}
	if ErrorReply("not a request", nil) != nil {
		t.Error("non-request got a reply")
	}
}

// A timeout is counted from now, whatever the absolute deadline beside it
// says: a caller's wall clock hours off the node's changes nothing.
func TestValidateMetaTimeoutWinsOverTheDeadline(t *testing.T) {
	now := time.Now()
	for _, skew := range []time.Duration{-2 * time.Hour, 2 * time.Hour} {
		m := &RequestMeta{DeadlineUnixNano: now.Add(skew).UnixNano(), TimeoutNanos: int64(time.Second)}
		if err := ValidateMeta(m, now); err != nil {
			t.Fatalf("skew %v: %v", skew, err)
		}
		if d := m.Deadline(time.Minute); d.Before(now) || d.After(time.Now().Add(time.Second)) {
			t.Fatalf("skew %v: deadline %v, want about a second from now", skew, d)
		}
		m.TimeoutNanos = 0
		if ValidateMeta(m, now) == nil {
			t.Fatalf("skew %v: the deadline alone passed", skew)
		}
	}
	for _, bad := range []time.Duration{-time.Second, MaxRequestTimeout + time.Nanosecond} {
		if err := ValidateMeta(&RequestMeta{TimeoutNanos: int64(bad)}, now); err == nil || err.Field != "meta.timeout_nanos" {
			t.Fatalf("timeout %v: %v", bad, err)
		}
	}
}

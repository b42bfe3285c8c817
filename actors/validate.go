package actors

import (
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxNodeIDLength is the longest node ID accepted.
const MaxNodeIDLength = 64

// LocalSystemAddress is the address of an ActorSystem without remote: the
// PIDs of nodes that share one ActorSystem carry it.
const LocalSystemAddress = "nonhost"

// ValidateNodeID checks a node ID: 1 to 64 characters, letters, digits, '.',
// '_' and '-', starting with a letter or digit. IDs become part of file
// names, metric labels and log fields, so nothing else is allowed.
func ValidateNodeID(field, id string) *Error {
	if id == "" {
		return InvalidArgument(field, "node ID is empty")
	}
	if len(id) > MaxNodeIDLength {
		return InvalidArgument(field, "node ID is %d bytes, longer than %d", len(id), MaxNodeIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return InvalidArgument(field, "node ID %q: only letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit", id)
		}
	}
	return nil
}

// ValidateHostPort checks an advertised network address: host:port with a
// port from 1 to 65535 and a host that is an IP address (not the unspecified
// or a multicast one) or a syntactically valid DNS name.
func ValidateHostPort(field, addr string) *Error {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return InvalidArgument(field, "address %q is not host:port: %v", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 {
		return InvalidArgument(field, "address %q: port must be 1-65535", addr)
	}
	if host == "" {
		return InvalidArgument(field, "address %q has no host", addr)
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsUnspecified() || ip.IsMulticast() {
			return InvalidArgument(field, "address %q: %s cannot be advertised", addr, host)
		}
		return nil
	}
	if !validDNSName(host) {
		return InvalidArgument(field, "address %q: %q is neither an IP address nor a DNS name", addr, host)
	}
	return nil
}

// ValidateRaftAddress checks a node's Raft address, the string form of its
// node actor's PID: "<system address>/<actor id>", where the system address
// is host:port (see ValidateHostPort) or LocalSystemAddress for nodes that
// share one ActorSystem.
func ValidateRaftAddress(field, addr string) *Error {
	system, id, ok := strings.Cut(addr, "/")
	if !ok || id == "" {
		return InvalidArgument(field, "address %q is not <system address>/<actor id>", addr)
	}
	if len(addr) > 512 {
		return InvalidArgument(field, "address is %d bytes, longer than 512", len(addr))
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] >= 0x7f {
			return InvalidArgument(field, "address %q: actor id has a space or control character", addr)
		}
	}
	if system == LocalSystemAddress {
		return nil
	}
	return ValidateHostPort(field, system)
}

// validDNSName checks RFC 1123 host name syntax.
func validDNSName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Bounds on request metadata: these strings end up in the session table,
// log fields and audit records.
const (
	maxClientIDLength  = 128
	maxRequestIDLength = 256
)

// deadlineSlack tolerates clock skew between a caller that set the deadline
// and the stage checking it against MaxRequestTimeout.
const deadlineSlack = 5 * time.Second

// ValidateMeta checks request metadata against now: a timeout (when set)
// must be positive and at most MaxRequestTimeout; without one, a deadline
// (when set) must lie in the future and no more than MaxRequestTimeout
// ahead (plus a few seconds of clock skew); client and request IDs are bounded, and the
// client ID is UTF-8. A passed deadline is DEADLINE_EXCEEDED (not the
// caller's mistake: the request spent its time in transit or a mailbox),
// anything else INVALID_ARGUMENT naming the meta field. A nil meta is
// valid.
func ValidateMeta(m *RequestMeta, now time.Time) *Error {
	if m == nil {
		return nil
	}
	if t := time.Duration(m.GetTimeoutNanos()); t != 0 {
		// A timeout is counted from arrival: the absolute deadline, from
		// the caller's clock, is not checked against this one.
		if t < 0 || t > MaxRequestTimeout {
			return InvalidArgument("meta.timeout_nanos", "timeout is %v, not between 0 and %v", t, MaxRequestTimeout)
		}
	} else if d := m.GetDeadlineUnixNano(); d != 0 {
		switch deadline := time.Unix(0, d); {
		case !deadline.After(now):
			return DeadlineExceeded("the request arrived after its deadline")
		case deadline.Sub(now) > MaxRequestTimeout+deadlineSlack:
			return InvalidArgument("meta.deadline_unix_nano", "deadline is %v ahead, more than %v", deadline.Sub(now).Round(time.Second), MaxRequestTimeout)
		}
	}
	if l := len(m.GetClientId()); l > maxClientIDLength {
		return InvalidArgument("meta.client_id", "client ID is %d bytes, longer than %d", l, maxClientIDLength)
	}
	if !utf8.ValidString(m.GetClientId()) {
		// It is written to the log as a protobuf string, which must be UTF-8.
		return InvalidArgument("meta.client_id", "client ID is not valid UTF-8")
	}
	if l := len(m.GetRequestId()); l > maxRequestIDLength {
		return InvalidArgument("meta.request_id", "request ID is %d bytes, longer than %d", l, maxRequestIDLength)
	}
	return nil
}

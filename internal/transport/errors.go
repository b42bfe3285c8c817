package transport

import (
	"errors"
	"fmt"

	"github.com/protoraft/protoraft/internal/wire"
)

// Errors returned by the transport. They are values, so callers (and
// tests) can tell a transport failure from an error Raft reported; an RPC
// refused by a peer's transport fails with the same value on the sender,
// carried on the wire as a code (wire.RPCError).
var (
	// ErrTransportClosed is returned once Close was called, here or at the
	// peer.
	ErrTransportClosed = errors.New("transport closed")
	// ErrPeerDown is returned without sending while a peer's fail-fast
	// backoff runs; the error also wraps the peer's last failure, so
	// errors.Is tells a peer that stopped on purpose (ErrDeadLetter,
	// ErrNotReady) from one that timed out.
	ErrPeerDown = errors.New("peer down, failing fast")
	// ErrMessageDropped is returned when fault injection lost the RPC.
	ErrMessageDropped = errors.New("message dropped by fault injection")
	// ErrRPCTimeout is returned when no reply arrived within the timeout.
	ErrRPCTimeout = errors.New("rpc timed out")
	// ErrDeadLetter is returned when the target node actor does not exist.
	ErrDeadLetter = errors.New("target node actor not found")
	// ErrQueueFull is returned when the peer's Raft is not keeping up with
	// its inbound RPCs.
	ErrQueueFull = errors.New("inbound queue full")
	// ErrRPCAuth is returned when the peer refused the RPC for a missing or
	// invalid cluster key MAC.
	ErrRPCAuth = errors.New("rpc refused: missing or invalid cluster key MAC")
	// ErrWrongGroup is returned when the peer belongs to another group.
	ErrWrongGroup = errors.New("rpc refused: another group")
	// ErrNotReady is returned when the peer cannot answer this kind of RPC
	// yet (its node is starting).
	ErrNotReady = errors.New("peer not ready")
	// ErrProtocol is returned for an RPC or a reply that breaks the
	// protocol: an unknown body, a snapshot chunk out of order.
	ErrProtocol = errors.New("protocol violation")
)

// codes pairs each error the transport sends to a peer with its code.
var codes = []struct {
	err  error
	code wire.RPCError
}{
	{ErrTransportClosed, wire.RPCError_RPC_ERROR_CLOSED},
	{ErrQueueFull, wire.RPCError_RPC_ERROR_QUEUE_FULL},
	{ErrRPCAuth, wire.RPCError_RPC_ERROR_UNAUTHENTICATED},
	{ErrWrongGroup, wire.RPCError_RPC_ERROR_WRONG_GROUP},
	{ErrDeadLetter, wire.RPCError_RPC_ERROR_NOT_FOUND},
	{ErrNotReady, wire.RPCError_RPC_ERROR_NOT_READY},
	{ErrProtocol, wire.RPCError_RPC_ERROR_PROTOCOL},
}

// ErrorReply is the reply that fails an RPC with err: the text for people
// and releases that read no codes, and the code of the error value err is
// or wraps; an error of no known kind travels as one Raft returned.
func ErrorReply(err error) *wire.RaftRPCReply {
	reply := &wire.RaftRPCReply{Error: err.Error(), Code: wire.RPCError_RPC_ERROR_RAFT}
	if reply.Error == "" {
		reply.Error = "unknown error"
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			reply.Code = c.code
			break
		}
	}
	return reply
}

// replyError is the error a reply carries, nil when it carries none. A
// known code gives back the error value the peer had, wrapped with the
// peer's text.
func replyError(reply *wire.RaftRPCReply) error {
	text := reply.GetError()
	if text == "" && reply.GetCode() == wire.RPCError_RPC_ERROR_UNSPECIFIED {
		return nil
	}
	for _, c := range codes {
		if reply.GetCode() == c.code {
			return &peerError{text: text, err: c.err}
		}
	}
	if text == "" {
		text = fmt.Sprintf("peer answered with error code %v", reply.GetCode())
	}
	return errors.New(text)
}

// peerError is an error a peer answered with: the peer's text, standing for
// one of the transport's error values.
type peerError struct {
	text string
	err  error
}

func (e *peerError) Error() string { return "peer: " + e.text }
func (e *peerError) Unwrap() error { return e.err }

package remoteguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// MaxMessageSize bounds one gRPC message of the endpoint, that is a whole MessageBatch, in
// both directions. gRPC's default of 4 MiB applies to a batch of up to writerBatchSize
// messages, so a few large Raft messages (append entries, snapshot chunks) in one batch would
// kill the stream and lose every message in it. 16 MiB leaves room for writerBatchSize bounded
// messages while still refusing a peer that tries to make the receiver allocate without limit.
// A larger batch fails its own stream only. protoraft keeps every message it sends (a command,
// a query, a snapshot chunk, a link frame) within half of it.
const MaxMessageSize = 16 << 20

// writerBatchSize is how many queued messages protoactor packs into one MessageBatch. The
// default of 1000 multiplies any per-message size into a batch far above MaxMessageSize; 64
// keeps a batch of bounded messages well below it while still amortising the per-batch cost.
const writerBatchSize = 64

// writerQueueSize is the initial capacity of each peer's outgoing queue (and of the endpoint
// manager's). protoactor's default preallocates one million slots per peer, measured here at
// about 300 MiB of heap for a five-node mesh. The queue is a ring that doubles when full, so a
// smaller start costs nothing in correctness: it only stops every connection from reserving
// memory it will almost never use.
const writerQueueSize = 4096

// Serializer IDs that protoactor's remote registers in its own init, in registration order.
const (
	protoSerializerID = 0
	jsonSerializerID  = 1
)

// Names of the system messages whose PID fields protoactor dereferences without a nil
// check; a batch carrying one with the PID missing is refused.
var (
	watchTypeName      = string(proto.MessageName(&actor.Watch{}))
	unwatchTypeName    = string(proto.MessageName(&actor.Unwatch{}))
	terminatedTypeName = string(proto.MessageName(&actor.Terminated{}))
)

// errInvalidBatch marks a refusal by the guard, as opposed to a transport error.
var errInvalidBatch = errors.New("invalid remote message batch")

// Config returns a protoactor remote configuration for a node's endpoint with protoraft's hardening applied;
// opts are applied on top (e.g. remote.WithAdvertisedHost, remote.WithDialOptions for TLS later).
//
// The hardening:
//   - a gRPC stream interceptor checks every received MessageBatch before protoactor's endpoint
//     reader sees it (type names known, every index in range, serializer registered, PIDs
//     present) and refuses a bad batch by failing that stream only; it also recovers a panic of
//     the endpoint reader into a stream error. A unary interceptor recovers the panics of
//     protoactor's unimplemented unary methods. Without these, any client that can reach the
//     port can crash the process, because gRPC does not recover handler panics.
//   - the same interceptor sets the actors.HeaderPeerSubject header of every received message
//     to the subject of the connection's verified TLS client certificate, and deletes the
//     header when the connection has none, so a sender can never supply its own: the front
//     door can take it as the caller's TLS identity (policies: tls_subjects).
//   - MaxMessageSize on receive (server) and send (client call option).
//   - writerBatchSize and writerQueueSize instead of protoactor's defaults.
//
// Options in opts override the batch and queue sizes. ServerOptions and CallOptions from opts
// are kept and placed after protoraft's: a later grpc.MaxRecvMsgSize or MaxCallSendMsgSize
// wins, and interceptors added with grpc.ChainStreamInterceptor run inside the guard, so they
// only ever see validated batches (an interceptor set with grpc.StreamInterceptor is placed
// outermost by gRPC itself). remote.WithDialOptions replaces protoactor's default insecure
// dial option, so opts that set it must bring their own transport credentials.
func Config(host string, port int, opts ...remote.ConfigOption) *remote.Config {
	defaults := []remote.ConfigOption{
		remote.WithEndpointWriterBatchSize(writerBatchSize),
		remote.WithEndpointWriterQueueSize(writerQueueSize),
		// The manager's queue size is not read by this protoactor version; set anyway so a
		// later version that does use it does not silently bring back the million slots.
		remote.WithEndpointManagerQueueSize(writerQueueSize),
	}
	cfg := remote.Configure(host, port, append(defaults, opts...)...)

	// Prepended after opts were applied, because remote.WithServerOptions and
	// remote.WithCallOptions replace the slice instead of appending to it.
	cfg.ServerOptions = append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.ChainStreamInterceptor(guardStream),
		grpc.ChainUnaryInterceptor(guardUnary),
	}, cfg.ServerOptions...)
	cfg.CallOptions = append([]grpc.CallOption{
		grpc.MaxCallSendMsgSize(MaxMessageSize),
	}, cfg.CallOptions...)
	return cfg
}

// guardStream validates what the remote endpoint receives and turns a panic of the handler
// into an error of that stream, so one bad peer cannot take the whole process down.
// protoactor's endpoint reader runs its receive loop on the handler goroutine, so the
// deferred recover catches panics raised while it handles a batch.
func guardStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			slog.Default().Error("remoteguard: endpoint recovered from a panic; closing the stream",
				slog.String("method", info.FullMethod), slog.Any("panic", r),
				slog.String("peer", peerAddr(ss.Context())), slog.String("stack", string(debug.Stack())))
			err = status.Errorf(codes.Internal, "remoteguard: endpoint panicked: %v", r)
		}
	}()
	return handler(srv, &guardedStream{ServerStream: ss, subject: peerSubject(ss.Context())})
}

// guardUnary recovers panics of unary handlers: protoactor's ListProcesses and
// GetProcessDiagnostics are unimplemented and panic on every call.
func guardUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			slog.Default().Warn("remoteguard: endpoint recovered from a panic in a unary call",
				slog.String("method", info.FullMethod), slog.Any("panic", r), slog.String("peer", peerAddr(ctx)))
			resp, err = nil, status.Errorf(codes.Unimplemented, "remoteguard: %s failed: %v", info.FullMethod, r)
		}
	}()
	return handler(ctx, req)
}

// guardedStream refuses an invalid RemoteMessage by failing RecvMsg: protoactor's endpoint
// reader then ends the stream with that error, and the server goes on serving other streams.
type guardedStream struct {
	grpc.ServerStream
	// subject is the verified TLS client certificate's subject of the
	// connection, "" when there is none; the peer of a stream never changes,
	// so it is computed once.
	subject string
}

// RecvMsg validates each message before the endpoint reader gets to index into it, and
// stamps the peer's TLS subject on every envelope of a valid batch.
func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	rm, ok := m.(*remote.RemoteMessage)
	if !ok {
		return nil
	}
	if err := validateRemoteMessage(rm); err != nil {
		slog.Default().Warn("remoteguard: endpoint refused a message batch; closing the stream",
			slog.String("peer", peerAddr(s.Context())), slog.Any("error", err))
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if b, ok := rm.GetMessageType().(*remote.RemoteMessage_MessageBatch); ok {
		stampPeerSubject(b.MessageBatch, s.subject)
	}
	return nil
}

// validateRemoteMessage checks every field that protoactor's endpoint reader uses as a slice
// index or dereferences, and every type name it will hand to a serializer.
func validateRemoteMessage(rm *remote.RemoteMessage) error {
	switch t := rm.GetMessageType().(type) {
	case *remote.RemoteMessage_MessageBatch:
		return validateBatch(t.MessageBatch)
	case *remote.RemoteMessage_ConnectRequest:
		// The endpoint reader dereferences ServerConnection without a nil check.
		if c, ok := t.ConnectRequest.GetConnectionType().(*remote.ConnectRequest_ServerConnection); ok && c.ServerConnection == nil {
			return fmt.Errorf("%w: connect request without server connection", errInvalidBatch)
		}
	}
	return nil
}

// validateBatch is the check itself; see validateRemoteMessage.
func validateBatch(b *remote.MessageBatch) error {
	if b == nil {
		return fmt.Errorf("%w: empty batch", errInvalidBatch)
	}
	for i, pid := range b.Targets {
		if pid == nil {
			return fmt.Errorf("%w: target %d is nil", errInvalidBatch, i)
		}
	}
	for i, pid := range b.Senders {
		if pid == nil {
			return fmt.Errorf("%w: sender %d is nil", errInvalidBatch, i)
		}
	}
	for i, e := range b.Envelopes {
		if e == nil {
			return fmt.Errorf("%w: envelope %d is nil", errInvalidBatch, i)
		}
		if e.TypeId < 0 || int(e.TypeId) >= len(b.TypeNames) {
			return fmt.Errorf("%w: envelope %d: type index %d out of range [0,%d)", errInvalidBatch, i, e.TypeId, len(b.TypeNames))
		}
		if e.Target < 0 || int(e.Target) >= len(b.Targets) {
			return fmt.Errorf("%w: envelope %d: target index %d out of range [0,%d)", errInvalidBatch, i, e.Target, len(b.Targets))
		}
		// Sender is 1-based; 0 means no sender.
		if e.Sender < 0 || int(e.Sender) > len(b.Senders) {
			return fmt.Errorf("%w: envelope %d: sender index %d out of range [0,%d]", errInvalidBatch, i, e.Sender, len(b.Senders))
		}
		if !serializerRegistered(e.SerializerId) {
			return fmt.Errorf("%w: envelope %d: serializer %d is not registered", errInvalidBatch, i, e.SerializerId)
		}
		if err := validatePayload(b.TypeNames[e.TypeId], e.SerializerId, e.MessageData); err != nil {
			return fmt.Errorf("%w: envelope %d: %w", errInvalidBatch, i, err)
		}
	}
	return nil
}

// validatePayload checks what a serializer needs to deserialize without panicking.
func validatePayload(typeName string, serializerID int32, data []byte) error {
	if serializerID != protoSerializerID {
		// The JSON serializer turns an unknown type name into a *remote.JsonMessage instead of
		// failing, and a custom serializer's needs are unknown here: the recover in guardStream
		// is their only guard.
		return nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typeName))
	if err != nil {
		return fmt.Errorf("unknown type name %q", typeName)
	}
	switch typeName {
	case watchTypeName, unwatchTypeName, terminatedTypeName:
	default:
		return nil
	}
	// System messages go straight to protoactor's internals, which dereference their PID.
	msg := mt.New().Interface()
	if err := proto.Unmarshal(data, msg); err != nil {
		return fmt.Errorf("undecodable %s: %w", typeName, err)
	}
	var pid *actor.PID
	switch m := msg.(type) {
	case *actor.Watch:
		pid = m.Watcher
	case *actor.Unwatch:
		pid = m.Watcher
	case *actor.Terminated:
		pid = m.Who
	}
	if pid == nil {
		return fmt.Errorf("%s without its PID", typeName)
	}
	return nil
}

// serializerRegistered reports whether remote has a serializer with this ID. remote keeps
// its list private; the two it registers itself are known, and for a higher ID the only way
// to ask is to index the list through remote.Serialize and catch the out-of-range panic.
func serializerRegistered(id int32) (ok bool) {
	switch {
	case id < 0:
		return false
	case id == protoSerializerID || id == jsonSerializerID:
		return true
	}
	defer func() {
		if r := recover(); r != nil {
			// Any other panic came from inside a serializer that does exist.
			re, isRuntime := r.(runtime.Error)
			ok = !isRuntime || !strings.Contains(re.Error(), "index out of range")
		}
	}()
	_, _, _ = remote.Serialize(&actor.PID{}, id)
	return true
}

// peerAddr names the remote side of a call for logs.
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "unknown"
}

package remoteguard

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/testutil"
)

// remoteTestTimeout bounds every wait in these tests, so a broken endpoint fails a test
// instead of hanging the run.
const remoteTestTimeout = 5 * time.Second

// statusRequestType is the wire type name of the message the tests send.
var statusRequestType = string(proto.MessageName(&actors.StatusRequest{}))

// remoteNode is one ActorSystem serving protoraft's hardened remote on loopback, with an
// echo actor that answers StatusRequest.
type remoteNode struct {
	sys  *actor.ActorSystem
	addr string
}

// newRemoteNode starts a node on 127.0.0.1 with a free port; stop undoes it.
func newRemoteNode() (n *remoteNode, stop func(), err error) {
	sys := testutil.QuietSystem()
	r := remote.NewRemote(sys, Config("127.0.0.1", 0))
	r.Start()
	stop = func() {
		r.Shutdown(false)
		sys.Shutdown()
	}
	if _, err := sys.Root.SpawnNamed(actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(*actors.StatusRequest); ok {
			c.Respond(&actors.StatusResponse{State: "echo"})
		}
	}), "echo"); err != nil {
		stop()
		return nil, nil, err
	}
	return &remoteNode{sys: sys, addr: sys.Address()}, stop, nil
}

var (
	sharedRemoteOnce sync.Once
	sharedRemote     *remoteNode
	sharedRemoteErr  error
)

// sharedRemoteNode is the one node that all single-remote tests share and that lives until
// the test binary exits. Under -race, a second remote.Start anywhere in the process is
// reported as a race inside protoactor even after the first remote was shut down (its gRPC
// goroutines still read the logger that Start replaces), so one node per process is what
// lets these tests run under the race detector.
func sharedRemoteNode(t *testing.T) *remoteNode {
	t.Helper()
	sharedRemoteOnce.Do(func() { sharedRemote, _, sharedRemoteErr = newRemoteNode() })
	if sharedRemoteErr != nil {
		t.Fatal(sharedRemoteErr)
	}
	return sharedRemote
}

// startRemoteNode starts a second node owned by the test; callers skip under -race.
func startRemoteNode(t *testing.T) *remoteNode {
	t.Helper()
	n, stop, err := newRemoteNode()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return n
}

// probe is an actor on a node that reports the messages it receives, so a test can see
// what the endpoint delivered.
type probe struct {
	node *remoteNode
	pid  *actor.PID
	got  chan any
}

// newProbe spawns a probe for this test only, so tests sharing a node do not see each
// other's messages.
func newProbe(t *testing.T, n *remoteNode) *probe {
	t.Helper()
	p := &probe{node: n, got: make(chan any, 16)}
	p.pid = n.sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *actors.StatusRequest, *remote.JsonMessage:
			select {
			case p.got <- m:
			default:
			}
		}
	}))
	t.Cleanup(func() { n.sys.Root.Stop(p.pid) })
	return p
}

// requestEcho does a remote request/reply from client to server's echo actor.
func requestEcho(t *testing.T, client, server *remoteNode) {
	t.Helper()
	res, err := client.sys.Root.RequestFuture(actor.NewPID(server.addr, "echo"), &actors.StatusRequest{}, remoteTestTimeout).Result()
	if err != nil {
		t.Fatalf("remote request/reply: %v", err)
	}
	if r, ok := res.(*actors.StatusResponse); !ok || r.GetState() != "echo" {
		t.Fatalf("remote request/reply: got %T %v", res, res)
	}
}

// rawStream opens the Receive stream the way a protoactor peer does (ConnectRequest, then
// ConnectResponse), with nothing of protoactor's client side in the way.
func rawStream(t *testing.T, addr string) remote.Remoting_ReceiveClient {
	t.Helper()
	conn, err := grpc.Dial(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), remoteTestTimeout)
	t.Cleanup(cancel)
	stream, err := remote.NewRemotingClient(conn).Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{
		ConnectRequest: &remote.ConnectRequest{ConnectionType: &remote.ConnectRequest_ServerConnection{
			ServerConnection: &remote.ServerConnection{SystemId: "raw-test-client", Address: "127.0.0.1:1"},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if resp.GetConnectResponse() == nil {
		t.Fatalf("connect: got %v, want a ConnectResponse", resp)
	}
	return stream
}

// sendBatch sends one batch on a fresh raw stream.
func sendBatch(t *testing.T, addr string, b *remote.MessageBatch) remote.Remoting_ReceiveClient {
	t.Helper()
	stream := rawStream(t, addr)
	err := stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: b}})
	// io.EOF means the server already ended the stream; Recv reports why.
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("send batch: %v", err)
	}
	return stream
}

// expectStreamRefused waits for the server to end the stream with the given code.
func expectStreamRefused(t *testing.T, stream remote.Remoting_ReceiveClient, want codes.Code) {
	t.Helper()
	for {
		msg, err := stream.Recv()
		if err == nil {
			// A DisconnectRequest or anything else the server might send first.
			t.Logf("server sent %v before ending the stream", msg)
			continue
		}
		if got := status.Code(err); got != want {
			t.Fatalf("stream ended with %v, want code %v", err, want)
		}
		return
	}
}

// validBatch carries one StatusRequest (without sender) to target.
func validBatch(target *actor.PID) *remote.MessageBatch {
	data, _ := proto.Marshal(&actors.StatusRequest{})
	return &remote.MessageBatch{
		TypeNames: []string{statusRequestType},
		Targets:   []*actor.PID{target},
		Envelopes: []*remote.MessageEnvelope{{TypeId: 0, MessageData: data, Target: 0, SerializerId: 0}},
	}
}

// expectProbeDelivery proves the endpoint still serves: a valid batch on a new connection
// reaches the probe actor.
func expectProbeDelivery(t *testing.T, p *probe) any {
	t.Helper()
	sendBatch(t, p.node.addr, validBatch(p.pid))
	select {
	case m := <-p.got:
		return m
	case <-time.After(remoteTestTimeout):
		t.Fatal("a valid batch was not delivered after the refusal: endpoint no longer serves")
		return nil
	}
}

// invalidBatches are batches that crash an unguarded protoactor endpoint (nil dereference or
// index out of range on the gRPC handler goroutine), or make it feed a nil PID to an actor.
func invalidBatches() []struct {
	name   string
	mutate func(b *remote.MessageBatch)
} {
	systemMessage := func(m proto.Message) func(b *remote.MessageBatch) {
		return func(b *remote.MessageBatch) {
			data, _ := proto.Marshal(m)
			b.TypeNames[0] = string(proto.MessageName(m))
			b.Envelopes[0].MessageData = data
		}
	}
	return []struct {
		name   string
		mutate func(b *remote.MessageBatch)
	}{
		{"unknown type name", func(b *remote.MessageBatch) { b.TypeNames[0] = "no.such.Type" }},
		{"type index too large", func(b *remote.MessageBatch) { b.Envelopes[0].TypeId = 5 }},
		{"type index negative", func(b *remote.MessageBatch) { b.Envelopes[0].TypeId = -1 }},
		{"target index too large", func(b *remote.MessageBatch) { b.Envelopes[0].Target = 3 }},
		{"target index negative", func(b *remote.MessageBatch) { b.Envelopes[0].Target = -2 }},
		{"no targets", func(b *remote.MessageBatch) { b.Targets = nil }},
		{"sender index too large", func(b *remote.MessageBatch) { b.Envelopes[0].Sender = 2 }},
		{"sender index negative", func(b *remote.MessageBatch) { b.Envelopes[0].Sender = -1 }},
		{"serializer too large", func(b *remote.MessageBatch) { b.Envelopes[0].SerializerId = 7 }},
		{"serializer negative", func(b *remote.MessageBatch) { b.Envelopes[0].SerializerId = -1 }},
		{"terminated without who", systemMessage(&actor.Terminated{})},
		{"watch without watcher", systemMessage(&actor.Watch{})},
		{"unwatch without watcher", systemMessage(&actor.Unwatch{})},
	}
}

// TestRemoteRefusesInvalidBatch sends each malformed batch from a raw gRPC client: the
// stream is refused, the process survives, and a valid batch on a new connection is still
// delivered. One remote only, so it also runs under the race detector.
func TestRemoteRefusesInvalidBatch(t *testing.T) {
	n := sharedRemoteNode(t)
	p := newProbe(t, n)
	for _, tc := range invalidBatches() {
		t.Run(tc.name, func(t *testing.T) {
			b := validBatch(p.pid)
			tc.mutate(b)
			expectStreamRefused(t, sendBatch(t, n.addr, b), codes.InvalidArgument)
			if _, ok := expectProbeDelivery(t, p).(*actors.StatusRequest); !ok {
				t.Fatal("probe got the wrong message")
			}
		})
	}
}

// TestRemoteAcceptsJSONWithUnknownType pins the decision for serializer 1: remote's JSON
// serializer wraps an unknown type name in a *remote.JsonMessage instead of failing, so the
// guard lets it through.
func TestRemoteAcceptsJSONWithUnknownType(t *testing.T) {
	n := sharedRemoteNode(t)
	p := newProbe(t, n)
	b := validBatch(p.pid)
	b.TypeNames[0] = "no.such.Type"
	b.Envelopes[0].SerializerId = 1
	b.Envelopes[0].MessageData = []byte(`{"x":1}`)
	sendBatch(t, n.addr, b)
	select {
	case m := <-p.got:
		if jm, ok := m.(*remote.JsonMessage); !ok || jm.TypeName != "no.such.Type" {
			t.Fatalf("probe got %T %v", m, m)
		}
	case <-time.After(remoteTestTimeout):
		t.Fatal("JSON message not delivered")
	}
}

// TestRemoteRefusesOversizedBatch sends a batch over MaxMessageSize: gRPC fails that
// stream with ResourceExhausted and the endpoint keeps serving.
func TestRemoteRefusesOversizedBatch(t *testing.T) {
	n := sharedRemoteNode(t)
	p := newProbe(t, n)
	b := validBatch(p.pid)
	b.Envelopes[0].MessageData = make([]byte, MaxMessageSize+1)
	expectStreamRefused(t, sendBatch(t, n.addr, b), codes.ResourceExhausted)
	expectProbeDelivery(t, p)
}

// TestRemoteUnaryPanicRecovered calls protoactor's unimplemented ListProcesses, whose
// handler panics: the caller gets an error and the process survives.
func TestRemoteUnaryPanicRecovered(t *testing.T) {
	n := sharedRemoteNode(t)
	p := newProbe(t, n)
	conn, err := grpc.Dial(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), remoteTestTimeout)
	defer cancel()
	_, err = remote.NewRemotingClient(conn).ListProcesses(ctx, &remote.ListProcessesRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("ListProcesses: got %v, want code Unimplemented", err)
	}
	expectProbeDelivery(t, p)
}

// panicStream is a ServerStream whose every method panics if the guard touches it; the
// guard must only pass it through.
type panicStream struct{ grpc.ServerStream }

// Context is used by the guard's logging.
func (panicStream) Context() context.Context { return context.Background() }

// TestRemoteGuardRecoversHandlerPanic covers the second line of defence directly: a panic in
// the stream handler becomes a stream error.
func TestRemoteGuardRecoversHandlerPanic(t *testing.T) {
	err := guardStream(nil, panicStream{}, &grpc.StreamServerInfo{FullMethod: "/test/Receive"},
		func(any, grpc.ServerStream) error { panic("boom") })
	if status.Code(err) != codes.Internal {
		t.Fatalf("got %v, want code Internal", err)
	}
}

// TestRemoteRoundTrip is the happy path between two ActorSystems.
func TestRemoteRoundTrip(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("starts two remotes in one process: protoactor's grpclog.SetLoggerV2 on every Start is reported by -race")
	}
	server, client := sharedRemoteNode(t), startRemoteNode(t)
	requestEcho(t, client, server)
	requestEcho(t, server, client)
}

// TestRemoteRoundTripAfterInvalidBatches attacks a node with every malformed batch and an
// oversized one, then checks a real protoactor peer still gets replies from it.
func TestRemoteRoundTripAfterInvalidBatches(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("starts two remotes in one process: protoactor's grpclog.SetLoggerV2 on every Start is reported by -race")
	}
	server, client := sharedRemoteNode(t), startRemoteNode(t)
	target := actor.NewPID(server.addr, "echo")
	requestEcho(t, client, server)
	for _, tc := range invalidBatches() {
		b := validBatch(target)
		tc.mutate(b)
		expectStreamRefused(t, sendBatch(t, server.addr, b), codes.InvalidArgument)
	}
	big := validBatch(target)
	big.Envelopes[0].MessageData = make([]byte, MaxMessageSize+1)
	expectStreamRefused(t, sendBatch(t, server.addr, big), codes.ResourceExhausted)
	requestEcho(t, client, server)
}

// TestRemoteConfig checks the hardening lands in the configuration and that caller options
// are applied on top without removing it.
func TestConfig(t *testing.T) {
	cfg := Config("127.0.0.1", 0)
	if cfg.Host != "127.0.0.1" || cfg.Port != 0 {
		t.Errorf("address %s:%d", cfg.Host, cfg.Port)
	}
	if cfg.EndpointWriterQueueSize != writerQueueSize || cfg.EndpointManagerQueueSize != writerQueueSize {
		t.Errorf("queue sizes %d/%d, want %d", cfg.EndpointWriterQueueSize, cfg.EndpointManagerQueueSize, writerQueueSize)
	}
	if cfg.EndpointWriterBatchSize != writerBatchSize {
		t.Errorf("writer batch size %d, want %d", cfg.EndpointWriterBatchSize, writerBatchSize)
	}
	if cfg.MaxRetryCount != 5 {
		t.Errorf("MaxRetryCount %d, want protoactor's default 5", cfg.MaxRetryCount)
	}
	if len(cfg.ServerOptions) != 3 {
		t.Errorf("%d server options, want 3 (size limit, stream and unary guard)", len(cfg.ServerOptions))
	}
	if len(cfg.DialOptions) != 1 {
		t.Errorf("%d dial options, want protoactor's default insecure one", len(cfg.DialOptions))
	}
	if len(cfg.CallOptions) != 1 {
		t.Fatalf("%d call options, want 1", len(cfg.CallOptions))
	}
	if o, ok := cfg.CallOptions[0].(grpc.MaxSendMsgSizeCallOption); !ok || o.MaxSendMsgSize != MaxMessageSize {
		t.Errorf("call option %#v, want MaxCallSendMsgSize(%d)", cfg.CallOptions[0], MaxMessageSize)
	}

	user := Config("127.0.0.1", 0,
		remote.WithEndpointWriterQueueSize(10),
		remote.WithServerOptions(grpc.ConnectionTimeout(time.Second)),
		remote.WithCallOptions(grpc.MaxCallSendMsgSize(1)),
	)
	if user.EndpointWriterQueueSize != 10 {
		t.Errorf("caller's queue size lost: %d", user.EndpointWriterQueueSize)
	}
	if len(user.ServerOptions) != 4 {
		t.Errorf("%d server options, want protoraft's 3 then the caller's 1", len(user.ServerOptions))
	}
	if len(user.CallOptions) != 2 {
		t.Fatalf("%d call options, want 2", len(user.CallOptions))
	}
	if o, ok := user.CallOptions[1].(grpc.MaxSendMsgSizeCallOption); !ok || o.MaxSendMsgSize != 1 {
		t.Errorf("caller's call option must come last so it wins, got %#v", user.CallOptions[1])
	}
}

// TestRemoteOversizedSendRecovers sends a message over MaxMessageSize through
// protoactor itself: the sender's gRPC refuses it (MaxCallSendMsgSize) and protoactor drops
// the whole link, losing that message and whatever was queued or sent right behind it (a
// request right after it timed out here). The link must come back: a retried request gets
// its reply.
func TestRemoteOversizedSendRecovers(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("starts two remotes in one process: protoactor's grpclog.SetLoggerV2 on every Start is reported by -race")
	}
	server, client := sharedRemoteNode(t), startRemoteNode(t)
	requestEcho(t, client, server)
	echo := actor.NewPID(server.addr, "echo")
	client.sys.Root.Send(echo, &actors.WriteRequest{Command: make([]byte, MaxMessageSize+1)})
	deadline := time.Now().Add(remoteTestTimeout)
	for {
		_, err := client.sys.Root.RequestFuture(echo, &actors.StatusRequest{}, time.Second).Result()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("link did not recover after an oversized message: %v", err)
		}
	}
}

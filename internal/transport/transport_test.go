package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/internal/wire"
)

// tcFSM is the trivial state machine of the transport tests: the list of
// applied commands, snapshotted as length-prefixed records.
type tcFSM struct {
	mu       sync.Mutex
	cmds     [][]byte
	restored bool
}

func (f *tcFSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, l.Data)
	return len(f.cmds)
}

func (f *tcFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var buf bytes.Buffer
	for _, c := range f.cmds {
		fmt.Fprintf(&buf, "%08d", len(c))
		buf.Write(c)
	}
	return &tcSnapshot{data: buf.Bytes()}, nil
}

func (f *tcFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	var cmds [][]byte
	for len(data) > 0 {
		var n int
		if _, err := fmt.Sscanf(string(data[:8]), "%08d", &n); err != nil {
			return err
		}
		cmds = append(cmds, data[8:8+n])
		data = data[8+n:]
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds, f.restored = cmds, true
	return nil
}

func (f *tcFSM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.cmds)
}

func (f *tcFSM) state() ([][]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.cmds...), f.restored
}

type tcSnapshot struct{ data []byte }

func (s *tcSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *tcSnapshot) Release() {}

// tcNodeActor is the smallest node actor: it hands every RaftRPC to its
// transport, which is how the real node actor must wire HandleRPC.
type tcNodeActor struct {
	trans  atomic.Pointer[Transport]
	chunks atomic.Int64
}

func (a *tcNodeActor) Receive(ctx actor.Context) {
	if rpc, ok := ctx.Message().(*wire.RaftRPC); ok {
		if rpc.GetSnapshotChunk() != nil {
			a.chunks.Add(1)
		}
		if t := a.trans.Load(); t != nil {
			t.HandleRPC(ctx.Sender(), rpc)
		}
	}
}

type tcNode struct {
	id    raft.ServerID
	pid   *actor.PID
	act   *tcNodeActor
	trans *Transport
	raft  *raft.Raft
	fsm   *tcFSM
}

type tcCluster struct {
	t      *testing.T
	system *actor.ActorSystem
	faults *faults.Network
	nodes  []*tcNode
	chunk  int
}

const tcGroup = "test-group"

func newTCCluster(t *testing.T, chunk int) *tcCluster {
	c := &tcCluster{t: t, system: testutil.QuietSystem(), faults: faults.NewNetwork(1), chunk: chunk}
	t.Cleanup(c.shutdown)
	return c
}

// start spawns size bootstrapped nodes. Node PIDs are needed for the
// bootstrap configuration, so actors are spawned first and raft after.
func (c *tcCluster) start(size int, tune func(*raft.Config)) {
	acts := make([]*tcNodeActor, size)
	pids := make([]*actor.PID, size)
	servers := make([]raft.Server, size)
	for i := range size {
		act := &tcNodeActor{}
		acts[i] = act
		pids[i] = c.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return act }))
		servers[i] = raft.Server{ID: raft.ServerID(fmt.Sprintf("n%d", i+1)), Address: wire.AddressOf(pids[i])}
	}
	for i := range size {
		c.startOn(acts[i], pids[i], servers[i].ID, servers, tune)
	}
}

func (c *tcCluster) startOn(act *tcNodeActor, pid *actor.PID, id raft.ServerID, bootstrap []raft.Server, tune func(*raft.Config)) *tcNode {
	n := &tcNode{id: id, pid: pid, act: act, fsm: &tcFSM{}}
	n.trans = New(Config{
		System: c.system, Group: tcGroup, LocalID: id, LocalAddr: wire.AddressOf(pid), Faults: c.faults,
		RPCTimeout: 500 * time.Millisecond, SnapshotChunkSize: c.chunk,
	})
	act.trans.Store(n.trans)
	conf := raft.DefaultConfig()
	conf.LocalID = id
	conf.HeartbeatTimeout = 200 * time.Millisecond
	conf.ElectionTimeout = 200 * time.Millisecond
	conf.LeaderLeaseTimeout = 100 * time.Millisecond
	conf.CommitTimeout = 10 * time.Millisecond
	conf.Logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	if tune != nil {
		tune(conf)
	}
	// As raftactor does: the fail-fast backoff follows the heartbeat.
	n.trans.SetHeartbeat(conf.HeartbeatTimeout)
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	if bootstrap != nil {
		if err := raft.BootstrapCluster(conf, store, store, snaps, n.trans, raft.Configuration{Servers: bootstrap}); err != nil {
			c.t.Fatalf("bootstrap %s: %v", id, err)
		}
	}
	r, err := raft.NewRaft(conf, n.fsm, store, store, snaps, n.trans)
	if err != nil {
		c.t.Fatalf("new raft %s: %v", id, err)
	}
	n.raft = r
	c.nodes = append(c.nodes, n)
	return n
}

func (c *tcCluster) shutdown() {
	for _, n := range c.nodes {
		if err := n.raft.Shutdown().Error(); err != nil {
			c.t.Errorf("shutdown %s: %v", n.id, err)
		}
		// raft.Shutdown already closed the transport; a second Close must be harmless.
		_ = n.trans.Close()
		c.system.Root.Stop(n.pid)
	}
	c.system.Shutdown()
}

// leader returns the single node that is leader, among the nodes not in
// exclude, or nil.
func (c *tcCluster) leader(exclude ...raft.ServerID) *tcNode {
	var found *tcNode
outer:
	for _, n := range c.nodes {
		for _, x := range exclude {
			if n.id == x {
				continue outer
			}
		}
		if n.raft.State() == raft.Leader {
			if found != nil {
				return nil
			}
			found = n
		}
	}
	return found
}

func (c *tcCluster) waitLeader(exclude ...raft.ServerID) *tcNode {
	c.t.Helper()
	var l *tcNode
	testutil.Eventually(c.t, "a leader", func() bool { l = c.leader(exclude...); return l != nil })
	return l
}

func (c *tcCluster) waitApplied(count int, nodes ...*tcNode) {
	c.t.Helper()
	if len(nodes) == 0 {
		nodes = c.nodes
	}
	for _, n := range nodes {
		testutil.Eventually(c.t, fmt.Sprintf("%d commands on %s", count, n.id), func() bool { return n.fsm.count() >= count })
	}
}

// applyOn applies cmd through leader l, retrying on a new leader if l
// lost leadership meanwhile.
func (c *tcCluster) apply(cmd []byte, exclude ...raft.ServerID) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := c.waitLeader(exclude...)
		err := l.raft.Apply(cmd, 2*time.Second).Error()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("apply: %v", err)
		}
	}
}

func TestTransportClusterElectsAndReplicates(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	c := newTCCluster(t, 0)
	c.start(3, nil)
	c.waitLeader()
	for i := range 5 {
		c.apply([]byte(fmt.Sprintf("cmd-%d", i)))
	}
	c.waitApplied(5)

	// Leadership transfer exercises TimeoutNow.
	old := c.waitLeader()
	if err := old.raft.LeadershipTransfer().Error(); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	c.waitLeader(old.id)
	c.apply([]byte("after-transfer"))
	c.waitApplied(6)
}

func TestTransportClusterFailoverWithIsolatedLeader(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	c := newTCCluster(t, 0)
	c.start(3, nil)
	c.apply([]byte("before"))
	c.waitApplied(1)

	old := c.waitLeader()
	c.faults.Isolate(old.id)
	newLeader := c.waitLeader(old.id)
	if err := newLeader.raft.Apply([]byte("during"), 5*time.Second).Error(); err != nil {
		t.Fatalf("apply on new leader %s: %v", newLeader.id, err)
	}
	var others []*tcNode
	for _, n := range c.nodes {
		if n.id != old.id {
			others = append(others, n)
		}
	}
	c.waitApplied(2, others...)
	if got := old.fsm.count(); got != 1 {
		t.Fatalf("isolated old leader applied %d commands, want 1", got)
	}

	c.faults.Heal()
	c.apply([]byte("after"))
	c.waitApplied(3)
	want, _ := c.nodes[0].fsm.state()
	for _, n := range c.nodes[1:] {
		got, _ := n.fsm.state()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s diverged: %q vs %q", n.id, got, want)
		}
	}
}

func TestTransportInstallSnapshotInChunks(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	const chunk = 1024
	c := newTCCluster(t, chunk)
	tune := func(conf *raft.Config) {
		conf.TrailingLogs = 2
		conf.SnapshotThreshold = 4
		conf.SnapshotInterval = time.Hour // only the explicit snapshot below
	}
	c.start(3, tune)
	payload := bytes.Repeat([]byte("x"), 700)
	const cmds = 20
	for i := range cmds {
		c.apply(append([]byte(fmt.Sprintf("%03d", i)), payload...))
	}
	l := c.waitLeader()
	if err := l.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// One more entry so the new node needs both the snapshot and the log.
	c.apply([]byte("tail"))

	act := &tcNodeActor{}
	pid := c.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return act }))
	fresh := c.startOn(act, pid, "n4", nil, tune)
	l = c.waitLeader()
	if err := l.raft.AddVoter(fresh.id, wire.AddressOf(pid), 0, 5*time.Second).Error(); err != nil {
		t.Fatalf("add voter: %v", err)
	}
	c.waitApplied(cmds+1, fresh)
	got, restored := fresh.fsm.state()
	want, _ := l.fsm.state()
	if !restored {
		t.Fatal("fresh node did not restore from a snapshot")
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fresh node state differs: %d vs %d commands", len(got), len(want))
	}
	if n := act.chunks.Load(); n <= 1 {
		t.Fatalf("snapshot arrived in %d chunk(s), want several", n)
	}
}

// fakeRaft consumes a transport's RPCs like raft would, answering
// InstallSnapshot after reading the whole stream.
func fakeRaft(t *testing.T, trans *Transport, got chan<- []byte, stop <-chan struct{}, done *sync.WaitGroup) {
	done.Add(1)
	go func() {
		defer done.Done()
		for {
			select {
			case <-stop:
				return
			case rpc := <-trans.Consumer():
				switch cmd := rpc.Command.(type) {
				case *raft.InstallSnapshotRequest:
					data, err := io.ReadAll(rpc.Reader)
					if err == nil && int64(len(data)) != cmd.Size {
						err = fmt.Errorf("read %d of %d bytes", len(data), cmd.Size)
					}
					got <- data
					rpc.Respond(&raft.InstallSnapshotResponse{Term: cmd.Term, Success: err == nil}, err)
				case *raft.AppendEntriesRequest:
					rpc.Respond(&raft.AppendEntriesResponse{Term: cmd.Term, Success: true}, nil)
				default:
					rpc.Respond(nil, fmt.Errorf("unexpected %T", cmd))
				}
			}
		}
	}()
}

type tcPair struct {
	system   *actor.ActorSystem
	a, b     *Transport
	aPID     *actor.PID
	bPID     *actor.PID
	bAct     *tcNodeActor
	received chan []byte
}

func newTCPair(t *testing.T, chunk int, faults *faults.Network) *tcPair {
	p := &tcPair{system: testutil.QuietSystem(), received: make(chan []byte, 1)}
	aAct, bAct := &tcNodeActor{}, &tcNodeActor{}
	p.bAct = bAct
	p.aPID = p.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return aAct }))
	p.bPID = p.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return bAct }))
	mk := func(id raft.ServerID, pid *actor.PID) *Transport {
		return New(Config{
			System: p.system, Group: tcGroup, LocalID: id, LocalAddr: wire.AddressOf(pid), Faults: faults,
			RPCTimeout: time.Second, SnapshotChunkSize: chunk, FailFastBackoff: time.Hour,
		})
	}
	p.a, p.b = mk("a", p.aPID), mk("b", p.bPID)
	aAct.trans.Store(p.a)
	bAct.trans.Store(p.b)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	fakeRaft(t, p.b, p.received, stop, &wg)
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		_ = p.a.Close()
		_ = p.b.Close()
		p.system.Shutdown()
	})
	return p
}

func TestTransportSnapshotSizes(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	const chunk = 64
	p := newTCPair(t, chunk, nil)
	var sent int64
	for _, size := range []int{0, 1, chunk - 1, chunk, chunk + 1, 5 * chunk, 5*chunk + 17} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		before := p.bAct.chunks.Load()
		var resp raft.InstallSnapshotResponse
		args := &raft.InstallSnapshotRequest{RPCHeader: raft.RPCHeader{ID: []byte("a")}, Term: 3, Size: int64(size)}
		if err := p.a.InstallSnapshot("b", wire.AddressOf(p.bPID), args, &resp, bytes.NewReader(data)); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !resp.Success || resp.Term != 3 {
			t.Fatalf("size %d: response %+v", size, resp)
		}
		select {
		case got := <-p.received:
			if !bytes.Equal(got, data) {
				t.Fatalf("size %d: received %d bytes, differing", size, len(got))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("size %d: nothing received", size)
		}
		wantChunks := int64(max(1, (size+chunk-1)/chunk))
		if n := p.bAct.chunks.Load() - before; n != wantChunks {
			t.Fatalf("size %d: %d chunks, want %d", size, n, wantChunks)
		}
		sent += int64(size)
	}
	// A reader shorter than Size is an error on the sender, not a hang.
	var resp raft.InstallSnapshotResponse
	args := &raft.InstallSnapshotRequest{RPCHeader: raft.RPCHeader{ID: []byte("a")}, Term: 3, Size: 10}
	if err := p.a.InstallSnapshot("b", wire.AddressOf(p.bPID), args, &resp, bytes.NewReader(make([]byte, 5))); err == nil {
		t.Fatal("short snapshot reader: want error")
	}
}

func TestTransportAbandonedSnapshotUnblocksReader(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	p := newTCPair(t, 16, nil)
	p.b.cfg.RPCTimeout = 50 * time.Millisecond // idle timeout is 2x this
	// Send only the first chunk of a 64-byte snapshot by hand.
	reply, err := p.a.Call("b", wire.AddressOf(p.bPID), &wire.RaftRPC{Body: &wire.RaftRPC_SnapshotChunk{SnapshotChunk: &wire.SnapshotChunk{
		TransferId: 42, Data: make([]byte, 16),
		Request: &wire.InstallSnapshotRequest{Header: &wire.RPCHeader{Id: []byte("a")}, Term: 1, Size: 64},
	}}}, time.Second)
	if err != nil || reply.GetChunkAck() != 16 {
		t.Fatalf("first chunk: reply %v, err %v", reply, err)
	}
	select {
	case got := <-p.received:
		if len(got) != 16 {
			t.Fatalf("reader got %d bytes before the abort, want 16", len(got))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("raft's reader was not unblocked")
	}
}

func TestTransportRefusesOtherGroup(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	p := newTCPair(t, 0, nil)
	res, err := p.system.Root.RequestFuture(p.bPID, &wire.RaftRPC{
		Group: "other-group",
		Body:  &wire.RaftRPC_AppendEntries{AppendEntries: &wire.AppendEntriesRequest{Term: 1, PrevLogEntry: 1}},
	}, 5*time.Second).Result()
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	reply, ok := res.(*wire.RaftRPCReply)
	if !ok || reply.GetError() == "" || reply.GetBody() != nil {
		t.Fatalf("want an error reply, got %#v", res)
	}
	// The same RPC for the right group goes through to raft.
	var resp raft.AppendEntriesResponse
	if err := p.a.AppendEntries("b", wire.AddressOf(p.bPID), &raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 1}, &resp); err != nil || !resp.Success {
		t.Fatalf("same group: %+v, %v", resp, err)
	}
}

func TestTransportFailFastAndClose(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	p := newTCPair(t, 0, nil)
	missing := wire.AddressOf(actor.NewPID(p.system.Address(), "no-such-node"))
	var resp raft.AppendEntriesResponse
	for i := range DefaultFailFastThreshold {
		err := p.a.AppendEntries("x", missing, &raft.AppendEntriesRequest{Term: 1}, &resp)
		if !errors.Is(err, ErrDeadLetter) {
			t.Fatalf("attempt %d: want dead letter, got %v", i, err)
		}
	}
	if err := p.a.AppendEntries("x", missing, &raft.AppendEntriesRequest{Term: 1}, &resp); !errors.Is(err, ErrPeerDown) {
		t.Fatalf("after %d failures: want fail fast, got %v", DefaultFailFastThreshold, err)
	}

	// An RPC to a node actor that never answers is aborted by Close.
	silent := p.system.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	defer p.system.Root.Stop(silent)
	errc := make(chan error, 1)
	go func() {
		errc <- p.a.RequestVote("s", wire.AddressOf(silent), &raft.RequestVoteRequest{Term: 1}, &raft.RequestVoteResponse{})
	}()
	// Wait until the request reached the silent actor's mailbox is not
	// observable; closing at any point must end the call either way.
	_ = p.a.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrTransportClosed) {
			t.Fatalf("want transport closed, got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight RPC not aborted by Close")
	}
	if err := p.a.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestTransportHeartbeatFastPath(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	p := newTCPair(t, 0, nil)
	seen := make(chan *raft.AppendEntriesRequest, 1)
	p.b.SetHeartbeatHandler(func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		seen <- req
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, Success: true, LastLog: 99}, nil)
	})
	var resp raft.AppendEntriesResponse
	hb := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("a"), Addr: []byte(wire.AddressOf(p.aPID))}, Term: 7}
	if err := p.a.AppendEntries("b", wire.AddressOf(p.bPID), hb, &resp); err != nil || resp.LastLog != 99 {
		t.Fatalf("heartbeat: %+v, %v", resp, err)
	}
	select {
	case got := <-seen:
		if got.Term != 7 {
			t.Fatalf("heartbeat term %d", got.Term)
		}
	default:
		t.Fatal("heartbeat handler not used")
	}
	// Not a heartbeat (has a commit index): goes to the consumer instead.
	if err := p.a.AppendEntries("b", wire.AddressOf(p.bPID), &raft.AppendEntriesRequest{RPCHeader: hb.RPCHeader, Term: 7, LeaderCommitIndex: 1}, &resp); err != nil || resp.LastLog == 99 {
		t.Fatalf("append entries: %+v, %v", resp, err)
	}
}

func TestTransportFaultsApplyToRPCs(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	f := faults.NewNetwork(7)
	p := newTCPair(t, 0, f)
	var resp raft.AppendEntriesResponse
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("a")}, Term: 1, PrevLogEntry: 1}
	f.Cut("a", "b")
	if err := p.a.AppendEntries("b", wire.AddressOf(p.bPID), req, &resp); !errors.Is(err, ErrMessageDropped) {
		t.Fatalf("cut a->b: want dropped, got %v", err)
	}
	f.Heal()
	// The reply direction cut: the request arrives, the answer is lost.
	f.Cut("b", "a")
	if err := p.a.AppendEntries("b", wire.AddressOf(p.bPID), req, &resp); !errors.Is(err, ErrRPCTimeout) {
		t.Fatalf("cut b->a: want timeout, got %v", err)
	}
	f.Heal()
	f.Delay("a", "b", time.Millisecond, time.Millisecond)
	if err := p.a.AppendEntries("b", wire.AddressOf(p.bPID), req, &resp); err != nil || !resp.Success {
		t.Fatalf("delayed: %+v, %v", resp, err)
	}
	// A delay counts against the RPC timeout, as a slow link would: an RPC
	// held longer than the timeout fails instead of succeeding late.
	f.Delay("a", "b", 2*time.Second, 0)
	if err := p.a.AppendEntries("b", wire.AddressOf(p.bPID), req, &resp); !errors.Is(err, ErrRPCTimeout) {
		t.Fatalf("delayed past the timeout: want timeout, got %v", err)
	}
}

// A peer RPC (here a leadership probe) is answered by the receiver's
// PeerHandler, and refused with ErrNotReady until one is set; fault
// injection applies to it like to any RPC.
func TestPeerRPCAnsweredByThePeerHandler(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	f := faults.NewNetwork(7)
	p := newTCPair(t, 0, f)
	probe := func() (*wire.RaftRPCReply, error) {
		msg := &wire.RaftRPC{Body: &wire.RaftRPC_LeadershipProbe{LeadershipProbe: &wire.LeadershipProbe{Id: "a"}}}
		return p.a.Call("b", wire.AddressOf(p.bPID), msg, time.Second)
	}
	if _, err := probe(); !errors.Is(err, ErrNotReady) {
		t.Fatalf("a probe before a handler was set: %v, want ErrNotReady", err)
	}
	p.b.SetPeerHandler(func(rpc *wire.RaftRPC, reply Reply) {
		from := raft.ServerID(rpc.GetLeadershipProbe().GetId())
		if from != "a" {
			t.Errorf("probe from %q, want a", from)
		}
		reply(from, &wire.RaftRPCReply{Body: &wire.RaftRPCReply_LeadershipProbe{LeadershipProbe: &wire.LeadershipProbeAnswer{Term: 9, ContactAgeNanos: 42}}})
	})
	r, err := probe()
	if a := r.GetLeadershipProbe(); err != nil || a.GetTerm() != 9 || a.GetContactAgeNanos() != 42 {
		t.Fatalf("answer %v, %v", r, err)
	}
	f.Cut("a", "b")
	if _, err := probe(); !errors.Is(err, ErrMessageDropped) {
		t.Fatalf("cut a->b: want dropped, got %v", err)
	}
	f.Heal()
	f.Cut("b", "a") // the answer is lost on its way back
	if _, err := probe(); !errors.Is(err, ErrRPCTimeout) {
		t.Fatalf("cut b->a: want a timeout, got %v", err)
	}
}

// An RPC the peer's transport refuses fails on the sender with the error
// value the peer had, not a string: the code travels on the wire.
func TestPeerRefusalsArriveAsTheirErrorValues(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	system := testutil.NewSystem(t)
	key := []byte("a cluster key of sixteen bytes or more")
	spawn := func(id raft.ServerID, mutate func(*Config)) (*Transport, *actor.PID) {
		act := &tcNodeActor{}
		pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return act }))
		cfg := Config{System: system, Group: tcGroup, LocalID: id, LocalAddr: wire.AddressOf(pid), RPCTimeout: time.Second, FailFastBackoff: time.Hour, ClusterKey: key}
		if mutate != nil {
			mutate(&cfg)
		}
		tr := New(cfg)
		act.trans.Store(tr)
		t.Cleanup(func() { _ = tr.Close() })
		return tr, pid
	}
	a, _ := spawn("a", func(c *Config) { c.RPCTimeout = 200 * time.Millisecond })
	vote := func(to *actor.PID) error {
		return a.RequestVote("x", wire.AddressOf(to), &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("a")}, Term: 1}, &raft.RequestVoteResponse{})
	}

	// A follower whose Raft takes nothing: the dispatcher holds one RPC,
	// the queue the next, and the one after is refused.
	_, full := spawn("full", func(c *Config) { c.InboundQueue = 1 })
	var errs []error
	for range 3 {
		errs = append(errs, vote(full))
	}
	if !errors.Is(errs[2], ErrQueueFull) {
		t.Errorf("vote to a full queue: %v, want ErrQueueFull", errs[2])
	}

	_, other := spawn("other", func(c *Config) { c.Group = "another-group" })
	if err := vote(other); !errors.Is(err, ErrWrongGroup) {
		t.Errorf("vote to another group: %v, want ErrWrongGroup", err)
	}

	_, stranger := spawn("stranger", func(c *Config) { c.ClusterKey = []byte("another key of sixteen bytes!") })
	if err := vote(stranger); !errors.Is(err, ErrRPCAuth) {
		t.Errorf("vote to a node with another key: %v, want ErrRPCAuth", err)
	}

	closed, closedPID := spawn("closed", nil)
	_ = closed.Close()
	if err := vote(closedPID); !errors.Is(err, ErrTransportClosed) {
		t.Errorf("vote to a closed transport: %v, want ErrTransportClosed", err)
	}
}

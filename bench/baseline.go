package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// baseline is what a user would write instead of protoraft: three plain
// hashicorp/raft nodes in this process, hashicorp's TCP transport on
// 127.0.0.1, raft-wal stores and file snapshots, and the same key-value
// state machine protoraft runs (kvstore), so both apply identical commands
// and the difference is the path around Raft.
type baseline struct {
	name     string
	timeouts raftactor.Timeouts
	nodes    []*baseNode
	leader   atomic.Pointer[baseNode]
}

type baseNode struct {
	id, dir string
	addr    raft.ServerAddress

	r     *raft.Raft
	fsm   *baseFSM
	trans *raft.NetworkTransport
	wal   *raftwal.WAL
	meta  *metadb.BoltMetaDB
}

func startBaseline(dir string, t raftactor.Timeouts) (*baseline, error) {
	b := &baseline{name: "baseline", timeouts: t}
	var servers []raft.Server
	for _, id := range []string{"n1", "n2", "n3"} {
		n := &baseNode{id: id, dir: filepath.Join(dir, id)}
		trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, io.Discard)
		if err != nil {
			b.Close()
			return nil, err
		}
		n.trans, n.addr = trans, trans.LocalAddr()
		b.nodes = append(b.nodes, n)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: n.addr})
	}
	for _, n := range b.nodes {
		if err := b.open(n, &raft.Configuration{Servers: servers}); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

// config mirrors the raft.Config protoraft builds from the same Timeouts
// (raftactor's raftConfig): a lease of zero becomes min(default, heartbeat).
func (b *baseline) config(id string) *raft.Config {
	t := b.timeouts
	d := raft.DefaultConfig()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.HeartbeatTimeout = t.Heartbeat
	rc.ElectionTimeout = t.Election
	rc.LeaderLeaseTimeout = min(d.LeaderLeaseTimeout, t.Heartbeat)
	rc.Logger = hclog.NewNullLogger()
	rc.NoLegacyTelemetry = true
	return rc
}

// open starts n's Raft from its directory (bootstrapping it when boot is
// set and the directory is empty). n.trans is set for a first start; a
// restart binds a new transport to the node's old address.
func (b *baseline) open(n *baseNode, boot *raft.Configuration) error {
	if n.trans == nil {
		trans, err := raft.NewTCPTransport(string(n.addr), nil, 3, 10*time.Second, io.Discard)
		if err != nil {
			return err
		}
		n.trans = trans
	}
	walDir := filepath.Join(n.dir, "wal")
	if err := os.MkdirAll(walDir, 0o755); err != nil {
		return err
	}
	// raft-wal's Close leaves its meta database open, and its file lock
	// would block the restart forever; owning it lets the bench close it.
	n.meta = &metadb.BoltMetaDB{}
	wal, err := raftwal.Open(walDir, raftwal.WithMetaStore(n.meta))
	if err != nil {
		return err
	}
	n.wal = wal
	snaps, err := raft.NewFileSnapshotStore(n.dir, 2, io.Discard)
	if err != nil {
		return err
	}
	rc := b.config(n.id)
	if boot != nil {
		if err := raft.BootstrapCluster(rc, wal, wal, snaps, n.trans, *boot); err != nil {
			return err
		}
	}
	n.fsm = newBaseFSM()
	r, err := raft.NewRaft(rc, n.fsm, wal, wal, snaps, n.trans)
	if err != nil {
		return err
	}
	n.r = r
	return nil
}

// shutdown stops n abruptly (no handover) and closes its stores.
func (n *baseNode) shutdown() {
	if n.r != nil {
		_ = n.r.Shutdown().Error()
		n.r = nil
	}
	if n.trans != nil {
		_ = n.trans.Close()
		n.trans = nil
	}
	if n.wal != nil {
		_ = n.wal.Close()
		n.wal = nil
	}
	if n.meta != nil {
		_ = n.meta.Close()
		n.meta = nil
	}
}

func (b *baseline) Name() string { return b.name }

func (b *baseline) Close() {
	for _, n := range b.nodes {
		n.shutdown()
	}
}

// current returns the node that leads, finding it again when the cached
// one no longer does.
func (b *baseline) current(ctx context.Context) (*baseNode, error) {
	if n := b.leader.Load(); n != nil && n.r != nil && n.r.State() == raft.Leader {
		return n, nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range b.nodes {
			if r := n.r; r != nil && r.State() == raft.Leader {
				b.leader.Store(n)
				return n, nil
			}
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("baseline: no leader within 60s")
}

// Write applies a put through the leader.
func (b *baseline) Write(ctx context.Context, key string, value []byte) error {
	n, err := b.current(ctx)
	if err != nil {
		return err
	}
	f := n.r.Apply(kvstore.Put(key, value), 2*time.Second)
	if err := f.Error(); err != nil {
		b.leader.CompareAndSwap(n, nil)
		return err
	}
	if res, _ := f.Response().([]byte); res == nil {
		return errors.New("baseline: empty apply result")
	}
	return nil
}

// Read is the linearizable read a hashicorp/raft user writes (ReadIndex):
// note the commit index, confirm leadership with a quorum, wait until it is
// applied, then query the state machine.
func (b *baseline) Read(ctx context.Context, key string) error {
	n, err := b.current(ctx)
	if err != nil {
		return err
	}
	r := n.r
	index := r.CommitIndex()
	if err := r.VerifyLeader().Error(); err != nil {
		b.leader.CompareAndSwap(n, nil)
		return err
	}
	if err := n.fsm.waitApplied(ctx, r, index); err != nil {
		return err
	}
	_, err = n.fsm.query(kvstore.Get(key))
	return err
}

// Crash stops the leader abruptly (raft.Shutdown, no handover) and measures
// until a survivor commits a write.
func (b *baseline) Crash(ctx context.Context) (time.Duration, error) {
	old, err := b.current(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	old.shutdown()
	took, err := b.firstWrite(ctx, old, start)
	if err != nil {
		return 0, err
	}
	return took, b.restart(ctx, old)
}

// Planned hands leadership over (LeadershipTransfer), then shuts the old
// leader down, and measures until the new leader commits a write. The
// writer starts with the transfer, as clients would keep writing.
func (b *baseline) Planned(ctx context.Context) (time.Duration, error) {
	old, err := b.current(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = old.r.LeadershipTransfer().Error()
		old.shutdown()
	})
	took, err := b.firstWrite(ctx, old, start)
	wg.Wait()
	if err != nil {
		return 0, err
	}
	return took, b.restart(ctx, old)
}

// firstWrite polls the nodes other than old until one of them leads and
// commits a write; it returns the time since start.
func (b *baseline) firstWrite(ctx context.Context, old *baseNode, start time.Time) (time.Duration, error) {
	deadline := start.Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range b.nodes {
			if n == old || n.r == nil || n.r.State() != raft.Leader {
				continue
			}
			if n.r.Apply(kvstore.Put("failover", []byte("x")), time.Second).Error() == nil {
				took := time.Since(start)
				b.leader.Store(n)
				return took, nil
			}
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return 0, err
		}
	}
	return 0, errors.New("baseline: no write committed within 60s of the failover")
}

// restart brings old back from its directory and waits until every node
// follows one leader and has applied the leader's last index.
func (b *baseline) restart(ctx context.Context, old *baseNode) error {
	old.shutdown()
	if err := b.open(old, nil); err != nil {
		return fmt.Errorf("baseline: restart %s: %w", old.id, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		leader, err := b.current(ctx)
		if err != nil {
			return err
		}
		want := leader.r.LastIndex()
		ok := true
		for _, n := range b.nodes {
			if _, id := n.r.LeaderWithID(); id != raft.ServerID(leader.id) || n.r.AppliedIndex() < want {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return errors.New("baseline: group did not converge within 60s")
}

// baseFSM adapts kvstore.Store to raft.FSM with what a ReadIndex reader
// needs: the applied index and a wake-up when it moves.
type baseFSM struct {
	mu      sync.RWMutex
	store   *kvstore.Store
	applied atomic.Uint64

	notifyMu sync.Mutex
	notify   chan struct{}
}

func newBaseFSM() *baseFSM {
	return &baseFSM{store: kvstore.New(), notify: make(chan struct{})}
}

// Apply implements raft.FSM.
func (f *baseFSM) Apply(l *raft.Log) any {
	var res []byte
	f.mu.Lock()
	if l.Type == raft.LogCommand {
		res = f.store.Apply(l.Index, l.Data)
	}
	f.applied.Store(l.Index)
	f.mu.Unlock()
	f.notifyMu.Lock()
	close(f.notify)
	f.notify = make(chan struct{})
	f.notifyMu.Unlock()
	return res
}

func (f *baseFSM) changed() <-chan struct{} {
	f.notifyMu.Lock()
	defer f.notifyMu.Unlock()
	return f.notify
}

// waitApplied waits until the state reflects index. Raft keeps no-ops from
// the FSM, so Raft's own applied index also counts, as DEPENDENCIES.md's
// recipe (wait AppliedIndex ≥ index) does.
func (f *baseFSM) waitApplied(ctx context.Context, r *raft.Raft, index uint64) error {
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	for {
		ch := f.changed()
		if f.applied.Load() >= index || r.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(200 * time.Microsecond):
		case <-deadline.C:
			return errors.New("baseline: read index not applied within 2s")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *baseFSM) query(q []byte) ([]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.store.Query(q)
}

// Snapshot implements raft.FSM.
func (f *baseFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, err := f.store.Snapshot()
	if err != nil {
		return nil, err
	}
	return baseSnapshot{s}, nil
}

// Restore implements raft.FSM.
func (f *baseFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.store.Restore(rc)
}

type baseSnapshot struct{ s raftactor.Snapshot }

func (s baseSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.s.Persist(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s baseSnapshot) Release() { s.s.Release() }

package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// The in-process carrier: every node of the group is a cluster.Group in one
// ActorSystem, nodes talk through local PIDs and one faults.Network, and
// the workload is cluster.Clients (inproc_workload.go). Everything the
// suite calls of raftactor and cluster to run a group is in these two
// files.

// groupName is the Raft group every run uses; each run has its own
// ActorSystem, so runs never meet.
const groupName = "verify"

// Timeouts of the groups under test. Fast enough that a few-second run sees
// several elections, slow enough that two busy cores (other test packages
// run at the same time) do not depose healthy leaders all the time. The
// snapshot settings are low so that a node that was cut off for a second
// usually catches up by snapshot install rather than from the log.
var testTimeouts = raftactor.Timeouts{
	Heartbeat:         300 * time.Millisecond,
	Election:          300 * time.Millisecond,
	LeaderLease:       200 * time.Millisecond,
	Commit:            5 * time.Millisecond,
	SnapshotInterval:  200 * time.Millisecond,
	SnapshotThreshold: 200,
	TrailingLogs:      64,
}

// askTimeout bounds one request the harness itself sends (status, leader,
// membership); the harness retries within its own deadlines.
const askTimeout = 2 * time.Second

// member is one node ID of the run: running or stopped, voter or removed.
type member struct {
	id  string
	cfg cluster.Config
	g   *cluster.Group // nil while stopped
	// incarnation counts the node's starts and supervisor restarts, so a
	// stale read that spans one is not held to monotonicity.
	incarnation int
	removed     bool
	// joining is set while a Join has not completed, so the heal
	// finishes it.
	joining bool
	// wall is the node's clock (KindClock), kept across its restarts.
	wall *faults.Clock
	// disk is the file system under the node's log (KindPowerCut,
	// KindDiskFull), kept across its restarts.
	disk *faults.Disk
}

// inproc is a group whose nodes all live in one ActorSystem and talk through
// one faults.Network.
type inproc struct {
	system *actor.ActorSystem
	faults *faults.Network
	dir    string
	logf   func(string, ...any)
	// admin is the harness's own Client, for membership, snapshots,
	// timeouts and the probe's writes; finalReader reads the final state.
	admin, finalReader *cluster.Client
	// ledger sees every command every node applies (duplicates).
	ledger *applyLedger

	mu      sync.Mutex
	members map[string]*member
	next    int
	// workers are the workload's clients, told of every membership change.
	workers []*inprocClient
	closed  bool
	// logs holds each node's log (hashicorp/raft's included), written
	// under dir/logs and kept with a failed run's artifacts: a node that
	// stops catching up says why only there.
	logs *nodeLogs
}

// newInproc bootstraps n nodes n1..nN with data directories under dir.
func newInproc(seed int64, n int, dir string, logf func(string, ...any)) (*inproc, error) {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	logs, err := newNodeLogs(filepath.Join(dir, "logs"))
	if err != nil {
		return nil, err
	}
	c := &inproc{system: system, faults: faults.NewNetwork(seed), dir: dir, logf: logf, members: map[string]*member{}, next: n + 1, ledger: newApplyLedger(), logs: logs}
	var boot []cluster.Peer
	for i := 1; i <= n; i++ {
		boot = append(boot, cluster.Peer{ID: fmt.Sprintf("n%d", i), Address: actors.LocalSystemAddress})
	}
	for _, p := range boot {
		m := &member{id: p.ID, cfg: c.config(p.ID, boot)}
		m.wall, m.disk = m.cfg.Node.Clock, m.cfg.Node.Disk
		c.members[p.ID] = m
		if err := c.startMember(m); err != nil {
			c.close()
			return nil, err
		}
	}
	c.admin = c.newClient(c.peers())
	return c, nil
}

func (c *inproc) config(id string, boot []cluster.Peer) cluster.Config {
	return cluster.Config{
		Node: raftactor.Config{
			Group:           groupName,
			ID:              id,
			DataDir:         filepath.Join(c.dir, id),
			NewStateMachine: func() raftactor.StateMachine { return ledgered{StateMachine: kvstore.New(), ledger: c.ledger} },
			Timeouts:        testTimeouts,
			RequestTimeout:  3 * time.Second,
			RPCTimeout:      time.Second,
			WALSegmentSize:  1 << 20,
			Faults:          c.faults,
			Clock:           faults.NewClock(),
			Disk:            faults.NewDisk(),
			Logger:          c.logs.logger(id),
		},
		Bootstrap: boot,
	}
}

// newClient is a Client of the group with the harness's retry settings.
func (c *inproc) newClient(peers []cluster.Peer) *cluster.Client {
	return cluster.NewClient(c.system, groupName, peers,
		cluster.WithAttemptTimeout(attemptTimeout),
		cluster.WithBackoff(10*time.Millisecond, 200*time.Millisecond))
}

func (c *inproc) name() string  { return "in-process" }
func (c *inproc) kinds() []Kind { return AllKinds }
func (c *inproc) schedule(seed int64, d time.Duration, kinds []Kind) []Step {
	return Schedule(seed, d, kinds)
}

func (c *inproc) member(id string) *member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[id]
}

// group returns id's running group, or nil.
func (c *inproc) group(id string) *cluster.Group {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.members[id]; m != nil {
		return m.g
	}
	return nil
}

// startMember spawns a stopped member from its data directory.
func (c *inproc) startMember(m *member) error {
	g, err := cluster.Spawn(c.system, m.cfg)
	if err != nil {
		return fmt.Errorf("spawn %s: %w", m.id, err)
	}
	c.mu.Lock()
	m.g = g
	m.incarnation++
	c.mu.Unlock()
	return nil
}

func (c *inproc) start(_ context.Context, id string) error {
	m := c.member(id)
	if m == nil {
		return fmt.Errorf("no member %s", id)
	}
	if c.group(id) != nil {
		return nil
	}
	return c.startMember(m)
}

// endIncarnation counts a new incarnation of member id, whose group is
// about to go away (stopped or crashed), and returns the member and its
// group (nil when it is not running).
func (c *inproc) endIncarnation(id string) (*member, *cluster.Group, error) {
	m := c.member(id)
	if m == nil {
		return nil, nil, fmt.Errorf("no member %s", id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m.incarnation++
	return m, m.g, nil
}

// stop stops a running member (Group.Stop: a leader hands over first); its
// data directory stays.
func (c *inproc) stop(_ context.Context, id string) error {
	m, g, err := c.endIncarnation(id)
	if err != nil {
		return err
	}
	if g == nil {
		return nil
	}
	err = g.Stop()
	c.mu.Lock()
	m.g = nil
	c.mu.Unlock()
	return err
}

// kill cuts the node off first, so it dies without saying goodbye (no
// handover, no last replies), stops it, and heals the network again:
// Faults can only heal every fault at once, which is why the restart
// nemesis never composes with another fault before it.
func (c *inproc) kill(id string) error {
	c.faults.Isolate(raft.ServerID(id))
	err := c.stop(context.Background(), id)
	c.faults.Heal()
	return err
}

func (c *inproc) nodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for id, m := range c.members {
		if !m.removed {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func (c *inproc) running(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[id]
	return m != nil && m.g != nil && !m.removed
}

// peers are the front doors clients should know: every member not removed.
func (c *inproc) peers() []cluster.Peer {
	var ps []cluster.Peer
	for _, id := range c.nodes() {
		ps = append(ps, cluster.Peer{ID: id, Address: actors.LocalSystemAddress})
	}
	return ps
}

// incarnationOf is the current incarnation of id.
func (c *inproc) incarnationOf(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.members[id]; m != nil {
		return m.incarnation
	}
	return -1
}

// ask sends req to pid and waits at most askTimeout for the reply.
func (c *inproc) ask(pid *actor.PID, req actors.Request) (actors.Response, error) {
	res, err := c.system.Root.RequestFuture(pid, req, askTimeout).Result()
	if err != nil {
		return nil, err
	}
	resp, ok := res.(actors.Response)
	if !ok {
		return nil, fmt.Errorf("%s answered %T", pid, res)
	}
	if err := resp.GetError().Err(); err != nil {
		return resp, err
	}
	return resp, nil
}

// status asks one running member's node actor for its own view.
func (c *inproc) status(_ context.Context, id string) (*actors.StatusResponse, error) {
	g := c.group(id)
	if g == nil {
		return nil, errors.New(id + " is not running")
	}
	resp, err := c.ask(g.Node(), &actors.StatusRequest{Meta: actors.NewMeta(askTimeout * 9 / 10)})
	if err != nil {
		return nil, err
	}
	return resp.(*actors.StatusResponse), nil
}

func (c *inproc) read(ctx context.Context, key, _ string) (Output, string) {
	c.mu.Lock()
	if c.finalReader == nil {
		c.finalReader = c.newClient(nil)
	}
	cl := c.finalReader
	c.mu.Unlock()
	cl.SetMembers(c.peers())
	resp, err := cl.Read(ctx, kvstore.Get(key))
	return readOutput(resp, err), ""
}

// state lists one node's whole state with a stale read to its own node
// actor.
func (c *inproc) state(_ context.Context, id string) (nodeState, error) {
	g := c.group(id)
	if g == nil {
		return nodeState{}, errors.New(id + " is not running")
	}
	resp, err := c.ask(g.Node(), &actors.ReadRequest{Meta: actors.NewMeta(askTimeout * 9 / 10),
		Query: kvstore.List("", 0), Consistency: actors.Consistency_STALE})
	if err != nil {
		return nodeState{}, err
	}
	rr := resp.(*actors.ReadResponse)
	q, err := kvstore.DecodeQueryResult(rr.Result)
	if err != nil {
		return nodeState{}, err
	}
	s := nodeState{applied: rr.AppliedIndex}
	for _, e := range q.Entries {
		s.entries = append(s.entries, fmt.Sprintf("%s=%s@%d", e.Key, e.Value, e.Revision))
	}
	return s, nil
}

func (c *inproc) incidents() []string { return nil }

// duplicates are the writes the ledger saw applied twice.
func (c *inproc) duplicates() []string { return c.ledger.found() }

// stuck returns the stacks of every goroutine of the process: the whole
// group runs in it.
func (c *inproc) stuck() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	return b.String()
}

// save copies the nodes' logs into the artifacts directory.
func (c *inproc) save(dir string) error { return c.logs.copyTo(filepath.Join(dir, "logs")) }

// close stops every running member and the ActorSystem.
func (c *inproc) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.faults.Heal()
	var wg sync.WaitGroup
	for _, id := range runningNodes(c) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.stop(context.Background(), id); err != nil {
				c.logf("stop %s: %v", id, err)
			}
		}()
	}
	wg.Wait()
	c.system.Shutdown()
	c.logs.close()
}

// The network faults, through faults.Network.

func sid(id string) raft.ServerID { return raft.ServerID(id) }

func sids(ids []string) []raft.ServerID {
	out := make([]raft.ServerID, len(ids))
	for i, id := range ids {
		out[i] = sid(id)
	}
	return out
}

func (c *inproc) isolate(id string)                     { c.faults.Isolate(sid(id)) }
func (c *inproc) partition(a, b []string)               { c.faults.Partition(sids(a), sids(b)) }
func (c *inproc) cut(from, to string)                   { c.faults.Cut(sid(from), sid(to)) }
func (c *inproc) drop(from, to string, percent float64) { c.faults.Drop(sid(from), sid(to), percent) }
func (c *inproc) delay(from, to string, d, jitter time.Duration) {
	c.faults.Delay(sid(from), sid(to), d, jitter)
}
func (c *inproc) healNetwork() { c.faults.Heal() }

// crash injects the failure a panic in the node actor reports to its
// supervisor: the node's mailbox is suspended and the supervisor is told
// the node failed, so the group's own strategy decides and restarts it
// (Raft shut down without handover, state machine rebuilt from the data
// directory). It takes the same supervision path a real panic inside
// Receive would (raftactor's own tests raise one with receiver middleware,
// cluster.Config.NodeOptions), minus the panic itself, on demand and
// without wrapping every message of every node of a run.
func (c *inproc) crash(id string) error {
	_, g, err := c.endIncarnation(id)
	if err != nil {
		return err
	}
	if g == nil {
		return errors.New("not running")
	}
	node := g.Node()
	sup := actor.NewPID(c.system.Address(), "protoraft/"+groupName+"/"+id)
	np, ok1 := c.system.ProcessRegistry.Get(node)
	sp, ok2 := c.system.ProcessRegistry.Get(sup)
	if !ok1 || !ok2 {
		return errors.New("node or supervisor not registered")
	}
	np.SendSystemMessage(node, &actor.SuspendMailbox{})
	sp.SendSystemMessage(sup, &actor.Failure{Who: node, Reason: "integration: injected node failure",
		RestartStats: actor.NewRestartStatistics()})
	return nil
}

// recovered waits (bounded) until a crashed member answers again and
// starts a new incarnation, so stale reads that span the restart are not
// held to monotonicity.
func (c *inproc) recovered(ctx context.Context, id string) {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for wctx.Err() == nil {
		if _, err := c.status(wctx, id); err == nil {
			break
		}
		sleepCtx(wctx, 20*time.Millisecond)
	}
	c.mu.Lock()
	if m := c.members[id]; m != nil {
		m.incarnation++
	}
	c.mu.Unlock()
}

// Membership, through Group.Join and Leave and the admin Client.

// membersChanged tells every Client the current members; the Clients also
// follow leader hints on their own.
func (c *inproc) membersChanged() {
	peers := c.peers()
	c.admin.SetMembers(peers)
	c.mu.Lock()
	workers := append([]*inprocClient(nil), c.workers...)
	c.mu.Unlock()
	for _, w := range workers {
		w.client.SetMembers(peers)
	}
}

// add starts a new, empty node and joins it to the group as a voter.
func (c *inproc) add(ctx context.Context) (string, error) {
	c.mu.Lock()
	id := fmt.Sprintf("n%d", c.next)
	c.next++
	m := &member{id: id}
	m.cfg = c.config(id, nil)
	m.wall, m.disk = m.cfg.Node.Clock, m.cfg.Node.Disk
	c.members[id] = m
	c.mu.Unlock()
	defer c.membersChanged()
	if err := c.startMember(m); err != nil {
		c.mu.Lock()
		m.joining = true
		c.mu.Unlock()
		return id, err
	}
	var seeds []cluster.Peer
	for _, o := range runningNodes(c) {
		if o != id {
			seeds = append(seeds, cluster.Peer{ID: o, Address: actors.LocalSystemAddress})
		}
	}
	if err := m.g.Join(ctx, seeds...); err != nil {
		c.mu.Lock()
		m.joining = true
		c.mu.Unlock()
		return id, err
	}
	return id, nil
}

// remove removes id from the group through the leader, then stops it. A
// leader leaves (handing leadership over first); anyone else, partitioned
// or not, is removed by the leader, so removal works even when the node
// cannot talk to anybody.
func (c *inproc) remove(ctx context.Context, id string) error {
	defer c.membersChanged()
	var err error
	if g := c.group(id); g != nil && leaderOf(ctx, c) == id {
		err = g.Leave(ctx)
	} else {
		_, err = c.admin.Remove(ctx, id)
		var ae *actors.Error
		if errors.As(err, &ae) && ae.Code == actors.Code_INVALID_ARGUMENT && ae.Field == "id" {
			// A retry after the removal committed finds no such member:
			// the removal is done.
			err = nil
		}
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	if m := c.members[id]; m != nil {
		m.removed = true
	}
	c.mu.Unlock()
	return c.stop(ctx, id)
}

func (c *inproc) joining() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for id, m := range c.members {
		if m.joining && m.g != nil && !m.removed {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func (c *inproc) join(ctx context.Context, id string) error {
	g := c.group(id)
	if g == nil {
		return errors.New(id + " is not running")
	}
	if err := g.Join(ctx, c.peers()...); err != nil {
		return err
	}
	c.mu.Lock()
	c.members[id].joining = false
	c.mu.Unlock()
	return nil
}

func (c *inproc) retire(id string) {
	if m := c.member(id); m != nil {
		c.mu.Lock()
		m.removed = true
		c.mu.Unlock()
	}
	_ = c.stop(context.Background(), id)
}

// snapshot makes the leader snapshot and compact its log.
func (c *inproc) snapshot(ctx context.Context) (uint64, error) {
	snap, err := c.admin.Snapshot(ctx)
	return snap.GetIndex(), err
}

// setTimeouts changes the timeouts of the leader through the Client and of
// every other running node at its front door (timeouts are per node).
func (c *inproc) setTimeouts(ctx context.Context, t raftTimeouts) error {
	pt := &actors.Timeouts{Heartbeat: durationpb.New(t.Heartbeat), Election: durationpb.New(t.Election), SnapshotThreshold: t.SnapshotThreshold}
	var errs []error
	if _, err := c.admin.UpdateTimeouts(ctx, pt); err != nil {
		errs = append(errs, fmt.Errorf("leader: %w", err))
	}
	for _, id := range runningNodes(c) {
		g := c.group(id)
		if g == nil {
			continue
		}
		if _, err := c.ask(g.FrontDoor(), &actors.UpdateTimeoutsRequest{Meta: actors.NewMeta(askTimeout * 9 / 10), Timeouts: pt}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func (c *inproc) defaultTimeouts() raftTimeouts {
	return raftTimeouts{Heartbeat: testTimeouts.Heartbeat, Election: testTimeouts.Election, SnapshotThreshold: testTimeouts.SnapshotThreshold}
}

// probeRead sends a linearizable read of the probe key straight to id's
// node actor, past its front door and any Client's routing.
func (c *inproc) probeRead(ctx context.Context, id string) error {
	g := c.group(id)
	if g == nil {
		return errors.New(id + " is not running")
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(askTimeout)
	}
	timeout := time.Until(deadline)
	res, err := c.system.Root.RequestFuture(g.Node(), &actors.ReadRequest{Meta: actors.NewMeta(timeout),
		Query: kvstore.Get(probeKey), Consistency: actors.Consistency_LINEARIZABLE}, timeout).Result()
	if err != nil {
		return err
	}
	resp, ok := res.(*actors.ReadResponse)
	if !ok {
		return fmt.Errorf("%s answered %T", id, res)
	}
	return resp.GetError().Err()
}

func (c *inproc) probeWrite(ctx context.Context, value string) error {
	_, err := c.admin.Write(ctx, kvstore.Put(probeKey, []byte(value)))
	return err
}

// jumpClock moves node id's clock, which its every incarnation reads.
func (c *inproc) jumpClock(id string, d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[id]
	if m == nil || m.wall == nil {
		return false
	}
	m.wall.Jump(d)
	return true
}

// disk is node id's disk, which its every incarnation writes through.
func (c *inproc) disk(id string) *faults.Disk {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.members[id]; m != nil {
		return m.disk
	}
	return nil
}

// diskFaults: every node writes its log through a faults.Disk.
func (c *inproc) diskFaults() (fill, cut bool) { return true, true }

// fillDisk fails id's log writes with ENOSPC, or one time in three its
// fsyncs with EIO, through its faults.Disk, until the heal it returns.
func (c *inproc) fillDisk(_ context.Context, id string, rng *rand.Rand) (string, func() string, bool) {
	d := c.disk(id)
	if d == nil {
		return "", nil, false
	}
	what := "writes fail with ENOSPC"
	if rng.Intn(3) == 0 {
		d.FailSyncs(syscall.EIO)
		what = "fsyncs fail with EIO"
	} else {
		d.FailWrites(syscall.ENOSPC)
	}
	return what, func() string {
		d.Heal()
		return fmt.Sprintf("%d operations refused", d.Injected())
	}, true
}

// powerCut cuts the power of running node id: what it reported as its last
// index just before, the disk rolled back to what it had synced, the node
// stopped, and what its data directory holds then (the last index of its
// log, or of its latest snapshot when that is later). The node stays down
// until started again.
func (c *inproc) powerCut(ctx context.Context, id string) (reported, onDisk uint64, detail string, err error) {
	d := c.disk(id)
	if d == nil {
		return 0, 0, "", fmt.Errorf("no disk for %s", id)
	}
	st, err := c.status(ctx, id)
	if err != nil {
		return 0, 0, "", fmt.Errorf("%w: %v", errNotCut, err)
	}
	reported = st.GetLastIndex()
	// Off the network first: a node without power sends nothing.
	c.faults.Down(sid(id))
	defer c.faults.Up(sid(id))
	if err := d.PowerCut(); err != nil {
		return reported, 0, "", err
	}
	_ = c.stop(ctx, id)
	d.Restore()
	onDisk, err = lastDurableIndex(filepath.Join(c.dir, id))
	return reported, onDisk, "", err
}

// errNotCut says a power cut did not happen: the node did not answer.
var errNotCut = errors.New("power not cut")

// lastDurableIndex is the last index node dir's data directory holds: of
// its log, read with raft-wal itself, or of its latest snapshot.
func lastDurableIndex(dir string) (last uint64, err error) {
	// raft-wal v0.4.1 panics on a meta database without its bucket (a
	// bolt file a lost write left empty): that is a damaged directory to
	// report, not a reason to take the harness down.
	defer func() {
		if p := recover(); p != nil {
			last, err = 0, fmt.Errorf("open the log after the power cut: raft-wal panicked: %v", p)
		}
	}()
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	w, err := raftwal.Open(filepath.Join(dir, "wal"), raftwal.WithMetaStore(meta), raftwal.WithLogger(hclog.NewNullLogger()))
	if err != nil {
		return 0, fmt.Errorf("open the log after the power cut: %w", err)
	}
	defer w.Close()
	last, err = w.LastIndex()
	if err != nil {
		return 0, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		return last, err
	}
	if metas, err := snaps.List(); err == nil && len(metas) > 0 {
		last = max(last, metas[0].Index)
	}
	return last, nil
}

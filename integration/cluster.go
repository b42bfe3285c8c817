package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

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
	// joining is set while a Join has not completed, so the final heal
	// finishes it.
	joining bool
}

// inproc is a group whose nodes all live in one ActorSystem and talk through
// one raftactor.Faults.
type inproc struct {
	system *actor.ActorSystem
	faults *faults.Network
	dir    string
	logf   func(string, ...any)

	mu      sync.Mutex
	members map[string]*member
	next    int
}

// newInproc bootstraps n nodes n1..nN with data directories under dir.
func newInproc(seed int64, n int, dir string, logf func(string, ...any)) (*inproc, error) {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	c := &inproc{system: system, faults: faults.NewNetwork(seed), dir: dir, logf: logf, members: map[string]*member{}, next: n + 1}
	var boot []cluster.Peer
	for i := 1; i <= n; i++ {
		boot = append(boot, cluster.Peer{ID: fmt.Sprintf("n%d", i), Address: actors.LocalSystemAddress})
	}
	for _, p := range boot {
		m := &member{id: p.ID, cfg: c.config(p.ID, boot)}
		c.members[p.ID] = m
		if err := c.start(m); err != nil {
			c.shutdown()
			return nil, err
		}
	}
	return c, nil
}

func (c *inproc) config(id string, boot []cluster.Peer) cluster.Config {
	return cluster.Config{
		Node: raftactor.Config{
			Group:           groupName,
			ID:              id,
			DataDir:         filepath.Join(c.dir, id),
			NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
			Timeouts:        testTimeouts,
			RequestTimeout:  3 * time.Second,
			RPCTimeout:      time.Second,
			WALSegmentSize:  1 << 20,
			Faults:          c.faults,
		},
		Bootstrap: boot,
	}
}

// start spawns a stopped member from its data directory.
func (c *inproc) start(m *member) error {
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

// stop stops a running member; its data directory stays.
func (c *inproc) stop(m *member) error {
	c.mu.Lock()
	g := m.g
	m.incarnation++
	c.mu.Unlock()
	if g == nil {
		return nil
	}
	err := g.Stop()
	c.mu.Lock()
	m.g = nil
	c.mu.Unlock()
	return err
}

// crash injects the failure a panic in the node actor reports to its
// supervisor: the node's mailbox is suspended and the supervisor is told
// the node failed, so the group's own strategy decides and restarts it
// (Raft shut down without handover, state machine rebuilt from the data
// directory). cluster.Config offers no public way to add receiver
// middleware to the node's props, which would let a real panic be raised
// inside Receive; this is the same supervision path minus the panic itself.
func (c *inproc) crash(m *member) error {
	c.mu.Lock()
	g := m.g
	m.incarnation++
	c.mu.Unlock()
	if g == nil {
		return errors.New("not running")
	}
	node := g.Node()
	sup := actor.NewPID(c.system.Address(), "protoraft/"+groupName+"/"+m.id)
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

// bumpWhenUp waits (bounded) until a crashed member answers again and
// starts a new incarnation, so stale reads that span the restart are not
// held to monotonicity.
func (c *inproc) bumpWhenUp(ctx context.Context, m *member) {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for wctx.Err() == nil {
		if _, err := c.status(m); err == nil {
			break
		}
		sleepCtx(wctx, 20*time.Millisecond)
	}
	c.mu.Lock()
	m.incarnation++
	c.mu.Unlock()
}

// running returns the running members, sorted by ID.
func (c *inproc) running() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*member
	for _, m := range c.members {
		if m.g != nil && !m.removed {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// live returns the members not removed, running or not, sorted by ID.
func (c *inproc) live() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*member
	for _, m := range c.members {
		if !m.removed {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// peers are the front doors clients should know: every member not removed.
func (c *inproc) peers() []cluster.Peer {
	var ps []cluster.Peer
	for _, m := range c.live() {
		ps = append(ps, cluster.Peer{ID: m.id, Address: actors.LocalSystemAddress})
	}
	return ps
}

// ids returns the IDs of ms as Raft server IDs.
func ids(ms []*member) []raft.ServerID {
	var out []raft.ServerID
	for _, m := range ms {
		out = append(out, raft.ServerID(m.id))
	}
	return out
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
func (c *inproc) status(m *member) (*actors.StatusResponse, error) {
	c.mu.Lock()
	g := m.g
	c.mu.Unlock()
	if g == nil {
		return nil, errors.New("not running")
	}
	resp, err := c.ask(g.Node(), &actors.StatusRequest{Meta: actors.NewMeta(askTimeout * 9 / 10)})
	if err != nil {
		return nil, err
	}
	return resp.(*actors.StatusResponse), nil
}

// leader returns the running member that says it leads, or nil. When two
// say so (an isolated old leader that has not stepped down yet) the one with
// the higher term wins.
func (c *inproc) leader() *member {
	var best *member
	var term uint64
	for _, m := range c.running() {
		st, err := c.status(m)
		if err == nil && st.State == "Leader" && st.Term >= term {
			best, term = m, st.Term
		}
	}
	return best
}

// waitLeader waits until a leader is known, or ctx ends.
func (c *inproc) waitLeader(ctx context.Context) (*member, error) {
	for {
		if l := c.leader(); l != nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// add starts a new, empty node and joins it to the group as a voter.
func (c *inproc) add(ctx context.Context) (*member, error) {
	c.mu.Lock()
	id := fmt.Sprintf("n%d", c.next)
	c.next++
	m := &member{id: id}
	m.cfg = c.config(id, nil)
	c.members[id] = m
	c.mu.Unlock()
	if err := c.start(m); err != nil {
		return m, err
	}
	var seeds []cluster.Peer
	for _, o := range c.running() {
		if o.id != id {
			seeds = append(seeds, cluster.Peer{ID: o.id, Address: actors.LocalSystemAddress})
		}
	}
	return m, m.g.Join(ctx, seeds...)
}

// remove removes m from the group through the leader, then stops it. A
// leader leaves (handing leadership over first); anyone else, partitioned
// or not, is removed by the leader, so removal works even when m cannot
// talk to anybody.
func (c *inproc) remove(ctx context.Context, m *member, client *cluster.Client) error {
	var err error
	if l := c.leader(); l == m && m.g != nil {
		err = m.g.Leave(ctx)
	} else {
		_, err = client.Remove(ctx, m.id)
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
	m.removed = true
	c.mu.Unlock()
	return c.stop(m)
}

// shutdown stops every running member and the ActorSystem.
func (c *inproc) shutdown() {
	c.faults.Heal()
	var wg sync.WaitGroup
	for _, m := range c.running() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.stop(m); err != nil {
				c.logf("stop %s: %v", m.id, err)
			}
		}()
	}
	wg.Wait()
	c.system.Shutdown()
}

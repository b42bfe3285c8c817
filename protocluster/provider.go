package protocluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	clustering "github.com/asynkron/protoactor-go/cluster"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/raftactor"
)

// ErrCut is returned by a member's calls to the group while Config.Faults
// cuts it off.
var ErrCut = errors.New("protocluster: cut off from the group (faults)")

// ErrExpired means the table no longer holds this member: it was expired
// or deregistered, and will not register again under the same ID (the
// other members' remotes block a member ID that left).
var ErrExpired = errors.New("protocluster: member expired")

// Provider is a protoactor cluster.ClusterProvider whose member list is the
// table of a protoraft group. Use one Provider per cluster member, all with
// the same Config, together with this package's IdentityLookup.
type Provider struct {
	cfg Config

	// Set by StartMember or StartClient, read-only afterwards.
	c      *clustering.Cluster
	self   string
	member bool
	group  *cluster.Group
	client *cluster.Client
	local  *actor.PID
	log    *slog.Logger
	start  time.Time

	// lookup is set by IdentityLookup.Setup, before StartMember.
	lookup atomic.Pointer[IdentityLookup]

	// leaseUntil is the end of this member's lease, in nanoseconds of
	// p.now; 0 before the first renewal.
	leaseUntil atomic.Int64
	renewed    chan struct{}
	expired    atomic.Bool
	// expiredCh is closed once the table told this member it was expired.
	expiredCh   chan struct{}
	expiredOnce sync.Once

	// topology is the latest committed member list this member read.
	topoMu   sync.Mutex
	topology []*Member
	version  uint64
	seen     bool

	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
	started  atomic.Bool
}

var _ clustering.ClusterProvider = (*Provider)(nil)

// New returns a Provider for cfg, or an error naming what is wrong with it.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Provider{cfg: cfg.withDefaults(), renewed: make(chan struct{}, 1), expiredCh: make(chan struct{}), stop: make(chan struct{})}, nil
}

// Expired is closed once this member learned that the table no longer
// holds it: the expirer removed it (it could not renew within
// ExpireAfter, say behind a partition) or it was deregistered. By then
// its lease is over and its grains have been told to stop; it hosts
// nothing again and cannot register anew under its ID, so an application
// that sees it should restart the member (a new ActorSystem) or exit. A
// member that stays cut off learns it only once its renewals get through
// again; until then its lease has run out and it runs no grain either.
func (p *Provider) Expired() <-chan struct{} { return p.expiredCh }

// ID is this member's ID (its ActorSystem's ID) once started.
func (p *Provider) ID() string { return p.self }

// Group is the protoraft node this member hosts: its voter, or with
// Config.NonVoters its non-voter (possibly promoted since); nil if it
// runs none.
func (p *Provider) Group() *cluster.Group { return p.group }

// Client is the member's client of the group.
func (p *Provider) Client() *cluster.Client { return p.client }

// StartMember starts the voter this member hosts, if it is one, and the
// member's loops: registration and renewal, the lease watchdog, and the
// topology watch (with the expirer on the leader). It returns without
// waiting for the group: the first voters start before a quorum exists,
// and protoactor starts members one after another.
func (p *Provider) StartMember(c *clustering.Cluster) error {
	return p.begin(c, true)
}

// StartClient watches the topology without registering: a client hosts no
// grains.
func (p *Provider) StartClient(c *clustering.Cluster) error {
	return p.begin(c, false)
}

func (p *Provider) begin(c *clustering.Cluster, member bool) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("protocluster: provider started twice")
	}
	p.c, p.self, p.member, p.log, p.start = c, c.ActorSystem.ID, member, c.Logger(), time.Now()
	addr := c.ActorSystem.Address()
	for _, v := range p.cfg.Voters {
		if v.Address != addr {
			continue
		}
		if !member {
			return fmt.Errorf("protocluster: %s is voter %s's address; start it as a member", addr, v.ID)
		}
		g, err := p.spawnNode(v.ID, p.cfg.Voters)
		if err != nil {
			return err
		}
		p.group, p.local = g, g.FrontDoor()
	}
	seeds := p.cfg.Voters
	if p.group == nil && member && p.cfg.NonVoters {
		// A node ID of its own for every start: a member restarted in
		// memory, or on a fresh directory, must never pass for the server
		// it was, whose log it no longer has.
		g, err := p.spawnNode(nonVoterPrefix+c.ActorSystem.ID, nil)
		if err != nil {
			return err
		}
		p.group, p.local = g, g.FrontDoor()
		// Its own node too: once the original voters have all been
		// replaced, it is how this member still finds the leader.
		seeds = append(slices.Clone(seeds), g.Self())
	}
	p.client = cluster.NewClient(c.ActorSystem, p.cfg.Group, seeds,
		cluster.WithAttemptTimeout(p.cfg.CallTimeout/2), cluster.WithCallTimeout(p.cfg.CallTimeout))
	if member {
		p.wg.Add(2)
		go p.renewLoop()
		go p.leaseLoop()
	}
	if p.group != nil && p.cfg.NonVoters {
		p.wg.Add(1)
		go p.keepLoop()
	}
	p.wg.Add(1)
	go p.watchLoop()
	return nil
}

// nonVoterPrefix starts the node ID of a member's non-voter; the rest is
// its ActorSystem's ID.
const nonVoterPrefix = "m-"

// spawnNode starts this member's node of the group: a voter bootstrapped
// with bootstrap, or (bootstrap empty) a node that waits for the leader
// to add it.
func (p *Provider) spawnNode(id string, bootstrap []cluster.Peer) (*cluster.Group, error) {
	node := raftactor.Config{
		Group:           p.cfg.Group,
		ID:              id,
		InMemory:        p.cfg.InMemory,
		NewStateMachine: func() raftactor.StateMachine { return NewTable() },
	}
	if !p.cfg.InMemory {
		node.DataDir = filepath.Join(p.cfg.DataDir, id)
	}
	if p.cfg.Node != nil {
		p.cfg.Node(&node)
	}
	g, err := cluster.Spawn(p.c.ActorSystem, cluster.Config{Node: node, Bootstrap: bootstrap})
	if err != nil {
		return nil, fmt.Errorf("protocluster: starting node %s: %w", id, err)
	}
	return g, nil
}

// Shutdown leaves the cluster. Graceful: the member stops its grains, then
// deregisters (which frees its identities for others at once), then stops
// its voter. Not graceful, as after a crash: it stops its grains and its
// voter and leaves its expiry to the others. Calling it again does nothing.
// protoactor's Cluster.Shutdown calls it only when graceful; after
// Cluster.Shutdown(false) call Shutdown(false) yourself to end the
// member's goroutines.
func (p *Provider) Shutdown(graceful bool) error {
	if !p.started.Load() {
		return nil
	}
	var err error
	p.stopOnce.Do(func() {
		if l := p.lookup.Load(); l != nil {
			l.stopGrains(p.cfg.CallTimeout)
		}
		if graceful && p.member && !p.expired.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CallTimeout)
			_, err = p.write(ctx, &Command{Op: &Command_Deregister{Deregister: &Deregister{Id: p.self}}})
			cancel()
			if err != nil {
				err = fmt.Errorf("protocluster: deregistering %s: %w", p.self, err)
			}
		}
		p.leaseUntil.Store(0)
		close(p.stop)
		p.wg.Wait()
		if p.group != nil {
			if serr := p.group.Stop(); serr != nil {
				err = errors.Join(err, serr)
			}
		}
	})
	return err
}

// now is the member's monotonic clock.
func (p *Provider) now() int64 { return int64(time.Since(p.start)) }

// leaseValid reports whether this member may run its activations now.
func (p *Provider) leaseValid() bool {
	until := p.leaseUntil.Load()
	return until != 0 && p.now() < until && !p.expired.Load()
}

// renewLoop registers the member, then renews it every RenewInterval. Each
// success extends the lease to the time the renewal was sent plus
// LeaseDuration: the expirer cannot have seen that renewal before it was
// sent, so its countdown starts no earlier than the lease's.
func (p *Provider) renewLoop() {
	defer p.wg.Done()
	host, port, err := p.c.ActorSystem.GetHostPort()
	if err != nil {
		p.log.Error("protocluster: member has no host and port; not registering", slog.Any("error", err))
		return
	}
	reg := &Register{Id: p.self, Host: host, Port: int32(port), Kinds: p.c.GetClusterKinds()}
	if p.group != nil {
		reg.NodeId, reg.NodeAddress = p.group.Self().ID, p.group.RaftAddress()
	}
	cmd := &Command{Op: &Command_Register{Register: reg}}
	renew := &Command{Op: &Command_Renew{Renew: &Renew{Id: p.self}}}
	tick := time.NewTicker(p.cfg.RenewInterval)
	defer tick.Stop()
	for {
		sent := p.now()
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CallTimeout)
		res, err := p.write(ctx, cmd)
		cancel()
		switch {
		case err == nil && res.GetOk():
			p.extendLease(sent + int64(p.cfg.LeaseDuration))
			cmd = renew
		case err == nil && res.GetUnknownMember():
			p.expired.Store(true)
			p.leaseUntil.Store(0)
			p.signalLease()
			if l := p.lookup.Load(); l != nil {
				l.leaseLost()
			}
			p.expiredOnce.Do(func() { close(p.expiredCh) })
			p.log.Error("protocluster: this member was expired from the table; it hosts no grains from now on", slog.String("member", p.self))
			return
		case err == nil:
			p.log.Warn("protocluster: registration refused", slog.String("error", res.GetError()))
		}
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

func (p *Provider) extendLease(until int64) {
	for {
		old := p.leaseUntil.Load()
		if until <= old || p.leaseUntil.CompareAndSwap(old, until) {
			break
		}
	}
	p.signalLease()
}

func (p *Provider) signalLease() {
	select {
	case p.renewed <- struct{}{}:
	default:
	}
}

// leaseLoop stops the member's grains the moment its lease runs out. A
// grain also refuses messages once the lease is over (fence), so a grain
// that is slow to stop does no work after the lease.
func (p *Provider) leaseLoop() {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	held := false
	for {
		wait := time.Hour
		if until := p.leaseUntil.Load(); until != 0 && !p.expired.Load() {
			if d := time.Duration(until - p.now()); d > 0 {
				held, wait = true, d
			}
		}
		if held && !p.leaseValid() {
			held = false
			p.log.Warn("protocluster: lease lost; stopping this member's grains", slog.String("member", p.self))
			if l := p.lookup.Load(); l != nil {
				l.leaseLost()
			}
		}
		timer.Reset(wait)
		select {
		case <-p.stop:
			return
		case <-p.renewed:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// watchLoop reads the committed topology every WatchInterval and hands
// every new version to protoactor's MemberList, in the table's order. On
// the member whose voter leads, it also runs the expirer.
func (p *Provider) watchLoop() {
	defer p.wg.Done()
	tick := time.NewTicker(p.cfg.WatchInterval)
	defer tick.Stop()
	exp := newExpirer(p)
	for {
		p.watchOnce(exp)
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

func (p *Provider) watchOnce(exp *expirer) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CallTimeout)
	defer cancel()
	leads := p.leads(ctx)
	consistency := actors.Consistency_LEASE
	if leads {
		consistency = actors.Consistency_STALE // the leader's own applied state
	}
	qr, err := p.read(ctx, &Query{Q: &Query_Topology{Topology: &TopologyQuery{}}}, consistency)
	if err != nil {
		return
	}
	p.topoMu.Lock()
	changed := !p.seen || qr.GetTopologyVersion() != p.version
	if changed {
		p.topology, p.version, p.seen = qr.GetMembers(), qr.GetTopologyVersion(), true
	}
	p.topoMu.Unlock()
	if changed {
		members := make([]*clustering.Member, 0, len(qr.GetMembers()))
		for _, m := range qr.GetMembers() {
			members = append(members, &clustering.Member{Id: m.Id, Host: m.Host, Port: m.Port, Kinds: append([]string(nil), m.Kinds...)})
		}
		p.c.MemberList.UpdateClusterTopology(members)
	}
	if leads {
		exp.observe(ctx, qr.GetMembers())
	} else {
		exp.reset()
	}
}

// hasMember reports whether the latest topology this member read holds id.
func (p *Provider) hasMember(id string) bool {
	p.topoMu.Lock()
	defer p.topoMu.Unlock()
	for _, m := range p.topology {
		if m.Id == id {
			return true
		}
	}
	return false
}

// leads reports whether this member's voter leads the group.
func (p *Provider) leads(ctx context.Context) bool {
	if p.group == nil {
		return false
	}
	res, err := p.c.ActorSystem.Root.RequestFuture(p.group.Node(), &actors.LeaderRequest{Meta: actors.NewMeta(p.cfg.CallTimeout)}, p.cfg.CallTimeout).Result()
	if err != nil {
		return false
	}
	lr, ok := res.(*actors.LeaderResponse)
	return ok && lr.GetIsLeader()
}

// cut reports whether Config.Faults cuts this member from the group.
func (p *Provider) cut() bool {
	drop, _ := p.cfg.Faults.Decide(raft.ServerID(p.self), FaultPeer)
	return drop
}

// write applies cmd through the group and decodes its Result.
func (p *Provider) write(ctx context.Context, cmd *Command) (*Result, error) {
	if p.cut() {
		return nil, ErrCut
	}
	resp, err := p.client.Write(ctx, mustMarshal(cmd))
	if err != nil {
		return nil, fmt.Errorf("protocluster: write: %w", err)
	}
	var res Result
	if err := proto.Unmarshal(resp.GetResult(), &res); err != nil {
		return nil, fmt.Errorf("protocluster: decoding a result: %w", err)
	}
	return &res, nil
}

// read answers q at consistency. A STALE read on a member with a voter is
// served by that voter, with no network.
func (p *Provider) read(ctx context.Context, q *Query, consistency actors.Consistency) (*QueryResult, error) {
	if p.cut() {
		return nil, ErrCut
	}
	var result []byte
	if consistency == actors.Consistency_STALE && p.local != nil {
		req := &actors.ReadRequest{Meta: actors.NewMeta(p.cfg.CallTimeout), Query: mustMarshal(q), Consistency: consistency}
		res, err := p.c.ActorSystem.Root.RequestFuture(p.local, req, p.cfg.CallTimeout).Result()
		if err != nil {
			return nil, fmt.Errorf("protocluster: local read: %w", err)
		}
		rr, ok := res.(*actors.ReadResponse)
		if !ok {
			return nil, fmt.Errorf("protocluster: local read answered %T", res)
		}
		if err := rr.GetError().Err(); err != nil {
			return nil, fmt.Errorf("protocluster: local read: %w", err)
		}
		result = rr.GetResult()
	} else {
		rr, err := p.client.Read(ctx, mustMarshal(q), cluster.WithConsistency(consistency))
		if err != nil {
			return nil, fmt.Errorf("protocluster: read: %w", err)
		}
		result = rr.GetResult()
	}
	var qr QueryResult
	if err := proto.Unmarshal(result, &qr); err != nil {
		return nil, fmt.Errorf("protocluster: decoding a query result: %w", err)
	}
	return &qr, nil
}

// expirer expires members whose renewal index stays the same for
// ExpireAfter, by this member's monotonic clock, from the moment it first
// saw that index. It runs only while this member's voter leads; a new
// leader starts counting afresh, which delays an expiry and never hastens
// it.
type expirer struct {
	p    *Provider
	seen map[string]observed
}

type observed struct {
	index uint64
	at    int64
}

func newExpirer(p *Provider) *expirer { return &expirer{p: p, seen: map[string]observed{}} }

func (e *expirer) reset() { clear(e.seen) }

func (e *expirer) observe(ctx context.Context, members []*Member) {
	now := e.p.now()
	live := map[string]bool{}
	for _, m := range members {
		live[m.Id] = true
		o, ok := e.seen[m.Id]
		if !ok || o.index != m.RenewedIndex {
			e.seen[m.Id] = observed{index: m.RenewedIndex, at: now}
			continue
		}
		if time.Duration(now-o.at) < e.p.cfg.ExpireAfter {
			continue
		}
		res, err := e.p.write(ctx, &Command{Op: &Command_Expire{Expire: &Expire{Id: m.Id, RenewedIndex: o.index}}})
		if err == nil && res.GetOk() {
			e.p.log.Warn("protocluster: expired a silent member", slog.String("member", m.Id), slog.String("address", memberAddress(m)))
		}
	}
	for id := range e.seen {
		if !live[id] {
			delete(e.seen, id)
		}
	}
}

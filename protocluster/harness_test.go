package protocluster_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	clustering "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/cluster_test_tool"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/remote"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/proctest"
	"github.com/protoraft/protoraft/protocluster"
	"github.com/protoraft/protoraft/raftactor"
)

// TestMain silences protoactor's own logging, which writes every member's
// Info lines to os.Stderr, unless PROTOCLUSTER_TEST_LOG is set.
func TestMain(m *testing.M) {
	if os.Getenv("PROTOCLUSTER_TEST_LOG") == "" {
		if null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
			os.Stderr = null
		}
	}
	os.Exit(m.Run())
}

// freePorts returns n loopback ports free a moment ago, for the voters'
// addresses, which every member must know before the first one starts.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// testTimings are short liveness timings for in-process tests: a member cut
// from the group loses its lease after 600ms and is expired after 1.2s.
func testConfig(t testing.TB, ports []int, net *faults.Network) protocluster.Config {
	var voters []cluster.Peer
	for i, p := range ports {
		voters = append(voters, cluster.Peer{ID: fmt.Sprintf("v%d", i+1), Address: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	return protocluster.Config{
		Voters:        voters,
		InMemory:      true,
		RenewInterval: 100 * time.Millisecond,
		LeaseDuration: 600 * time.Millisecond,
		ExpireAfter:   1200 * time.Millisecond,
		WatchInterval: 50 * time.Millisecond,
		CallTimeout:   time.Second,
		Faults:        net,
		Node: func(c *raftactor.Config) {
			c.Timeouts = grouptest.FastTimeouts
			c.InsecureTransport = true
			c.RequestTimeout = time.Second
			c.RPCTimeout = 300 * time.Millisecond
			c.Faults = net
		},
	}
}

// raftOptions are the fixture options that run this package's provider
// and lookup: the first voters members spawned host the voters, on ports
// chosen now; made is told of every provider; configure, when set, changes
// each member's cluster configuration too.
func raftOptions(t testing.TB, voters int, net *faults.Network, made func(*protocluster.Provider), configure func(*clustering.Config), tune ...func(*protocluster.Config)) []cluster_test_tool.ClusterFixtureOption {
	ports := freePorts(t, voters)
	cfg := testConfig(t, ports, net)
	for _, f := range tune {
		f(&cfg)
	}
	var mu sync.Mutex
	spawned := 0
	return []cluster_test_tool.ClusterFixtureOption{
		cluster_test_tool.WithGetClusterProvider(func() clustering.ClusterProvider {
			p, err := protocluster.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if made != nil {
				made(p)
			}
			return p
		}),
		cluster_test_tool.WithGetIdentityLookup(func(string) clustering.IdentityLookup { return protocluster.NewIdentityLookup() }),
		cluster_test_tool.WithClusterConfigure(func(c *clustering.Config) *clustering.Config {
			mu.Lock()
			port := 0
			if spawned < len(ports) {
				port = ports[spawned]
			}
			spawned++
			mu.Unlock()
			c.RemoteConfig = remote.Configure("127.0.0.1", port, remote.WithEndpointWriterQueueSize(4096))
			c.RequestTimeoutTime = 5 * time.Second
			if configure != nil {
				configure(c)
			}
			return c
		}),
	}
}

// event is one line of the ledger: a grain started or stopped.
type event struct {
	identity string
	member   string
	pid      string
	token    uint64
	start    bool
	at       time.Time
}

// ledger records every grain's activation and deactivation, with its
// fencing token, across all members of a test (they share the process).
type ledger struct {
	mu     sync.Mutex
	events []event
}

func (l *ledger) record(ctx actor.Context, start bool) {
	ci := clustering.GetClusterIdentity(ctx)
	token, _ := protocluster.FencingToken(ctx)
	e := event{member: ctx.ActorSystem().Address(), pid: ctx.Self().Id, token: token, start: start, at: time.Now()}
	if ci != nil {
		e.identity = ci.Identity
	}
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

// interval is one activation's life.
type interval struct {
	member, pid string
	token       uint64
	from, to    time.Time
}

// check returns the activations, per identity, and every overlap: two
// activations of one identity alive at the same instant. Activations still
// running end now. It also reports tokens that do not grow from one
// activation to the next.
func (l *ledger) check() (activations int, overlaps []string, tokenFaults []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	open := map[string]*interval{}
	byID := map[string][]*interval{}
	for _, e := range l.events {
		k := e.member + "|" + e.pid
		if e.start {
			iv := &interval{member: e.member, pid: e.pid, token: e.token, from: e.at, to: now}
			open[k] = iv
			byID[e.identity] = append(byID[e.identity], iv)
		} else if iv, ok := open[k]; ok {
			iv.to = e.at
			delete(open, k)
		}
	}
	for id, ivs := range byID {
		activations += len(ivs)
		sort.Slice(ivs, func(i, j int) bool { return ivs[i].from.Before(ivs[j].from) })
		var latest *interval
		for _, iv := range ivs {
			if latest != nil && iv.from.Before(latest.to) {
				overlaps = append(overlaps, fmt.Sprintf("%s: %s#%d [%v, %v] and %s#%d from %v", id,
					latest.member, latest.token, latest.from.Format("15:04:05.000"), latest.to.Format("15:04:05.000"),
					iv.member, iv.token, iv.from.Format("15:04:05.000")))
			}
			if latest != nil && iv.token != 0 && iv.token < latest.token {
				tokenFaults = append(tokenFaults, fmt.Sprintf("%s: token %d after %d", id, iv.token, latest.token))
			}
			if latest == nil || iv.to.After(latest.to) {
				latest = iv
			}
		}
	}
	return activations, overlaps, tokenFaults
}

// grainKind is the kind the tests run: a grain that records itself in the
// ledger and answers any StringValue with "<member address>#<token>".
const grainKind = "ledgered"

func ledgeredKind(l *ledger) *clustering.Kind {
	return clustering.NewKind(grainKind, actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started:
			l.record(ctx, true)
		case *actor.Stopped:
			l.record(ctx, false)
		case *wrapperspb.StringValue:
			token, _ := protocluster.FencingToken(ctx)
			ctx.Respond(wrapperspb.String(fmt.Sprintf("%s#%d", ctx.ActorSystem().Address(), token)))
		}
	}))
}

// world is a protoactor cluster fixture, with this package's provider and
// lookup, with protoactor's test provider and disthash, or with
// protoactor's etcd provider and disthash (newEtcdWorld).
type world struct {
	t         testing.TB
	fixture   *cluster_test_tool.BaseClusterFixture
	ledger    *ledger
	net       *faults.Network
	mu        sync.Mutex
	providers map[*clustering.Cluster]*protocluster.Provider
	pending   []*protocluster.Provider
	members   []*clustering.Cluster
	// etcd holds, in the etcd world, each member's provider's way to the
	// etcd server, by provider; nil in the other worlds.
	etcd map[clustering.ClusterProvider]*etcdLine
}

// etcdLine is one member's connection to etcd: its client dials the
// forwarder, which kill closes, and stop cancels the client's context,
// which ends its lease keep-alive loop (the provider never closes its
// client, and that loop would otherwise keep the lease alive, and retry
// once etcd has stopped, for the rest of the test binary). killed marks a
// member taken down by kill: its client is left as the crash left it,
// cut off and untouched.
type etcdLine struct {
	forwarder *proctest.Forwarder
	stop      context.CancelFunc
	killed    bool
}

// newWorld builds a fixture of size members; raft selects this package's
// provider and lookup (the first three members host the voters), otherwise
// protoactor's in-memory test provider and disthash.
func newWorld(t testing.TB, size int, raft bool) *world { return newTunedWorld(t, size, raft) }

// newTunedWorld is newWorld with changes to the providers' Config.
func newTunedWorld(t testing.TB, size int, raft bool, tune ...func(*protocluster.Config)) *world {
	enterWorld()
	w := &world{t: t, ledger: &ledger{}, net: faults.NewNetwork(1), providers: map[*clustering.Cluster]*protocluster.Provider{}}
	opts := []cluster_test_tool.ClusterFixtureOption{
		cluster_test_tool.WithGetClusterKinds(func() []*clustering.Kind {
			kinds := []*clustering.Kind{ledgeredKind(w.ledger)}
			if raft {
				kinds = append(kinds, protocluster.TopicKind())
			}
			return kinds
		}),
	}
	if raft {
		opts = append(opts, raftOptions(t, 3, w.net, func(p *protocluster.Provider) {
			w.mu.Lock()
			w.pending = append(w.pending, p)
			w.mu.Unlock()
		}, nil, tune...)...)
	} else {
		opts = append(opts, cluster_test_tool.WithClusterConfigure(func(c *clustering.Config) *clustering.Config {
			c.RemoteConfig = remote.Configure("127.0.0.1", 0, remote.WithEndpointWriterQueueSize(4096))
			c.RequestTimeoutTime = 5 * time.Second
			return c
		}))
	}
	if raft {
		w.fixture = cluster_test_tool.NewBaseClusterFixture(size, opts...)
	} else {
		w.fixture = cluster_test_tool.NewBaseInMemoryClusterFixture(size, opts...)
	}
	w.fixture.Initialize()
	w.adopt()
	t.Cleanup(w.shutdown)
	return w
}

// newEtcdWorld builds a fixture of size members on protoactor's etcd
// provider, each member's client reaching the etcd server at etcdAddr
// (host:port) through a forwarder of its own, with protoactor's default
// identity lookup, disthash.
func newEtcdWorld(t testing.TB, size int, etcdAddr string) *world {
	enterWorld()
	w := &world{t: t, ledger: &ledger{}, net: faults.NewNetwork(1), providers: map[*clustering.Cluster]*protocluster.Provider{},
		etcd: map[clustering.ClusterProvider]*etcdLine{}}
	baseKey := fmt.Sprintf("/protocluster-test/%d", time.Now().UnixNano())
	w.fixture = cluster_test_tool.NewBaseClusterFixture(size,
		cluster_test_tool.WithGetClusterKinds(func() []*clustering.Kind { return []*clustering.Kind{ledgeredKind(w.ledger)} }),
		cluster_test_tool.WithGetClusterProvider(func() clustering.ClusterProvider {
			f, err := proctest.NewForwarder()
			if err != nil {
				t.Fatal(err)
			}
			f.Route(etcdAddr)
			ctx, stop := context.WithCancel(context.Background())
			p, err := etcd.NewWithConfig(baseKey, clientv3.Config{Endpoints: []string{f.Addr()}, DialTimeout: 5 * time.Second, Context: ctx})
			if err != nil {
				stop()
				_ = f.Close()
				t.Fatal(err)
			}
			w.mu.Lock()
			w.etcd[p] = &etcdLine{forwarder: f, stop: stop}
			w.mu.Unlock()
			return p
		}),
		cluster_test_tool.WithClusterConfigure(func(c *clustering.Config) *clustering.Config {
			c.RemoteConfig = remote.Configure("127.0.0.1", 0, remote.WithEndpointWriterQueueSize(4096))
			c.RequestTimeoutTime = 5 * time.Second
			return c
		}),
	)
	w.fixture.Initialize()
	w.adopt()
	t.Cleanup(w.shutdown)
	return w
}

// adopt pairs providers made by the fixture with their clusters and
// refreshes the list of live members.
func (w *world) adopt() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.pending {
		for _, c := range w.fixture.GetMembers() {
			if c.Config.ClusterProvider == p {
				w.providers[c] = p
			}
		}
	}
	w.pending = nil
	w.members = append([]*clustering.Cluster(nil), w.fixture.GetMembers()...)
}

// live returns the members that have not left, first the three that host
// the voters.
func (w *world) live() []*clustering.Cluster {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*clustering.Cluster(nil), w.members...)
}

func (w *world) provider(c *clustering.Cluster) *protocluster.Provider {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.providers[c]
}

func (w *world) spawn() *clustering.Cluster {
	c := w.fixture.SpawnNode()
	w.adopt()
	return c
}

// leave takes a member out as protoactor's graceful shutdown does (the
// provider first, then the lookup), without its fixed two-second pause
// and remote's ten-second graceful stop.
func (w *world) leave(c *clustering.Cluster) {
	_ = c.Config.ClusterProvider.Shutdown(true)
	c.IdentityLookup.Shutdown()
	w.fixture.RemoveNode(c, false)
	w.adopt()
}

// kill takes a member down as a crash would: nobody is told; its remote
// stops, and its grains and voter with it.
func (w *world) kill(c *clustering.Cluster) {
	if line := w.lineOf(c); line != nil {
		// A crashed member does not deregister: its connection to etcd
		// goes (the forwarder closes every joined connection and refuses
		// new ones), and the others see it leave only when its lease
		// (the provider's keepAliveTTL, 3 s) has expired. The provider's
		// Shutdown is not called: it deletes the member's key at once,
		// which a crash never does, and its Delete (context.TODO) would
		// wait forever on the cut connection. The member's actor system
		// and remote stop as in the other worlds; its provider's loops
		// stay behind, waiting on a connection that reaches nobody.
		w.mu.Lock()
		line.killed = true
		w.mu.Unlock()
		_ = line.forwarder.Close()
		w.fixture.RemoveNode(c, false)
		c.IdentityLookup.Shutdown()
		w.adopt()
		return
	}
	w.fixture.RemoveNode(c, false)
	if p := w.provider(c); p != nil {
		_ = p.Shutdown(false)
	} else {
		// The test provider's registration would outlive the crash for
		// good (it never expires one): deregister as its TTL would.
		_ = c.Config.ClusterProvider.Shutdown(false)
	}
	c.IdentityLookup.Shutdown()
	w.adopt()
}

// lineOf returns c's connection to etcd, nil outside the etcd world.
func (w *world) lineOf(c *clustering.Cluster) *etcdLine {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.etcd[c.Config.ClusterProvider]
}

func (w *world) shutdown() {
	for _, c := range w.live() {
		if p := w.provider(c); p != nil {
			_ = p.Shutdown(false)
		}
		if w.lineOf(c) != nil {
			// The etcd provider's Shutdown deletes its key with
			// context.TODO: bounded here, so that an etcd that went
			// away cannot hold the cleanup.
			if !within(5*time.Second, func() { _ = c.Config.ClusterProvider.Shutdown(false) }) {
				w.t.Logf("%s: the etcd provider did not shut down within 5s", c.ActorSystem.Address())
			}
		}
		c.IdentityLookup.Shutdown()
		c.Shutdown(false)
	}
	w.mu.Lock()
	for _, line := range w.etcd {
		if !line.killed {
			line.stop()
		}
		_ = line.forwarder.Close()
	}
	w.mu.Unlock()
	leaveWorld(w.t)
}

// within runs f and reports whether it returned within d; if not, f goes
// on by itself.
func within(d time.Duration, f func()) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// worlds counts the clusters alive in this test binary. The tests run in
// parallel, and a goroutine's stack does not say which cluster it serves,
// so the check for goroutines left behind runs when the last live
// cluster has gone: a leak shows at the next such moment (at the latest
// after the package's last cluster), named in whichever test ended last.
// A cluster that starts meanwhile waits for the check.
var worlds struct {
	sync.Mutex
	live int
}

// enterWorld counts a cluster in; leaveWorld must follow.
func enterWorld() {
	worlds.Lock()
	worlds.live++
	worlds.Unlock()
}

// leaveWorld counts a cluster out, and checks for goroutines left behind
// when it was the last.
func leaveWorld(t testing.TB) {
	worlds.Lock()
	defer worlds.Unlock()
	worlds.live--
	if worlds.live == 0 {
		noProtoraftGoroutines(t)
	}
}

// noProtoraftGoroutines fails the test if goroutines of this module (the
// providers' loops, activator goroutines, voters) outlive the shutdown of
// every member of every cluster (see worlds). protoactor's own cluster goroutines (gossip, the test
// provider, remote's endpoint writers) are not ours and outlive their
// clusters, so goleak's whole-process check cannot be used here.
func noProtoraftGoroutines(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<22)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var leaked []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "protoraft/protoraft/") && !strings.Contains(g, "protocluster_test.") && !strings.Contains(g, "testing.tRunner") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines of this module outlived the cluster; the first:\n%s", len(leaked), leaked[0])
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// call sends one request for identity through member c.
func call(c *clustering.Cluster, identity string, timeout time.Duration) (string, error) {
	res, err := c.Request(identity, grainKind, wrapperspb.String("hi"), clustering.WithTimeout(timeout))
	if err != nil {
		return "", err
	}
	s, ok := res.(*wrapperspb.StringValue)
	if !ok {
		return "", fmt.Errorf("answer %T", res)
	}
	return s.Value, nil
}

// waitTopology waits until every member in cs sees want members, in the
// same order.
func waitTopology(t testing.TB, cs []*clustering.Cluster, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var first string
		same := true
		for _, c := range cs {
			var ids []string
			for _, m := range c.MemberList.Members().Members() {
				ids = append(ids, m.Id)
			}
			s := strings.Join(ids, ",")
			if len(ids) != want || (first != "" && s != first) {
				same = false
			}
			if first == "" {
				first = s
			}
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			for _, c := range cs {
				var ids []string
				for _, m := range c.MemberList.Members().Members() {
					ids = append(ids, m.Id)
				}
				t.Logf("%s (%s) sees %v", c.ActorSystem.Address(), c.ActorSystem.ID, ids)
			}
			t.Fatalf("members do not agree on %d members within 15s", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// compare reports whether the comparison runs against protoactor's
// providers and disthash are on (PROTOCLUSTER_COMPARE).
func compare() bool { return os.Getenv("PROTOCLUSTER_COMPARE") != "" }

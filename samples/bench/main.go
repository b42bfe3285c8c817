// Command bench measures a three-node protoraft group on this machine:
// write throughput and latency with 1 and 64 concurrent clients, and how
// long the group takes to accept writes again after losing its leader.
//
// It runs the same measurements twice: in-process (one ActorSystem, node
// actors reached through local PIDs) and over protoactor remote (three
// ActorSystems in this process, each serving remote on 127.0.0.1, so Raft
// RPCs cross gRPC on loopback). Clients run in the leader's ActorSystem, so
// the difference between the two is Raft replication over the network.
//
// Failover is measured two ways, each from the moment of the fault until a
// write succeeds through a new leader:
//   - crash: the leader is cut off from its peers (Faults.Isolate), which
//     the others cannot tell from a crash; then the network heals and the
//     group converges before the next trial.
//   - planned: the leader's actor is stopped, which hands leadership over
//     first; then it is started again from its directory.
//
// Data directories are fresh temporary ones, removed at exit. Durations
// are wall clock on a shared machine: run it on an idle one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

const group = "bench"

func main() {
	duration := flag.Duration("duration", 5*time.Second, "how long each throughput measurement runs")
	trials := flag.Int("failover-trials", 5, "failovers of each kind per configuration")
	timeouts := flag.String("timeouts", "both", "Raft timeouts: fast (100ms heartbeat and election), default (hashicorp's), or both")
	modes := flag.String("mode", "both", "inproc, remote, or both")
	verbose := flag.Bool("v", false, "log the nodes' warnings")
	flag.Parse()

	log := zap.NewNop()
	if *verbose {
		zc := zap.NewDevelopmentConfig()
		zc.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
		zc.DisableStacktrace = true
		log, _ = zc.Build()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var settings []namedTimeouts
	if *timeouts == "fast" || *timeouts == "both" {
		settings = append(settings, namedTimeouts{"fast", raftactor.Timeouts{Heartbeat: 100 * time.Millisecond, Election: 100 * time.Millisecond}})
	}
	if *timeouts == "default" || *timeouts == "both" {
		settings = append(settings, namedTimeouts{"default", raftactor.DefaultTimeouts()})
	}
	var remoteModes []bool
	if *modes == "inproc" || *modes == "both" {
		remoteModes = append(remoteModes, false)
	}
	if *modes == "remote" || *modes == "both" {
		remoteModes = append(remoteModes, true)
	}
	if len(settings) == 0 || len(remoteModes) == 0 {
		fmt.Fprintln(os.Stderr, "bench: -timeouts must be fast, default or both; -mode inproc, remote or both")
		os.Exit(2)
	}

	root, err := os.MkdirTemp("", "protoraft-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(root)

	var writes, failovers []row
	for _, ts := range settings {
		for _, overRemote := range remoteModes {
			w, f, err := benchOne(ctx, filepath.Join(root, fmt.Sprintf("%s-%t", ts.name, overRemote)), overRemote, ts, *duration, *trials, log)
			writes, failovers = append(writes, w...), append(failovers, f...)
			if err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
				printTables(writes, failovers)
				os.RemoveAll(root)
				os.Exit(1)
			}
		}
	}
	printTables(writes, failovers)
}

type namedTimeouts struct {
	name string
	t    raftactor.Timeouts
}

// row is one line of a result table.
type row struct {
	mode, timeouts, what string
	ops                  int
	errs                 int
	elapsed              time.Duration
	samples              []time.Duration
}

// benchOne starts a cluster, measures writes at each concurrency, then
// failovers, and stops it.
func benchOne(ctx context.Context, dir string, overRemote bool, ts namedTimeouts, duration time.Duration, trials int, log *zap.Logger) (writes, failovers []row, err error) {
	mode := "in-process"
	if overRemote {
		mode = "remote"
	}
	fmt.Fprintf(os.Stderr, "running %s, %s timeouts...\n", mode, ts.name)
	c, err := startCluster(dir, overRemote, ts.t, log)
	if err != nil {
		return nil, nil, err
	}
	defer c.close()
	if _, err := c.waitLeader(ctx, ""); err != nil {
		return nil, nil, err
	}

	value := make([]byte, 16)
	for _, clients := range []int{1, 64} {
		r, err := c.writeLoad(ctx, clients, duration, value)
		if err != nil {
			return writes, nil, err
		}
		r.mode, r.timeouts, r.what = mode, ts.name, fmt.Sprintf("%d client(s)", clients)
		writes = append(writes, r)
	}

	for _, planned := range []bool{false, true} {
		r := row{mode: mode, timeouts: ts.name, what: "crash (isolate)"}
		if planned {
			r.what = "planned (stop)"
		}
		for range trials {
			d, err := c.failover(ctx, planned)
			if err != nil {
				return writes, append(failovers, r), err
			}
			r.samples = append(r.samples, d)
		}
		failovers = append(failovers, r)
	}
	return writes, failovers, nil
}

// node is one node actor and where it runs.
type node struct {
	id, name, addr string
	system         *actor.ActorSystem
	props          *actor.Props
	pid            *actor.PID
}

type cluster struct {
	nodes   []*node
	faults  *raftactor.Faults
	systems []*actor.ActorSystem
	remotes []*remote.Remote
}

// quietSystem is an ActorSystem whose own logs are discarded: at info level
// protoactor logs every connection, which would drown the tables.
func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
}

func startCluster(dir string, overRemote bool, t raftactor.Timeouts, log *zap.Logger) (*cluster, error) {
	c := &cluster{faults: raftactor.NewFaults(1)}
	ids := []string{"n1", "n2", "n3"}
	var shared *actor.ActorSystem
	if !overRemote {
		shared = quietSystem()
		c.systems = []*actor.ActorSystem{shared}
	}
	for _, id := range ids {
		n := &node{id: id, name: "protoraft/" + group + "/" + id, system: shared}
		if overRemote {
			// Remote must be started before spawning: the system's address
			// is only known afterwards, and it is part of the Raft address.
			n.system = quietSystem()
			r := remote.NewRemote(n.system, raftactor.RemoteConfig("127.0.0.1", 0))
			r.Start()
			c.remotes = append(c.remotes, r)
			c.systems = append(c.systems, n.system)
		}
		n.addr = n.system.Address() + "/" + n.name
		c.nodes = append(c.nodes, n)
	}
	var peers []raftactor.Peer
	for _, n := range c.nodes {
		peers = append(peers, raftactor.Peer{ID: n.id, Address: n.addr})
	}
	for _, n := range c.nodes {
		props, err := raftactor.Props(raftactor.Config{
			Group:           group,
			ID:              n.id,
			DataDir:         filepath.Join(dir, n.id),
			NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
			Bootstrap:       peers,
			Timeouts:        t,
			Faults:          c.faults,
			Logger:          log,
		})
		if err != nil {
			c.close()
			return nil, err
		}
		n.props = props
		if err := c.start(n); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

func (c *cluster) start(n *node) error {
	pid, err := n.system.Root.SpawnNamed(n.props, n.name)
	if err != nil {
		return fmt.Errorf("spawn %s: %w", n.id, err)
	}
	n.pid = pid
	return nil
}

func (c *cluster) close() {
	for _, n := range c.nodes {
		if n.pid != nil {
			_ = n.system.Root.StopFuture(n.pid).Wait()
			n.pid = nil
		}
	}
	for _, r := range c.remotes {
		r.Shutdown(true)
	}
	for _, s := range c.systems {
		s.Shutdown()
	}
}

func (c *cluster) byAddr(addr string) *node {
	for _, n := range c.nodes {
		if n.addr == addr {
			return n
		}
	}
	return nil
}

// waitLeader returns the node that says it leads, skipping the node named
// by except.
func (c *cluster) waitLeader(ctx context.Context, except string) (*node, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n.pid == nil || n.id == except {
				continue
			}
			res, err := n.system.Root.RequestFuture(n.pid, &actors.LeaderRequest{}, time.Second).Result()
			if lr, ok := res.(*actors.LeaderResponse); err == nil && ok && lr.IsLeader {
				return n, nil
			}
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("no leader within 60s")
}

// converged waits until every node agrees on one leader and has applied
// index, so the next trial starts from a healthy group.
func (c *cluster) converged(ctx context.Context, index uint64) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		leaders := map[string]bool{}
		ok := true
		for _, n := range c.nodes {
			res, err := n.system.Root.RequestFuture(n.pid, &actors.StatusRequest{}, time.Second).Result()
			st, isStatus := res.(*actors.StatusResponse)
			if err != nil || !isStatus || st.Error.Err() != nil || st.Leader == nil || st.CommandIndex < index {
				ok = false
				break
			}
			leaders[st.Leader.Id] = true
		}
		if ok && len(leaders) == 1 {
			return nil
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return errors.New("group did not converge within 60s")
}

// writeLoad runs clients that write to the leader back to back for d.
// Only successful writes count as operations and latency samples; a client
// that gets an error moves on to the hinted leader.
func (c *cluster) writeLoad(ctx context.Context, clients int, d time.Duration, value []byte) (row, error) {
	leader, err := c.waitLeader(ctx, "")
	if err != nil {
		return row{}, err
	}
	var (
		mu      sync.Mutex
		samples []time.Duration
		errs    int
		wg      sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for i := range clients {
		wg.Go(func() {
			target := leader
			var mine []time.Duration
			failed := 0
			key := fmt.Sprintf("bench/%d", i)
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				req := &actors.WriteRequest{Meta: actors.NewMeta(2 * time.Second), Command: kvstore.Put(key, value)}
				res, err := target.system.Root.RequestFuture(target.pid, req, 3*time.Second).Result()
				if err == nil {
					e := res.(*actors.WriteResponse).GetError()
					if e.Err() == nil {
						mine = append(mine, time.Since(t0))
						continue
					}
					if e.Code == actors.Code_NOT_LEADER && e.Leader != nil {
						if n := c.byAddr(e.Leader.Address); n != nil && n.pid != nil {
							target = n
						}
					}
				}
				failed++
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			samples = append(samples, mine...)
			errs += failed
			mu.Unlock()
		})
	}
	wg.Wait()
	return row{ops: len(samples), errs: errs, elapsed: time.Since(start), samples: samples}, ctx.Err()
}

// failover takes the leader away, crash-like or planned, and returns how
// long until a write succeeds through another node. It then restores the
// old leader and waits until the group has converged.
func (c *cluster) failover(ctx context.Context, planned bool) (time.Duration, error) {
	old, err := c.waitLeader(ctx, "")
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if planned {
		if err := old.system.Root.StopFuture(old.pid).Wait(); err != nil {
			return 0, err
		}
		old.pid = nil
	} else {
		c.faults.Isolate(raft.ServerID(old.id))
	}
	index, err := c.writeAvoiding(ctx, old.id)
	took := time.Since(start)
	if planned {
		if serr := c.start(old); serr != nil {
			return 0, serr
		}
	} else {
		c.faults.Heal()
	}
	if err != nil {
		return 0, err
	}
	return took, c.converged(ctx, index)
}

// writeAvoiding writes through any node but except until one succeeds, and
// returns the write's index.
func (c *cluster) writeAvoiding(ctx context.Context, except string) (uint64, error) {
	deadline := time.Now().Add(60 * time.Second)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		n := c.nodes[attempt%len(c.nodes)]
		if n.id == except || n.pid == nil {
			continue
		}
		req := &actors.WriteRequest{Meta: actors.NewMeta(time.Second), Command: kvstore.Put("failover", []byte("x"))}
		res, err := n.system.Root.RequestFuture(n.pid, req, 2*time.Second).Result()
		if err == nil {
			wr := res.(*actors.WriteResponse)
			if wr.GetError().Err() == nil {
				return wr.Index, nil
			}
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return 0, err
		}
	}
	return 0, errors.New("no write succeeded within 60s of the failover")
}

// percentile of sorted samples, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1)+0.5)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func printTables(writes, failovers []row) {
	fmt.Println("writes, 16-byte values (only successful writes are counted and timed)")
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "transport\ttimeouts\tclients\tops\terrors\tops/s\tp50 ms\tp99 ms\tmax ms\t")
	for _, r := range writes {
		slices.Sort(r.samples)
		rate := float64(r.ops) / r.elapsed.Seconds()
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t\n", r.mode, r.timeouts, r.what, r.ops, r.errs, rate,
			ms(percentile(r.samples, 0.50)), ms(percentile(r.samples, 0.99)), ms(percentile(r.samples, 1)))
	}
	w.Flush()

	fmt.Println()
	fmt.Println("failover: from the fault to the first write through a new leader")
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "transport\ttimeouts\tkind\ttrials\tmin ms\tp50 ms\tmax ms\t")
	for _, r := range failovers {
		slices.Sort(r.samples)
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t\n", r.mode, r.timeouts, r.what, len(r.samples),
			ms(percentile(r.samples, 0)), ms(percentile(r.samples, 0.50)), ms(percentile(r.samples, 1)))
	}
	w.Flush()
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

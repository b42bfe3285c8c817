// Command grains runs a protoactor cluster of counter grains on three OS
// processes with no external service: the membership and the identity →
// activation table live in a protoraft group that the three processes host
// themselves (package protocluster).
//
//	go run ./samples/grains -member 1    # and, in two more terminals,
//	go run ./samples/grains -member 2
//	go run ./samples/grains -member 3
//
// Each process hosts counters and increments counter-0 … counter-4 twice a
// second, printing each count with the fencing token of the activation that
// answered and the member it runs on. SIGKILL one process: once its lease
// and expiry have passed (3 s and 6 s by default) its counters start on the
// other two, with new tokens (a counter's count is in memory, so it starts
// again from zero there), and at no time do two activations of one counter
// run. Start the process again and it joins as a new member. (A member
// that cannot renew within its lease, during a long election, stops its
// grains too and starts them again once it renewed.) A member that the
// others expired while it could not renew (a process paused with SIGSTOP
// for longer than the expiry) learns it at its next renewal, hosts nothing
// from then on, and exits: start it again to rejoin. The voters keep their
// logs in a directory under the system's temporary directory, printed at
// start.
//
// Flags for running it elsewhere and for its process test: -voters lists
// the three members' addresses (member n listens on the n-th), -dir the
// voters' directory, -interval the pause between rounds of increments, and
// -ledger prints every grain's start, increment and stop, with its token
// and the wall clock, as lines starting "grain ".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	clustering "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/protocluster"
	"github.com/protoraft/protoraft/raftactor"
)

// basePort is member 1's remote port; member n listens on basePort+n-1.
const basePort = 7201

// demoKey authenticates the voters' Raft RPCs to each other. A sample's
// fixed key: a deployment reads its own secret from its secret store.
var demoKey = []byte("protoraft-grains-sample-key-0123456789")

func main() {
	member := flag.Int("member", 1, "which member this process is: 1, 2 or 3")
	voters := flag.String("voters", "", "the three members' addresses, host:port,host:port,host:port (default 127.0.0.1:7201 to 7203)")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "protoraft-grains"), "the parent of the voters' data directories")
	interval := flag.Duration("interval", 500*time.Millisecond, "the pause between rounds of increments")
	ledger := flag.Bool("ledger", false, "print every grain's start, increment and stop")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, options{member: *member, voters: *voters, dir: *dir, interval: *interval, ledger: *ledger}); err != nil {
		fmt.Fprintln(os.Stderr, "grains:", err)
		os.Exit(1)
	}
}

// options are the sample's flags.
type options struct {
	member   int
	voters   string
	dir      string
	interval time.Duration
	ledger   bool
}

// errExpired ends a member that the others expired: it can host nothing
// again under its ID.
var errExpired = errors.New("this member was expired by the others; start it again to rejoin")

func run(ctx context.Context, o options) error {
	if o.member < 1 || o.member > 3 {
		return fmt.Errorf("-member %d: 1, 2 or 3", o.member)
	}
	addrs := []string{fmt.Sprintf("127.0.0.1:%d", basePort), fmt.Sprintf("127.0.0.1:%d", basePort+1), fmt.Sprintf("127.0.0.1:%d", basePort+2)}
	if o.voters != "" {
		addrs = strings.Split(o.voters, ",")
		if len(addrs) != 3 {
			return fmt.Errorf("-voters %q: three addresses", o.voters)
		}
	}
	var voters []cluster.Peer
	for i, a := range addrs {
		voters = append(voters, cluster.Peer{ID: fmt.Sprintf("v%d", i+1), Address: a})
	}
	host, portText, err := net.SplitHostPort(addrs[o.member-1])
	if err != nil {
		return fmt.Errorf("-voters: %w", err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("-voters: port %q: %w", portText, err)
	}
	provider, err := protocluster.New(protocluster.Config{
		Voters:  voters,
		DataDir: o.dir,
		Node: func(c *raftactor.Config) {
			c.ClusterKey = demoKey
			// Elections well inside the members' lease (3 s): with
			// hashicorp's 1 s defaults, losing the leader can cost the
			// others their leases, and their grains restart.
			c.Timeouts = raftactor.Timeouts{Heartbeat: 300 * time.Millisecond, Election: 300 * time.Millisecond, LeaderLease: 200 * time.Millisecond}
		},
	})
	if err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	cfg := clustering.Configure("grains", provider, protocluster.NewIdentityLookup(),
		remote.Configure(host, port, remote.WithEndpointWriterQueueSize(4096)),
		clustering.WithKinds(clustering.NewKind("counter", actor.PropsFromProducer(func() actor.Actor { return &counter{ledger: o.ledger} }))))
	c := clustering.New(system, cfg)
	c.StartMember()
	fmt.Printf("member %d at %s (id %s); voters' logs in %s\n", o.member, system.Address(), system.ID, o.dir)

	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("leaving the cluster")
			c.Shutdown(true)
			return nil
		case <-provider.Expired():
			fmt.Println("expired by the others; exiting")
			c.Shutdown(false)
			_ = provider.Shutdown(false)
			return errExpired
		case <-tick.C:
		}
		for i := range 5 {
			if ctx.Err() != nil {
				break // a signal: leave now, not after this round's timeouts
			}
			id := fmt.Sprintf("counter-%d", i)
			res, err := c.Request(id, "counter", wrapperspb.Int64(1), clustering.WithTimeout(2*time.Second))
			if err != nil {
				fmt.Printf("%s: %v\n", id, err)
				continue
			}
			if s, ok := res.(*wrapperspb.StringValue); ok {
				fmt.Printf("%s %s\n", id, s.Value)
			}
		}
	}
}

// counter is a grain that adds what it is sent and answers its count, its
// fencing token and its member. With ledger it prints its life.
type counter struct {
	n      int64
	ledger bool
}

// Receive handles the grain's messages.
func (g *counter) Receive(ctx actor.Context) {
	token, _ := protocluster.FencingToken(ctx)
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		g.trace(ctx, "start", token)
	case *actor.Stopped:
		g.trace(ctx, "stop", token)
	case *wrapperspb.Int64Value:
		g.n += msg.Value
		g.trace(ctx, "add", token)
		ctx.Respond(wrapperspb.String(fmt.Sprintf("= %d (token %d on %s)", g.n, token, ctx.ActorSystem().Address())))
	}
}

// trace prints one ledger line: "grain <event> <identity> token <token> n
// <count> at <unix nanoseconds>". The wall clock, because the process
// test compares lines of several processes on one machine.
func (g *counter) trace(ctx actor.Context, event string, token uint64) {
	if !g.ledger {
		return
	}
	id := ""
	if ci := clustering.GetClusterIdentity(ctx); ci != nil {
		id = ci.Identity
	}
	fmt.Printf("grain %s %s token %d n %d at %d\n", event, id, token, g.n, time.Now().UnixNano())
}

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
// grains too and starts them again once it renewed.) The voters
// keep their logs in a directory under the system's temporary directory,
// printed at start.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
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
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *member); err != nil {
		fmt.Fprintln(os.Stderr, "grains:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, member int) error {
	if member < 1 || member > 3 {
		return fmt.Errorf("-member %d: 1, 2 or 3", member)
	}
	dir := filepath.Join(os.TempDir(), "protoraft-grains")
	var voters []cluster.Peer
	for i := 1; i <= 3; i++ {
		voters = append(voters, cluster.Peer{ID: fmt.Sprintf("v%d", i), Address: fmt.Sprintf("127.0.0.1:%d", basePort+i-1)})
	}
	provider, err := protocluster.New(protocluster.Config{
		Voters:  voters,
		DataDir: dir,
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
		remote.Configure("127.0.0.1", basePort+member-1, remote.WithEndpointWriterQueueSize(4096)),
		clustering.WithKinds(clustering.NewKind("counter", actor.PropsFromProducer(func() actor.Actor { return &counter{} }))))
	c := clustering.New(system, cfg)
	c.StartMember()
	fmt.Printf("member %d at %s (id %s); voters' logs in %s\n", member, system.Address(), system.ID, dir)

	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("leaving the cluster")
			c.Shutdown(true)
			return nil
		case <-tick.C:
		}
		for i := range 5 {
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
// fencing token and its member.
type counter struct{ n int64 }

// Receive handles the grain's messages.
func (g *counter) Receive(ctx actor.Context) {
	if msg, ok := ctx.Message().(*wrapperspb.Int64Value); ok {
		g.n += msg.Value
		token, _ := protocluster.FencingToken(ctx)
		ctx.Respond(wrapperspb.String(fmt.Sprintf("= %d (token %d on %s)", g.n, token, ctx.ActorSystem().Address())))
	}
}

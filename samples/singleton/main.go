// Command singleton runs a job on exactly one node of a protoraft group:
// the leader. The job gets a fencing token (the Raft term of its
// leadership) and writes it with every entry; the replicated ledger refuses
// entries whose token is older than the newest it has seen, so a job that
// still runs on a deposed leader cannot overwrite its successor's work.
//
//	go run ./samples/singleton
//
// It starts three nodes in one ActorSystem, lets the job tick on the leader,
// moves leadership twice, shows the job following it, and shows a write
// with a stale token refused.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/raftactor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "singleton:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "protoraft-singleton-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}))
	defer system.Shutdown()

	groups, err := startGroups(system, dir, 3)
	if err != nil {
		return err
	}
	defer func() {
		for _, g := range groups {
			_ = g.Stop()
		}
	}()
	client := cluster.NewClient(system, "jobs", peersOf(groups))

	var singletons []*Singleton
	for _, g := range groups {
		node := g.Self().ID
		singletons = append(singletons, StartSingleton(system, g, tickJob(client, node)))
	}
	defer func() {
		for _, s := range singletons {
			s.Stop()
		}
	}()

	for round := 0; round < 3; round++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		if round < 2 {
			lr, err := client.Leader(ctx)
			if err != nil {
				return err
			}
			fmt.Printf("moving leadership away from %s\n", lr.GetLeader().GetId())
			if _, err := client.TransferLeadership(ctx, ""); err != nil {
				return err
			}
		}
	}

	// A write with the first term's token is refused now.
	resp, err := client.Write(ctx, encodeCommand(1, "late write from a deposed leader"))
	if err != nil {
		return err
	}
	r, _ := decodeResult(resp.Result)
	fmt.Printf("stale token 1: ok=%v (%s)\n", r.OK, r.Error)

	rr, err := client.Read(ctx, nil)
	if err != nil {
		return err
	}
	fmt.Printf("ledger: %s\n", rr.Result)
	return nil
}

// tickJob appends an entry every 200ms until its leadership ends or the
// ledger refuses its token.
func tickJob(client *cluster.Client, node string) Job {
	return func(ctx context.Context, token uint64) {
		fmt.Printf("job started on %s with token %d\n", node, token)
		defer fmt.Printf("job stopped on %s (token %d)\n", node, token)
		for i := 1; ; i++ {
			resp, err := client.Write(ctx, encodeCommand(token, fmt.Sprintf("tick %d from %s", i, node)))
			if err != nil {
				return
			}
			if r, err := decodeResult(resp.Result); err != nil || !r.OK {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

func startGroups(system *actor.ActorSystem, dir string, n int) ([]*cluster.Group, error) {
	var peers []cluster.Peer
	for i := 1; i <= n; i++ {
		peers = append(peers, cluster.Peer{ID: fmt.Sprintf("n%d", i), Address: actors.LocalSystemAddress})
	}
	var groups []*cluster.Group
	for _, p := range peers {
		g, err := cluster.Spawn(system, cluster.Config{
			Node: raftactor.Config{
				Group:           "jobs",
				ID:              p.ID,
				DataDir:         filepath.Join(dir, p.ID),
				NewStateMachine: func() raftactor.StateMachine { return &ledger{} },
				Timeouts: raftactor.Timeouts{
					Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond, LeaderLease: 100 * time.Millisecond,
				},
			},
			Bootstrap: peers,
		})
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
	}
	return groups, nil
}

func peersOf(groups []*cluster.Group) []cluster.Peer {
	var peers []cluster.Peer
	for _, g := range groups {
		peers = append(peers, g.Self())
	}
	return peers
}

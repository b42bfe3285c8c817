package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// A one-node group: spawn it, wait for it to lead, write through its front
// door and read the value back.
func ExampleSpawn() {
	dir, err := os.MkdirTemp("", "protoraft-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	system := actor.NewActorSystem()
	defer system.Shutdown()

	g, err := cluster.Spawn(system, cluster.Config{
		Node: raftactor.Config{
			Group:           "demo",
			ID:              "n1",
			DataDir:         filepath.Join(dir, "n1"),
			NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
		},
		// The first node of a group bootstraps it; restarting it with the
		// same list later is harmless.
		Bootstrap: []cluster.Peer{{ID: "n1", Address: system.Address()}},
	})
	if err != nil {
		panic(err)
	}
	defer g.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leader, err := g.WaitLeader(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("leader:", leader.Id)

	// Every operation is a message to the front door with a typed reply;
	// err is protoactor's (timeout, dead letter), GetError() protoraft's.
	res, err := system.Root.RequestFuture(g.FrontDoor(), &actors.WriteRequest{
		Meta:    actors.NewMeta(2 * time.Second),
		Command: kvstore.Put("greeting", []byte("hello")),
	}, 3*time.Second).Result()
	if err != nil {
		panic(err)
	}
	if err := res.(*actors.WriteResponse).GetError().Err(); err != nil {
		panic(err)
	}

	res, err = system.Root.RequestFuture(g.FrontDoor(), &actors.ReadRequest{
		Meta:        actors.NewMeta(2 * time.Second),
		Query:       kvstore.Get("greeting"),
		Consistency: actors.Consistency_LINEARIZABLE,
	}, 3*time.Second).Result()
	if err != nil {
		panic(err)
	}
	rr := res.(*actors.ReadResponse)
	if err := rr.GetError().Err(); err != nil {
		panic(err)
	}
	qr, err := kvstore.DecodeQueryResult(rr.Result)
	if err != nil {
		panic(err)
	}
	fmt.Println("greeting:", string(qr.Value))
	// Output:
	// leader: n1
	// greeting: hello
}

// Growing a group and shrinking it again: n2 starts empty and joins
// through n1 (added as a non-voter, promoted once caught up), then leaves.
func ExampleGroup_Join() {
	dir, err := os.MkdirTemp("", "protoraft-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	system := actor.NewActorSystem()
	defer system.Shutdown()

	config := func(id string, bootstrap []cluster.Peer) cluster.Config {
		return cluster.Config{
			Node: raftactor.Config{
				Group:           "demo",
				ID:              id,
				DataDir:         filepath.Join(dir, id),
				NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
			},
			Bootstrap: bootstrap,
		}
	}
	n1, err := cluster.Spawn(system, config("n1", []cluster.Peer{{ID: "n1", Address: system.Address()}}))
	if err != nil {
		panic(err)
	}
	defer n1.Stop()
	// No Bootstrap: n2 waits, empty, until a member adds it.
	n2, err := cluster.Spawn(system, config("n2", nil))
	if err != nil {
		panic(err)
	}
	defer n2.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n2.Join(ctx, n1.Self()); err != nil {
		panic(err)
	}
	printMembers(system, n1, "after join:")

	if err := n2.Leave(ctx); err != nil {
		panic(err)
	}
	printMembers(system, n1, "after leave:")
	// Output:
	// after join: n1 VOTER, n2 VOTER
	// after leave: n1 VOTER
}

// printMembers prints the group's configuration as g's node knows it.
func printMembers(system *actor.ActorSystem, g *cluster.Group, title string) {
	res, err := system.Root.RequestFuture(g.FrontDoor(), &actors.MembersRequest{Meta: actors.NewMeta(2 * time.Second)}, 3*time.Second).Result()
	if err != nil {
		panic(err)
	}
	fmt.Print(title)
	for i, m := range res.(*actors.MembersResponse).Members {
		if i > 0 {
			fmt.Print(",")
		}
		fmt.Printf(" %s %s", m.Id, m.Suffrage)
	}
	fmt.Println()
}

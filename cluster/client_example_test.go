package cluster_test

import (
	"context"
	"errors"
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

// A Client writes to and reads from a three-node group without being told
// which node leads, and reports refusals as typed errors.
func ExampleClient() {
	dir, err := os.MkdirTemp("", "protoraft-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	system := actor.NewActorSystem()
	defer system.Shutdown()

	members := []cluster.Peer{
		{ID: "n1", Address: system.Address()},
		{ID: "n2", Address: system.Address()},
		{ID: "n3", Address: system.Address()},
	}
	for _, m := range members {
		g, err := cluster.Spawn(system, cluster.Config{
			Node: raftactor.Config{
				Group:           "demo",
				ID:              m.ID,
				DataDir:         filepath.Join(dir, m.ID),
				NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
			},
			Bootstrap: members,
		})
		if err != nil {
			panic(err)
		}
		defer g.Stop()
	}

	// One Client per program and group, shared by every goroutine; call it
	// from goroutines, never from inside an actor's Receive.
	client := cluster.NewClient(system, "demo", members)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The first write waits out the election, finds the leader and is
	// applied exactly once, however often it had to be retried.
	w, err := client.Write(ctx, kvstore.Put("greeting", []byte("hello")))
	if err != nil {
		panic(err)
	}
	fmt.Println("written:", w.Index > 0)

	r, err := client.Read(ctx, kvstore.Get("greeting")) // linearizable
	if err != nil {
		panic(err)
	}
	q, err := kvstore.DecodeQueryResult(r.Result)
	if err != nil {
		panic(err)
	}
	fmt.Println("greeting:", string(q.Value))

	// Errors are *actors.Error: branch on the code.
	_, err = client.Remove(ctx, "no such node")
	var ae *actors.Error
	if errors.As(err, &ae) {
		fmt.Println("remove:", ae.Code, ae.Field)
	}
	// Output:
	// written: true
	// greeting: hello
	// remove: INVALID_ARGUMENT id
}

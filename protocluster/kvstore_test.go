package protocluster_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	clustering "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/cluster_test_tool"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/protocluster"
)

func stringStore(c *clustering.Cluster) *protocluster.KeyValueStore[*wrapperspb.StringValue] {
	return protocluster.NewKeyValueStore(c, "test", protocluster.ProtoCodec(func() *wrapperspb.StringValue { return &wrapperspb.StringValue{} }))
}

// TestKeyValueStoreIsOneStoreForAllMembers: a value set through one
// member is read through every other as soon as Set returned (Get is
// linearizable); a later Set replaces it and Clear removes it; a key never
// set reads as the zero value, as protoactor's stores answer.
func TestKeyValueStoreIsOneStoreForAllMembers(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("several protoactor remotes in one process race inside protoactor")
	}
	t.Parallel()
	w := newWorld(t, 4, true)
	ms := w.fixture.GetMembers()
	waitTopology(t, ms, 4)
	ctx := context.Background()
	if v, err := stringStore(ms[1]).Get(ctx, "absent"); err != nil || v != nil {
		t.Fatalf("a key never set: %v, %v", v, err)
	}
	for i, c := range ms {
		want := c.ActorSystem.Address()
		if err := stringStore(c).Set(ctx, "k", wrapperspb.String(want)); err != nil {
			t.Fatalf("set through member %d: %v", i, err)
		}
		for j, o := range ms {
			v, err := stringStore(o).Get(ctx, "k")
			if err != nil || v.GetValue() != want {
				t.Fatalf("get through member %d after a set through %d: %v, %v; want %q", j, i, v, err, want)
			}
		}
	}
	// Namespaces are separate.
	other := protocluster.NewKeyValueStore(ms[0], "other", protocluster.ProtoCodec(func() *wrapperspb.StringValue { return &wrapperspb.StringValue{} }))
	if v, err := other.Get(ctx, "k"); err != nil || v != nil {
		t.Fatalf("another namespace sees %v, %v", v, err)
	}
	if err := stringStore(ms[2]).Clear(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if v, err := stringStore(ms[3]).Get(ctx, "k"); err != nil || v != nil {
		t.Fatalf("after Clear: %v, %v", v, err)
	}
	if err := stringStore(ms[0]).Set(ctx, "big", wrapperspb.String(string(make([]byte, protocluster.MaxValueSize+1)))); err == nil {
		t.Fatal("a value over MaxValueSize was stored")
	}
}

// TestTopicKindKeepsSubscribersAcrossActivations: with TopicKind, a topic
// actor that stops and starts again (a new activation, a new token) finds
// its subscribers in the group and delivers to them; protoactor's default
// topic kind would start with none.
func TestTopicKindKeepsSubscribersAcrossActivations(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("several protoactor remotes in one process race inside protoactor")
	}
	t.Parallel()
	w := newWorld(t, 4, true)
	ms := w.fixture.GetMembers()
	waitTopology(t, ms, 4)
	const topic = "kept-subscribers"
	var delivered atomic.Int64
	member := ms[0]
	pid := member.ActorSystem.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*cluster_test_tool.DataPublished); ok {
			delivered.Add(1)
		}
	}))
	if _, err := member.SubscribeByPid(topic, pid); err != nil {
		t.Fatalf("SubscribeByPid: %v", err)
	}
	publish := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := member.Publisher().Publish(ctx, topic, &cluster_test_tool.DataPublished{Data: 1}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	publish()
	testutil.Eventually(t, "the first message delivered", func() bool { return delivered.Load() == 1 })
	old := member.Get(topic, clustering.TopicActorKind)
	oldToken, _ := protocluster.FencingTokenOf(old)
	member.ActorSystem.Root.Stop(old)
	testutil.Eventually(t, "a new topic activation", func() bool {
		next := member.Get(topic, clustering.TopicActorKind)
		token, _ := protocluster.FencingTokenOf(next)
		return next != nil && token > oldToken
	})
	publish()
	testutil.Eventually(t, "the second message delivered by the new activation", func() bool { return delivered.Load() == 2 })
}

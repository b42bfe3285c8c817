package protocluster_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	clustering "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/cluster_test_tool"

	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/protocluster"
)

// The tests below are protoactor-go's own pub-sub cluster tests
// (cluster_test_tool: pubsub_default_registration_test.go and the suite in
// pubsub_test.go, which upstream keeps commented out), ported as they are
// onto its PubSubClusterFixture with this package's provider and lookup:
// topics and subscribers are grains, so every publish goes through Get.
// TestWillExpireTopicActorAfterIdle waits for the new topic PID by polling
// where upstream sleeps five seconds. pubsub_member_test.go's member-leave
// test, which upstream keeps commented out ("TODO: fix this"), runs here
// as TestPubSubWhenMemberLeavesPidSubscribersGetRemoved. Not ported:
// TestUnsubscribedActorDoesNotReceiveMessages and TestCanUnsubscribeWithPid
// assert an absence by sleeping a second, which this repository's tests do
// not do; the slow-subscriber and batching-producer-queue tests exercise
// pub-sub timing rather than the provider.

// pubsubFixture is protoactor's PubSubClusterFixture of size members (all
// of them voters, at most three) on protocluster.
func pubsubFixture(t *testing.T, size int, defaultTopics bool) *cluster_test_tool.PubSubClusterFixture {
	if testutil.RaceEnabled {
		t.Skip("several protoactor remotes in one process race inside protoactor")
	}
	t.Parallel()
	enterWorld()
	var providers []*protocluster.Provider
	opts := raftOptions(t, min(size, 3), faults.NewNetwork(1), func(p *protocluster.Provider) { providers = append(providers, p) },
		func(c *clustering.Config) {
			// What the pub-sub fixture's own configure sets, which ours
			// replaces.
			clustering.WithRequestTimeout(time.Second)(c)
			clustering.WithPubSubSubscriberTimeout(2 * time.Second)(c)
		})
	f := cluster_test_tool.NewPubSubClusterFixture(t, size, defaultTopics, opts...)
	f.Initialize()
	t.Cleanup(func() {
		for _, c := range f.GetMembers() {
			_ = c.Config.ClusterProvider.Shutdown(false)
			c.IdentityLookup.Shutdown()
			c.Shutdown(false)
		}
		leaveWorld(t)
	})
	waitTopology(t, f.GetMembers(), size)
	return f
}

func publishAll(t *testing.T, f *cluster_test_tool.PubSubClusterFixture, topic string, n int) {
	for i := range n {
		data, err := f.PublishData(topic, i)
		if err != nil || data == nil {
			t.Fatalf("message %d: %v, %v", i, data, err)
		}
	}
}

func TestPubSubWorksWithDefaultTopicRegistration(t *testing.T) {
	f := pubsubFixture(t, 1, true)
	ids := f.SubscriberIds("topic-default", 20)
	const topic = "topic-default-registration"
	f.SubscribeAllTo(topic, ids)
	publishAll(t, f, topic, 100)
	f.VerifyAllSubscribersGotAllTheData(ids, 100)
}

func TestPubSubCanDeliverSingleMessages(t *testing.T) {
	f := pubsubFixture(t, 3, false)
	ids := f.SubscriberIds("single-test", 20)
	const topic = "single-test-topic"
	f.SubscribeAllTo(topic, ids)
	publishAll(t, f, topic, 100)
	f.VerifyAllSubscribersGotAllTheData(ids, 100)
}

func TestPubSubCanDeliverMessageBatches(t *testing.T) {
	f := pubsubFixture(t, 3, false)
	ids := f.SubscriberIds("batch-test", 20)
	const topic = "batch-test-topic"
	f.SubscribeAllTo(topic, ids)
	for i := range 10 {
		data := make([]int, 10)
		for j := range data {
			data[j] = i*10 + j
		}
		batch, err := f.PublishDataBatch(topic, data)
		if err != nil || batch == nil {
			t.Fatalf("batch %s: %v, %v", strconv.Itoa(i), batch, err)
		}
	}
	f.VerifyAllSubscribersGotAllTheData(ids, 100)
}

func TestPubSubCanSubscribeWithPid(t *testing.T) {
	f := pubsubFixture(t, 3, false)
	const topic = "pid-subscribe"
	var delivered atomic.Int64
	member := f.GetMembers()[0]
	pid := member.ActorSystem.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if msg, ok := ctx.Message().(*cluster_test_tool.DataPublished); ok {
			delivered.Store(int64(msg.Data) + 100)
		}
	}))
	if _, err := member.SubscribeByPid(topic, pid); err != nil {
		t.Fatalf("SubscribeByPid: %v", err)
	}
	if _, err := f.PublishData(topic, 1); err != nil {
		t.Fatalf("PublishData: %v", err)
	}
	testutil.Eventually(t, "the message delivered", func() bool { return delivered.Load() == 101 })
}

// TestPubSubWillExpireTopicActorAfterIdle: a topic actor that stops when
// idle releases its activation, and the next Get starts a new one, with a
// new token and so a new PID.
func TestPubSubWillExpireTopicActorAfterIdle(t *testing.T) {
	f := pubsubFixture(t, 3, false)
	ids := f.SubscriberIds("batching-producer-idl-test", 20)
	const topic = "batching-producer"
	f.SubscribeAllTo(topic, ids)
	first := f.GetMembers()[0]
	producer := first.BatchingProducer(topic, clustering.WithBatchingProducerPublisherIdleTimeout(2*time.Second))
	defer producer.Dispose()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := producer.Produce(context.Background(), &cluster_test_tool.DataPublished{Data: int32(i)}); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d produces failed", failed.Load())
	}
	pid := first.Get(topic, clustering.TopicActorKind)
	if pid == nil {
		t.Fatal("no topic actor")
	}
	testutil.Eventually(t, "a new topic actor after idle", func() bool {
		next := first.Get(topic, clustering.TopicActorKind)
		return next != nil && next.String() != pid.String()
	})
}

// TestPubSubWhenMemberLeavesPidSubscribersGetRemoved is upstream's
// member-leave test: PID subscribers on two members and twenty virtual
// ones; once a member leaves gracefully, the others block it, the next
// publish reaches every subscriber but the one that left, and the topic
// drops it from its subscribers.
func TestPubSubWhenMemberLeavesPidSubscribersGetRemoved(t *testing.T) {
	f := pubsubFixture(t, 3, false)
	const topic = "leaving-member"
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		if msg, ok := ctx.Message().(*cluster_test_tool.DataPublished); ok {
			f.AppendDelivery(cluster_test_tool.Delivery{Identity: ctx.Self().String(), Data: int(msg.Data)})
		}
	})
	members := f.GetMembers()
	leaving, staying := members[0], members[len(members)-1]
	leavingPid := leaving.ActorSystem.Root.Spawn(props)
	stayingPid := staying.ActorSystem.Root.Spawn(props)
	if _, err := leaving.SubscribeByPid(topic, leavingPid); err != nil {
		t.Fatalf("SubscribeByPid on the leaving member: %v", err)
	}
	if _, err := staying.SubscribeByPid(topic, stayingPid); err != nil {
		t.Fatalf("SubscribeByPid on the staying member: %v", err)
	}
	ids := f.SubscriberIds("leaving", 20)
	f.SubscribeAllTo(topic, ids)
	deliveries := func() int {
		f.DeliveriesLock.RLock()
		defer f.DeliveriesLock.RUnlock()
		return len(f.Deliveries)
	}
	if _, err := f.PublishData(topic, 1); err != nil {
		t.Fatalf("PublishData: %v", err)
	}
	testutil.Eventually(t, "every subscriber got the first message", func() bool { return deliveries() == len(ids)+2 })

	f.RemoveNode(leaving, true)
	testutil.Eventually(t, "the member that left is blocked by the others", func() bool {
		for _, m := range f.GetMembers() {
			if m.Remote.BlockList().Len() != 1 {
				return false
			}
		}
		return true
	})
	f.ClearDeliveries()
	// The delivery to the member that left fails, which makes the topic
	// drop its subscriber.
	if _, err := f.PublishData(topic, 2); err != nil {
		t.Fatalf("PublishData after the member left: %v", err)
	}
	testutil.Eventually(t, "every subscriber but the one that left got the next message", func() bool { return deliveries() == len(ids)+1 })
	testutil.Eventually(t, "the subscriber that left is dropped from the topic", func() bool {
		subs, err := f.GetSubscribersForTopic(topic)
		if err != nil {
			return false
		}
		for _, s := range subs.Subscribers {
			if p := s.GetPid(); p != nil && p.Address == leavingPid.Address && p.Id == leavingPid.Id {
				return false
			}
		}
		return true
	})
}

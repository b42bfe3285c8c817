package protocluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	clustering "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
)

// ErrNoProvider means the cluster does not use this package's Provider,
// or its Provider has not started.
var ErrNoProvider = errors.New("protocluster: the cluster does not run a started protocluster Provider")

// Codec turns a KeyValueStore's values into bytes and back.
type Codec[T any] struct {
	Marshal   func(T) ([]byte, error)
	Unmarshal func([]byte) (T, error)
}

// ProtoCodec is the Codec of a protobuf message type; empty returns a new,
// empty message to decode into.
func ProtoCodec[T proto.Message](empty func() T) Codec[T] {
	return Codec[T]{
		Marshal: func(v T) ([]byte, error) { return proto.MarshalOptions{Deterministic: true}.Marshal(v) },
		Unmarshal: func(b []byte) (T, error) {
			v := empty()
			err := proto.Unmarshal(b, v)
			return v, err
		},
	}
}

// KeyValueStore is protoactor's cluster.KeyValueStore kept in the table's
// key-value space: Set and Clear are Raft writes (exactly once, through
// the member's client), Get is a linearizable read, so a value set on one
// member is read on every other once Set returned. Keys live under the
// store's namespace; a value is at most MaxValueSize bytes encoded. A key
// never set (or cleared) reads as T's zero value with no error, as
// protoactor's own stores answer.
//
// Each call waits for the group, at most the Provider's CallTimeout when
// ctx has no earlier deadline. protoactor's pub-sub topic actor (TopicKind)
// calls the store inside its Receive, so a subscription waits in the
// topic's mailbox for its commit: that is protoactor's design, bounded
// here by the call timeout.
type KeyValueStore[T any] struct {
	c         *clustering.Cluster
	namespace string
	codec     Codec[T]
}

var _ clustering.KeyValueStore[*clustering.Subscribers] = (*KeyValueStore[*clustering.Subscribers])(nil)

// NewKeyValueStore returns the store of namespace on cluster c, which must
// use this package's Provider. It may be made before c starts; its calls
// fail with ErrNoProvider until then.
func NewKeyValueStore[T any](c *clustering.Cluster, namespace string, codec Codec[T]) *KeyValueStore[T] {
	return &KeyValueStore[T]{c: c, namespace: namespace, codec: codec}
}

func (s *KeyValueStore[T]) provider() (*Provider, error) {
	p, ok := s.c.Config.ClusterProvider.(*Provider)
	if !ok || !p.started.Load() {
		return nil, ErrNoProvider
	}
	return p, nil
}

func (s *KeyValueStore[T]) key(k string) string { return s.namespace + "/" + k }

// bounded gives ctx the Provider's call timeout unless it ends sooner.
func bounded(ctx context.Context, p *Provider) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.cfg.CallTimeout)
}

// Set stores value under key, replacing any value it had.
func (s *KeyValueStore[T]) Set(ctx context.Context, key string, value T) error {
	p, err := s.provider()
	if err != nil {
		return err
	}
	b, err := s.codec.Marshal(value)
	if err != nil {
		return fmt.Errorf("protocluster: encoding the value of %q: %w", key, err)
	}
	ctx, cancel := bounded(ctx, p)
	defer cancel()
	return s.apply(ctx, p, key, &Command{Op: &Command_KvSet{KvSet: &KVSet{Key: s.key(key), Value: b}}})
}

// Clear removes key.
func (s *KeyValueStore[T]) Clear(ctx context.Context, key string) error {
	p, err := s.provider()
	if err != nil {
		return err
	}
	ctx, cancel := bounded(ctx, p)
	defer cancel()
	return s.apply(ctx, p, key, &Command{Op: &Command_KvClear{KvClear: &KVClear{Key: s.key(key)}}})
}

func (s *KeyValueStore[T]) apply(ctx context.Context, p *Provider, key string, cmd *Command) error {
	res, err := p.write(ctx, cmd)
	if err != nil {
		return fmt.Errorf("protocluster: key %q: %w", key, err)
	}
	if !res.GetOk() {
		return fmt.Errorf("protocluster: key %q: %s", key, res.GetError())
	}
	return nil
}

// Get reads key's value, linearizably: it reflects every Set and Clear
// that returned before Get was called.
func (s *KeyValueStore[T]) Get(ctx context.Context, key string) (T, error) {
	var zero T
	p, err := s.provider()
	if err != nil {
		return zero, err
	}
	ctx, cancel := bounded(ctx, p)
	defer cancel()
	qr, err := p.read(ctx, &Query{Q: &Query_KvGet{KvGet: &KVGet{Key: s.key(key)}}}, actors.Consistency_LINEARIZABLE)
	if err != nil {
		return zero, fmt.Errorf("protocluster: key %q: %w", key, err)
	}
	if !qr.GetKvFound() {
		return zero, nil
	}
	v, err := s.codec.Unmarshal(qr.GetKvValue())
	if err != nil {
		return zero, fmt.Errorf("protocluster: decoding the value of %q: %w", key, err)
	}
	return v, nil
}

// TopicNamespace is the namespace TopicKind keeps subscriptions under.
const TopicNamespace = "pubsub-subscribers"

// TopicKind is protoactor's pub-sub topic kind (cluster.TopicActorKind)
// with its subscriptions kept in the group, in a KeyValueStore: a topic
// actor that stops (idle, its member gone) and starts again, anywhere,
// finds its subscribers. Without it protoactor registers the topic kind
// with a store that keeps nothing. Register it among the cluster's kinds
// on every member.
func TopicKind() *clustering.Kind {
	return clustering.NewKind(clustering.TopicActorKind, actor.PropsFromProducerWithActorSystem(func(system *actor.ActorSystem) actor.Actor {
		c := clustering.GetCluster(system)
		store := NewKeyValueStore(c, TopicNamespace, ProtoCodec(func() *clustering.Subscribers { return &clustering.Subscribers{} }))
		return clustering.NewTopicActor(store, c.Logger())
	}))
}

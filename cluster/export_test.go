package cluster

import "github.com/asynkron/protoactor-go/actor"

// WithNodeOptions returns cfg with opts added to the node actor's props, so
// the external tests can inject a panic into the node.
func WithNodeOptions(cfg Config, opts ...actor.PropsOption) Config {
	cfg.NodeOptions = append(cfg.NodeOptions[:len(cfg.NodeOptions):len(cfg.NodeOptions)], opts...)
	return cfg
}

package cluster

import "github.com/asynkron/protoactor-go/actor"

// WithNodeOptions returns cfg with opts added to the node actor's props, so
// the external tests can inject a panic into the node.
func WithNodeOptions(cfg Config, opts ...actor.PropsOption) Config {
	cfg.nodeOptions = append(cfg.nodeOptions[:len(cfg.nodeOptions):len(cfg.nodeOptions)], opts...)
	return cfg
}

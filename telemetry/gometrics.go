package telemetry

import (
	"errors"
	"sync"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// bridge is the go-metrics bridge installed, if any: go-metrics keeps one
// global sink per process, so there can be only one.
var bridge struct {
	sync.Mutex
	reg  prometheus.Registerer
	sink *gmprom.PrometheusSink
}

// ErrBridgeInstalled is returned by BridgeRaftMetrics while a bridge is
// installed.
var ErrBridgeInstalled = errors.New("telemetry: a go-metrics bridge is already installed in this process")

// BridgeRaftMetrics carries hashicorp/raft's own metrics (commit and apply
// times, replication RPCs, ...) into reg, named protoraft_raft_*. It is
// opt-in because hashicorp/raft reports through go-metrics' process-wide
// global sink: installing the bridge replaces that global for the whole
// process, every Raft instance and any other hashicorp library included,
// and the series carry no group or node label (go-metrics does not know
// which Raft instance reports). Call it once, at program start; stop puts
// a sink that drops everything back and unregisters the bridge. No
// goroutine is started (go-metrics' runtime statistics are off).
//
// raftactor sets raft.Config.NoLegacyTelemetry, so only raft's current
// metric names are emitted. They keep go-metrics' camelCase
// (protoraft_raft_commitTime), which `promtool check metrics` flags; the
// protoraft_* collectors of this package are the conventional ones.
func BridgeRaftMetrics(reg prometheus.Registerer) (stop func(), err error) {
	if reg == nil {
		return nil, errors.New("telemetry: BridgeRaftMetrics needs a registry; it never uses Prometheus' global one")
	}
	bridge.Lock()
	defer bridge.Unlock()
	if bridge.sink != nil {
		return nil, ErrBridgeInstalled
	}
	wrapped := prometheus.WrapRegistererWithPrefix(namespace+"_", reg)
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
		Name:       "go_metrics_bridge",
		Expiration: gmprom.DefaultPrometheusOpts.Expiration,
		Registerer: wrapped,
	})
	if err != nil {
		return nil, err
	}
	if _, err := gometrics.NewGlobal(bridgeConfig(), sink); err != nil {
		wrapped.Unregister(sink)
		return nil, err
	}
	bridge.reg, bridge.sink = wrapped, sink
	return func() {
		bridge.Lock()
		defer bridge.Unlock()
		if bridge.sink != sink {
			return
		}
		_, _ = gometrics.NewGlobal(bridgeConfig(), &gometrics.BlackholeSink{})
		bridge.reg.Unregister(sink)
		bridge.reg, bridge.sink = nil, nil
	}, nil
}

func bridgeConfig() *gometrics.Config {
	c := gometrics.DefaultConfig("")
	// DefaultConfig's runtime statistics run on a goroutine that never
	// exits; the hostname would be a label of no use here.
	c.EnableRuntimeMetrics = false
	c.EnableHostname = false
	c.EnableHostnameLabel = false
	c.EnableServiceLabel = false
	return c
}

package telemetry_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/telemetry"
)

func TestBridgeRaftMetricsIsOptInAndRemovable(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	if _, err := telemetry.BridgeRaftMetrics(nil); err == nil {
		t.Fatal("a nil registry was accepted")
	}
	bridged := prometheus.NewRegistry()
	stop, err := telemetry.BridgeRaftMetrics(bridged)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, err := telemetry.BridgeRaftMetrics(prometheus.NewRegistry()); !errors.Is(err, telemetry.ErrBridgeInstalled) {
		t.Fatalf("second bridge: %v", err)
	}
	h := newHarness(t, 1)
	h.put("k", "v")
	raftFamilies := func() int {
		mfs, err := bridged.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "protoraft_raft_") {
				n++
			}
		}
		return n
	}
	testutil.Eventually(t, "hashicorp/raft's metrics in the bridged registry", func() bool { return raftFamilies() > 0 })
	// Nothing of go-metrics reaches the group's own registry.
	mfs, _ := h.reg.Gather()
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "protoraft_raft_") {
			t.Fatalf("%s landed in the group's registry", mf.GetName())
		}
	}
	stop()
	if n := raftFamilies(); n != 0 {
		t.Fatalf("%d bridged families left after stop", n)
	}
	again, err := telemetry.BridgeRaftMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("bridge after stop: %v", err)
	}
	again()
}

package telemetry_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/telemetry"
)

// A node whose log store fails is unhealthy and says why, however well
// connected it is; once a write succeeds again it is not, and the failure
// is still counted.
func TestJudgeLogStoreFailure(t *testing.T) {
	cfg := telemetry.Config{}
	now := time.Now()
	s := status("n1", "Follower", "n2", 10*time.Millisecond, now, "n1", "n2", "n3")
	p := telemetry.Poll{At: now, Self: s, LogStoreFailure: "log store write failed: no space left on device", LastStorageError: now}
	hr := telemetry.Judge(cfg, p, now)
	if hr.Status != actors.HealthStatus_UNHEALTHY || hr.Score != 0 || !hasReason(hr, "log store write failed: no space left on device") {
		t.Fatalf("failing log store: %v score %d %v", hr.Status, hr.Score, hr.Reasons)
	}
	p.LogStoreFailure = ""
	hr = telemetry.Judge(cfg, p, now)
	if hr.Status == actors.HealthStatus_UNHEALTHY || hasReason(hr, "log store write failed") || !hasReason(hr, "storage error") {
		t.Fatalf("recovered log store: %v %v", hr.Status, hr.Reasons)
	}
}

// In a running group, a follower whose disk is full reports it in its
// health and in the storage error counter, and stops reporting it once
// space returns and it catches up.
func TestHealthSaysTheDiskIsFull(t *testing.T) {
	disks := map[string]*faults.Disk{}
	h := newHarnessWith(t, 3, func(cfg *cluster.Config) {
		d := faults.NewDisk()
		disks[cfg.Node.ID] = d
		cfg.Node.Disk = d
	})
	lid := h.leader().Self().ID
	f := others(h, lid)[0]
	disks[f].FailWrites(syscall.ENOSPC)
	h.put("k", "v")
	testutil.Eventually(t, f+" unhealthy for its full disk", func() bool {
		hr := h.health(f)
		return hr.Status == actors.HealthStatus_UNHEALTHY && hasReason(hr, "log store write failed: no space left on device")
	})
	if v := value(t, h.reg, "protoraft_storage_errors_total", labels("group", "g", "node", f, "op", "log_write")); v == 0 {
		t.Fatal("no log_write storage error counted")
	}
	disks[f].Heal()
	h.put("k2", "v2")
	testutil.Eventually(t, f+" no longer reports the full disk", func() bool {
		hr := h.health(f)
		return hr.Status != actors.HealthStatus_UNHEALTHY && !hasReason(hr, "log store write failed")
	})
}

package raftactor_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/raftactor"
)

// A follower that was down while the leader compacted its log past the
// follower's last entry catches up by a snapshot install, and then takes
// appends again. raft-wal only appends right after its last entry, so
// after the install Raft must empty the follower's log, which it does
// only for a log store that says it is monotonic: a store wrapper that
// hid raft-wal's IsMonotonic left the old tail in place, every append
// after the snapshot failed ("non-monotonic log entries"), and the leader
// sent the snapshot again, forever.
func TestFollowerTakesAppendsAfterASnapshotInstall(t *testing.T) {
	c := grouptest.New(t, 3, func(cfg *raftactor.Config) {
		// Few trailing logs, so one leader snapshot compacts past the
		// follower's tail, and no automatic snapshots to race with.
		cfg.Timeouts.TrailingLogs = 8
		cfg.Timeouts.SnapshotThreshold = 1 << 20
		cfg.Timeouts.SnapshotInterval = time.Hour
	})
	leader := c.WaitLeader()
	f := otherThan(c, leader)
	for i := 0; i < 40; i++ {
		c.Put(fmt.Sprint("before-", i), "v")
	}
	c.WaitValue(f, "before-39", "v")
	c.Stop(f)

	// Values large enough to fill several log segments, so the leader's
	// compaction deletes whole segment files: raft-wal still serves
	// compacted entries of the segment it writes to.
	big := strings.Repeat("v", 16<<10)
	for i := 0; i < 40; i++ {
		c.Put(fmt.Sprint("while-down-", i), big)
	}
	// Both nodes that ran compact, so whichever leads when the follower
	// returns has no entry left to send it but the snapshot.
	for _, id := range c.Running() {
		if sr := c.MustAsk(id, &actors.SnapshotRequest{Meta: grouptest.Meta(5 * time.Second)}).(*actors.SnapshotResponse); sr.Error.Err() != nil {
			t.Fatalf("snapshot on %s: %v", id, sr.Error)
		}
	}
	// More entries after the snapshot: they reach the follower only as
	// appends, once it installed the snapshot.
	for i := 0; i < 20; i++ {
		c.Put(fmt.Sprint("after-", i), "v")
	}

	c.Start(f)
	c.WaitValue(f, "while-down-39", big)
	c.WaitValue(f, "after-19", "v")
	c.Put("last", "v")
	c.WaitValue(f, "last", "v")
	// Checked last: Raft records the installed snapshot only after the
	// state machine shows its values.
	if got := c.Status(f).GetLastSnapshotIndex(); got == 0 {
		t.Fatalf("%s caught up without a snapshot install: the test no longer covers it", f)
	}
}

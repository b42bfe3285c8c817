package integration

import (
	"context"
	"time"
)

// upgrader is a carrier whose nodes can move from the build they started on
// to a later one, one at a time, as an operator upgrades a group.
type upgrader interface {
	// outdated are the nodes that still run the earlier build, sorted;
	// none when the carrier was given no later build.
	outdated() []string
	// upgrade stops id gracefully and starts it on the later build, from
	// its data directory.
	upgrade(ctx context.Context, id string) error
}

// upgradeCatchUp bounds the wait for an upgraded node to reach the
// leader's commit index.
const upgradeCatchUp = 20 * time.Second

// upgrade moves one outdated node to the later build: a follower while
// there is one, the leader last, as the runbook says (the leader's
// graceful stop hands leadership over, which is one election more).
func (n *nemesis) upgrade(ctx context.Context, i int, leader string) {
	out := n.upgrades.outdated()
	if len(out) == 0 {
		n.event(i, KindUpgrade, "skipped: every node runs the later build")
		return
	}
	victim := out[0]
	for _, id := range out {
		if id != leader {
			victim = id
			break
		}
	}
	err := n.upgrades.upgrade(ctx, victim)
	n.count(KindUpgrade)
	n.event(i, KindUpgrade, "upgraded %s: %s", victim, errText(err))
	if err != nil {
		return
	}
	n.awaitCaughtUp(ctx, i, victim)
}

// awaitCaughtUp waits until id has applied what the leader had committed
// when it came back, within upgradeCatchUp: the next node is upgraded only
// once this one could stand in for it. A node that does not catch up is a
// violation: builds that cannot replicate to each other cannot be
// upgraded one node at a time.
func (n *nemesis) awaitCaughtUp(ctx context.Context, i int, id string) {
	ctx, cancel := context.WithTimeout(ctx, upgradeCatchUp)
	defer cancel()
	var target uint64
	for ctx.Err() == nil {
		if target == 0 {
			if l := leaderOf(ctx, n.c); l != "" {
				if st, err := n.c.status(ctx, l); err == nil {
					target = st.GetCommitIndex()
				}
			}
		}
		if target != 0 {
			if st, err := n.c.status(ctx, id); err == nil && st.GetAppliedIndex() >= target {
				n.event(i, KindUpgrade, "%s caught up to %d", id, st.GetAppliedIndex())
				return
			}
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
	n.violation("upgrade: %s on the later build did not catch up to the leader's commit index %d within %v", id, target, upgradeCatchUp)
	n.event(i, KindUpgrade, "%s did not catch up to %d within %v", id, target, upgradeCatchUp)
}

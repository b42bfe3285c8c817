package raftactor

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/protoraft/protoraft/actors"
)

// currentTimeouts reads the reloadable settings from Raft itself, so status
// shows what is in force, not what was asked for.
func (n *Node) currentTimeouts() Timeouts {
	t := n.keep.getTimeouts()
	rc := n.run.raft.ReloadableConfig()
	t.Heartbeat, t.Election = rc.HeartbeatTimeout, rc.ElectionTimeout
	t.SnapshotInterval, t.SnapshotThreshold, t.TrailingLogs = rc.SnapshotInterval, rc.SnapshotThreshold, rc.TrailingLogs
	return t
}

// updateTimeouts changes timeouts at run time through Raft's ReloadConfig.
// The new set is validated as a whole first; a refused change changes
// nothing. The new values also survive a supervisor restart of the actor.
func (n *Node) updateTimeouts(ctx actor.Context, m *actors.UpdateTimeoutsRequest) {
	cur := n.currentTimeouts()
	next, err := mergeTimeouts(cur, m.GetTimeouts())
	if err == nil {
		err = next.validate("timeouts")
	}
	if err != nil {
		n.respond(ctx, &actors.TimeoutsResponse{Error: err, Timeouts: timeoutsToProto(cur)})
		return
	}
	rerr := n.run.raft.ReloadConfig(raft.ReloadableConfig{
		TrailingLogs:      next.TrailingLogs,
		SnapshotInterval:  next.SnapshotInterval,
		SnapshotThreshold: next.SnapshotThreshold,
		HeartbeatTimeout:  next.Heartbeat,
		ElectionTimeout:   next.Election,
	})
	if rerr != nil {
		n.respond(ctx, &actors.TimeoutsResponse{Error: actors.InvalidArgument("timeouts", "%v", rerr), Timeouts: timeoutsToProto(cur)})
		return
	}
	n.keep.setTimeouts(next)
	// The transport's fail-fast backoff follows the heartbeat.
	n.run.transport.SetHeartbeat(n.run.raft.ReloadableConfig().HeartbeatTimeout)
	n.respond(ctx, &actors.TimeoutsResponse{Timeouts: timeoutsToProto(n.currentTimeouts())})
}

// mergeTimeouts overlays the fields set in p on t. leader_lease and commit
// cannot change while Raft runs, so asking for another value is refused.
func mergeTimeouts(t Timeouts, p *actors.Timeouts) (Timeouts, *actors.Error) {
	if p == nil {
		return t, actors.InvalidArgument("timeouts", "no timeouts given")
	}
	dur := func(field string, d *durationpb.Duration, into *time.Duration) *actors.Error {
		if d == nil {
			return nil
		}
		if err := d.CheckValid(); err != nil {
			return actors.InvalidArgument(field, "%v", err)
		}
		*into = d.AsDuration()
		return nil
	}
	if err := dur("timeouts.heartbeat", p.Heartbeat, &t.Heartbeat); err != nil {
		return t, err
	}
	if err := dur("timeouts.election", p.Election, &t.Election); err != nil {
		return t, err
	}
	if err := dur("timeouts.snapshot_interval", p.SnapshotInterval, &t.SnapshotInterval); err != nil {
		return t, err
	}
	if p.LeaderLease != nil && p.LeaderLease.AsDuration() != t.LeaderLease {
		return t, actors.InvalidArgument("timeouts.leader_lease", "the leader lease is fixed at start (now %v)", t.LeaderLease)
	}
	if p.Commit != nil && p.Commit.AsDuration() != t.Commit {
		return t, actors.InvalidArgument("timeouts.commit", "the commit timeout is fixed at start (now %v)", t.Commit)
	}
	if p.SnapshotThreshold != 0 {
		t.SnapshotThreshold = p.SnapshotThreshold
	}
	if p.TrailingLogs != 0 {
		t.TrailingLogs = p.TrailingLogs
	}
	return t, nil
}

func timeoutsToProto(t Timeouts) *actors.Timeouts {
	return &actors.Timeouts{
		Heartbeat:         durationpb.New(t.Heartbeat),
		Election:          durationpb.New(t.Election),
		LeaderLease:       durationpb.New(t.LeaderLease),
		Commit:            durationpb.New(t.Commit),
		SnapshotInterval:  durationpb.New(t.SnapshotInterval),
		SnapshotThreshold: t.SnapshotThreshold,
		TrailingLogs:      t.TrailingLogs,
	}
}

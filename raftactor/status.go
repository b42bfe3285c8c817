package raftactor

import (
	"errors"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// status reports the node's view of the group, all from Raft's own state.
func (n *Node) status(ctx actor.Context, m *actors.StatusRequest) {
	r, f, snaps := n.run.raft, n.run.fsm, n.run.stores.snaps
	self := &actors.Server{Id: n.cfg.ID, Address: string(n.addr)}
	timeouts := timeoutsToProto(n.currentTimeouts())
	counts := &n.readIndex.counts
	n.async(ctx, m, func(time.Time) actors.Response {
		resp := &actors.StatusResponse{
			ReadConfirmations: counts.proto(),
			Node:              self,
			State:             r.State().String(),
			Term:              r.CurrentTerm(),
			Leader:            leaderOf(r),
			CommitIndex:       r.CommitIndex(),
			AppliedIndex:      f.applied.Load(),
			CommandIndex:      f.lastCommand.Load(),
			LastIndex:         r.LastIndex(),
			Timeouts:          timeouts,
		}
		if r.State() != raft.Leader {
			if lc := r.LastContact(); !lc.IsZero() {
				resp.LastContactUnixNano = lc.UnixNano()
			}
		}
		stats := r.Stats()
		resp.LastSnapshotIndex, _ = strconv.ParseUint(stats["last_snapshot_index"], 10, 64)
		cf := r.GetConfiguration()
		if err := cf.Error(); err != nil {
			resp.Error = raftError(r, err)
			return resp
		}
		resp.Members = serversToProto(cf.Configuration())
		resp.ConfigurationIndex = configurationIndex(f, snaps)
		for _, s := range resp.Members {
			if s.Id == self.Id {
				self.Suffrage = s.Suffrage
			}
		}
		return resp
	})
}

// snapshot takes a snapshot now and names it. With nothing new since the
// last snapshot, it names the last one.
func (n *Node) snapshot(ctx actor.Context, m *actors.SnapshotRequest) {
	r := n.run.raft
	n.async(ctx, m, func(time.Time) actors.Response {
		f := r.Snapshot()
		err := f.Error()
		if errors.Is(err, raft.ErrNothingNewToSnapshot) {
			stats := r.Stats()
			idx, _ := strconv.ParseUint(stats["last_snapshot_index"], 10, 64)
			term, _ := strconv.ParseUint(stats["last_snapshot_term"], 10, 64)
			return &actors.SnapshotResponse{Index: idx, Term: term}
		}
		if err != nil {
			return &actors.SnapshotResponse{Error: raftError(r, err)}
		}
		meta, rc, err := f.Open()
		if err != nil {
			return &actors.SnapshotResponse{Error: actors.Errorf(actors.Code_INTERNAL, "open snapshot: %v", err)}
		}
		rc.Close()
		return &actors.SnapshotResponse{Index: meta.Index, Term: meta.Term}
	})
}

// configurationIndex is the index of the latest committed configuration
// this node applied: from the log, or from the snapshot it restored when the
// entry itself was compacted away. (Raft's own GetConfiguration carries no
// index in this version.)
func configurationIndex(f *fsm, snaps raft.SnapshotStore) uint64 {
	idx := f.configIndex.Load()
	if metas, err := snaps.List(); err == nil && len(metas) > 0 {
		idx = max(idx, metas[0].ConfigurationIndex)
	}
	return idx
}

package raftactor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// MaxSnapshotReadChunk bounds the data of one SnapshotReadResponse: the
// chunk size of the transport's own snapshot transfers, far below remote's
// message size limit, so a backup never drops the link it travels on.
const MaxSnapshotReadChunk = 512 << 10

// readSnapshot answers a SnapshotReadRequest: a chunk of a snapshot this
// node holds, or, with no ID, of one it takes now. Opening and reading the
// snapshot is file I/O, so it runs on a goroutine of its own (async), never
// in Receive.
func (n *Node) readSnapshot(ctx actor.Context, m *actors.SnapshotReadRequest) {
	r, snaps := n.run.raft, n.run.stores.snaps
	dir := n.cfg.DataDir
	if n.cfg.InMemory {
		dir = ""
	}
	self := &actors.Server{Id: n.cfg.ID, Address: string(n.addr)}
	n.async(ctx, m, func(deadline time.Time) actors.Response {
		id := m.GetId()
		if id == "" {
			var e *actors.Error
			if id, e = takeSnapshotForReading(r, snaps, deadline); e != nil {
				return &actors.SnapshotReadResponse{Error: e}
			}
		}
		resp, err := readSnapshotChunk(snaps, dir, id, m.GetOffset(), m.GetMaxBytes())
		if err != nil {
			return &actors.SnapshotReadResponse{Error: err}
		}
		resp.Node = self
		return resp
	})
}

// takeSnapshotForReading makes the leader take a snapshot that holds every
// write acknowledged before it: the barrier waits until this leader has
// applied everything committed before it (a new leader may not have yet),
// then the snapshot captures that state. With nothing new since the last
// snapshot, the last one is that state.
func takeSnapshotForReading(r *raft.Raft, snaps raft.SnapshotStore, deadline time.Time) (string, *actors.Error) {
	if r.State() != raft.Leader {
		return "", actors.NotLeader(leaderOf(r))
	}
	if err := r.Barrier(time.Until(deadline)).Error(); err != nil {
		return "", raftError(r, err)
	}
	f := r.Snapshot()
	err := f.Error()
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		metas, lerr := snaps.List()
		if lerr != nil || len(metas) == 0 {
			return "", actors.Errorf(actors.Code_INTERNAL, "nothing new to snapshot, and no snapshot held: %v", lerr)
		}
		return metas[0].ID, nil
	}
	if err != nil {
		return "", raftError(r, err)
	}
	meta, rc, err := f.Open()
	if err != nil {
		return "", actors.Errorf(actors.Code_INTERNAL, "open snapshot: %v", err)
	}
	_ = rc.Close()
	return meta.ID, nil
}

// readSnapshotChunk reads up to max bytes (MaxSnapshotReadChunk when 0 or
// more) of snapshot id from offset. id must be one the store lists, so a
// request can never name a path. dir is the data directory, "" for an
// in-memory store: a file snapshot is read at offset directly, as raft's
// store opens it only from the start.
func readSnapshotChunk(snaps raft.SnapshotStore, dir, id string, offset uint64, max uint32) (*actors.SnapshotReadResponse, *actors.Error) {
	metas, err := snaps.List()
	if err != nil {
		return nil, actors.Errorf(actors.Code_INTERNAL, "list snapshots: %v", err)
	}
	var meta *raft.SnapshotMeta
	for _, s := range metas {
		if s.ID == id {
			meta = s
			break
		}
	}
	if meta == nil {
		return nil, actors.InvalidArgument("id", "this node holds no snapshot %q (never, or it was replaced by later ones since); start the read again", id)
	}
	if offset > uint64(meta.Size) {
		return nil, actors.InvalidArgument("offset", "offset %d is past the end of snapshot %s (%d bytes)", offset, id, meta.Size)
	}
	n := uint64(MaxSnapshotReadChunk)
	if max > 0 && uint64(max) < n {
		n = uint64(max)
	}
	n = min(n, uint64(meta.Size)-offset)
	data, err := readAt(snaps, dir, id, offset, int(n))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, actors.InvalidArgument("id", "snapshot %s was replaced by later ones while it was read; start the read again", id)
		}
		return nil, actors.Errorf(actors.Code_INTERNAL, "read snapshot %s: %v", id, err)
	}
	return &actors.SnapshotReadResponse{
		Id:                 meta.ID,
		Index:              meta.Index,
		Term:               meta.Term,
		Size:               uint64(meta.Size),
		Members:            serversToProto(meta.Configuration),
		ConfigurationIndex: meta.ConfigurationIndex,
		Version:            int32(meta.Version),
		Offset:             offset,
		Data:               data,
	}, nil
}

// readAt reads n bytes of snapshot id at offset.
func readAt(snaps raft.SnapshotStore, dir, id string, offset uint64, n int) ([]byte, error) {
	buf := make([]byte, n)
	if dir != "" {
		f, err := os.Open(filepath.Join(dir, "snapshots", id, "state.bin"))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if _, err := f.ReadAt(buf, int64(offset)); err != nil {
			return nil, fmt.Errorf("at offset %d: %w", offset, err)
		}
		return buf, nil
	}
	_, rc, err := snaps.Open(id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, int64(offset)); err != nil {
		return nil, fmt.Errorf("skip to offset %d: %w", offset, err)
	}
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, fmt.Errorf("at offset %d: %w", offset, err)
	}
	return buf, nil
}

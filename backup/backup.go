package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/raftactor"
)

// SaveAttempts bounds the snapshots Save streams before it gives up: each
// attempt after the first follows a snapshot the node replaced while it
// was streamed.
const SaveAttempts = 4

// Save backs up the group c talks to into the file at path: the leader
// takes a snapshot holding every write acknowledged before Save began, and
// its bytes are written with a header and a checksum (Write). The file is
// written as path plus ".tmp", synced and renamed, so a file named path is
// always a complete backup; an existing one is replaced only by a complete
// new one. group is recorded in the header, for the restore.
//
// A node keeps a snapshot only until later ones replace it
// (raftactor.Config.SnapshotRetain). When the snapshot being streamed is
// replaced before its last chunk was read, Save starts again with a new
// snapshot, which holds every write the first one held and more, into a
// fresh temporary file, up to SaveAttempts snapshots; after that it returns
// an error for which cluster.IsSnapshotGone is true.
func Save(ctx context.Context, c *cluster.Client, group, path string) (Header, error) {
	tmp := path + ".tmp"
	var h Header
	var err error
	for attempt := 1; attempt <= SaveAttempts; attempt++ {
		h, err = saveAttempt(ctx, c, group, tmp, attempt)
		if !cluster.IsSnapshotGone(err) {
			break
		}
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		if cluster.IsSnapshotGone(err) {
			err = fmt.Errorf("backup: %d snapshots in a row were replaced by newer ones while they streamed "+
				"(the group snapshots faster than a backup reads one: keep more, raftactor.Config.SnapshotRetain, "+
				"or snapshot less often): %w", SaveAttempts, err)
		}
		return h, err
	}
	return h, nil
}

// saveAttempt streams one new snapshot into the file tmp, which it
// truncates first, so a file an earlier attempt left half written never
// mixes with this one's bytes; it syncs the file when the stream is whole.
func saveAttempt(ctx context.Context, c *cluster.Client, group, tmp string, attempt int) (Header, error) {
	snap, err := c.OpenSnapshot(ctx)
	if err != nil {
		return Header{}, err
	}
	info := snap.Info()
	h := Header{
		Group:              group,
		Created:            time.Now().UTC(),
		Node:               memberOf(info.GetNode()),
		SnapshotID:         info.GetId(),
		Index:              info.GetIndex(),
		Term:               info.GetTerm(),
		Size:               info.GetSize(),
		Version:            int(info.GetVersion()),
		ConfigurationIndex: info.GetConfigurationIndex(),
	}
	for _, m := range info.GetMembers() {
		h.Members = append(h.Members, memberOf(m))
	}
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return h, fmt.Errorf("backup: %w", err)
	}
	var stream io.Reader = snap
	if afterRead != nil {
		stream = &hookedReader{r: snap, attempt: attempt}
	}
	err = Write(f, h, stream)
	if err == nil {
		err = f.Sync()
	}
	return h, errors.Join(err, f.Close())
}

// afterRead, when set, is called after each read from the snapshot being
// streamed, with the attempt and the bytes read so far: a test seam, so a
// test can make the node replace the snapshot mid-stream.
var afterRead func(attempt int, read int64)

// hookedReader calls afterRead after each read.
type hookedReader struct {
	r       io.Reader
	attempt int
	read    int64
}

// Read implements io.Reader.
func (h *hookedReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.read += int64(n)
	if n > 0 {
		afterRead(h.attempt, h.read)
	}
	return n, err
}

func memberOf(s *actors.Server) Member {
	return Member{ID: s.GetId(), Address: s.GetAddress(), Suffrage: s.GetSuffrage().String()}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("backup: sync %s: %w", dir, err)
	}
	return nil
}

// Node is one node of the group a restore builds: its data directory, its
// ID and the address of the ActorSystem it will run in.
type Node struct {
	DataDir string
	Peer    cluster.Peer
}

// Restore builds the data directory of each of nodes from the backup f,
// for a new group named group whose voters are members (every node of the
// new group, the ones built elsewhere included). Every node of the new
// group must be built from the same file with the same members; started
// (with any Bootstrap, which a node with state ignores), they elect a
// leader and hold every write the backup holds, sessions and policy
// included. A directory that holds a node's state is refused; on error,
// the directories this call built are removed again.
func Restore(f *File, group string, members []cluster.Peer, nodes []Node) error {
	if err := actors.ValidateNodeID("group", group); err != nil {
		return err
	}
	var servers []*actors.Server
	for _, p := range members {
		servers = append(servers, &actors.Server{Id: p.ID, Address: p.RaftAddress(group)})
	}
	in := map[string]bool{}
	for _, p := range members {
		in[p.ID+"="+p.Address] = true
	}
	for _, n := range nodes {
		if !in[n.Peer.ID+"="+n.Peer.Address] {
			return actors.InvalidArgument("nodes", "node %s at %s is not one of the members", n.Peer.ID, n.Peer.Address)
		}
	}
	var built []string
	for _, n := range nodes {
		err := raftactor.RestoreDataDir(n.DataDir, servers, raftactor.RestoredSnapshot{
			Index: f.Header.Index, Term: f.Header.Term, Size: int64(f.Header.Size), Data: f.Snapshot(),
		})
		if err != nil {
			for _, dir := range built {
				_ = os.RemoveAll(dir)
			}
			return fmt.Errorf("backup: restore node %s into %s: %w", n.Peer.ID, n.DataDir, err)
		}
		built = append(built, n.DataDir)
	}
	return nil
}

package integration

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/raftactor"
)

// The in-process carrier is a damager: a node the restart nemesis stopped
// has its files on disk like a process's, so torn tails and flipped bits
// are injected there too, and the documented recovery (remove, wipe,
// join) is carried out through the same Client a program would use.

// dataDir is id's data directory.
func (c *inproc) dataDir(id string) string {
	if m := c.member(id); m != nil {
		return m.cfg.Node.DataDir
	}
	return ""
}

// startDamaged starts id on its damaged files; refused says the node found
// its data directory damaged and would not start.
func (c *inproc) startDamaged(ctx context.Context, id string) (refused bool, err error) {
	err = c.start(ctx, id)
	return errors.Is(err, raftactor.ErrDamagedDataDir), err
}

// rejoin removes id through the leader, deletes its data directory, and
// starts it empty (no bootstrap: an empty directory with the first voters
// would found a second group) to join the group again.
func (c *inproc) rejoin(ctx context.Context, id string) error {
	m := c.member(id)
	if m == nil {
		return fmt.Errorf("no member %s", id)
	}
	defer c.membersChanged()
	_, err := c.admin.Remove(ctx, id)
	var ae *actors.Error
	if errors.As(err, &ae) && ae.Code == actors.Code_INVALID_ARGUMENT && ae.Field == "id" {
		err = nil // removed by an earlier attempt
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if err := os.RemoveAll(m.cfg.Node.DataDir); err != nil {
		return err
	}
	c.mu.Lock()
	m.cfg.Bootstrap = nil
	m.joining = true
	c.mu.Unlock()
	if err := c.startMember(m); err != nil {
		return err
	}
	var seeds []cluster.Peer
	for _, o := range runningNodes(c) {
		if o != id {
			seeds = append(seeds, cluster.Peer{ID: o, Address: actors.LocalSystemAddress})
		}
	}
	if err := c.group(id).Join(ctx, seeds...); err != nil {
		return fmt.Errorf("join %s: %w", id, err)
	}
	c.mu.Lock()
	m.joining = false
	c.mu.Unlock()
	return nil
}

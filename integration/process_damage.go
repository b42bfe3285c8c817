//go:build unix

package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/protoraft/protoraft/actors"
)

// The process carrier's damager: a samples/kv process that finds its data
// directory damaged exits before it serves HTTP, saying so in its log.

func (c *processes) dataDir(id string) string {
	if n := c.g.Node(id); n != nil {
		return n.DataDir()
	}
	return ""
}

func (c *processes) startDamaged(_ context.Context, id string) (bool, error) {
	n, err := c.node(id)
	if err != nil {
		return false, err
	}
	c.settle(id)
	err = n.TryStart()
	if err == nil {
		return false, nil
	}
	return strings.Contains(n.Log(40), "damaged data directory"), err
}

// procRejoinWithin bounds the recovery of a damaged node: its removal,
// and its join until it is a voter again.
const procRejoinWithin = 30 * time.Second

func (c *processes) rejoin(ctx context.Context, id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, procRejoinWithin)
	defer cancel()
	if err := c.removeMember(ctx, id); err != nil {
		return err
	}
	// Its contents: the directory itself may be a mount point.
	if err := emptyDir(n.DataDir()); err != nil {
		return err
	}
	c.settle(id)
	n.SetJoin(true)
	if err := n.Start(); err != nil {
		return err
	}
	for {
		if st, err := c.status(ctx, id); err == nil {
			for _, m := range st.GetMembers() {
				if m.GetId() == id && m.GetSuffrage() == actors.Suffrage_VOTER && st.GetLeader().GetId() != "" {
					return nil
				}
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s is no voter again within %v", id, procRejoinWithin)
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// removeMember removes id through any other running node, whose client
// finds the leader; done once id is no member.
func (c *processes) removeMember(ctx context.Context, id string) error {
	var last error
	for ctx.Err() == nil {
		for _, o := range c.nodes() {
			on := c.g.Node(o)
			base, _ := on.HTTP()
			if o == id || base == "" {
				continue
			}
			st, err := c.status(ctx, o)
			if err != nil {
				last = err
				continue
			}
			member := false
			for _, m := range st.GetMembers() {
				member = member || m.GetId() == id
			}
			if !member && st.GetLeader().GetId() != "" {
				return nil
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			code, body, err := httpDo(rctx, c.g.AdminToken(), http.MethodDelete, base+"/members/"+id, "")
			cancel()
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("DELETE /members/%s: %d %s", id, code, body)
			}
			last = err
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	return errors.Join(fmt.Errorf("remove %s: %w", id, ctx.Err()), last)
}

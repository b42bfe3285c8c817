//go:build unix

package integration

import (
	"context"
	"sort"
)

// outdated are the nodes not yet moved to Processes.Upgrade.
func (c *processes) outdated() []string {
	if c.upgradeTo == "" {
		return nil
	}
	c.upgradeMu.Lock()
	defer c.upgradeMu.Unlock()
	var out []string
	for _, id := range c.nodes() {
		if !c.upgraded[id] {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// upgrade stops id with SIGTERM and starts it on the later build. The node
// counts as upgraded from before its start, so that no write of the
// workload goes to a process of the later build while others run the
// earlier one (writes).
func (c *processes) upgrade(ctx context.Context, id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	if err := c.stop(ctx, id); err != nil {
		return err
	}
	c.upgradeMu.Lock()
	c.upgraded[id] = true
	c.upgradeMu.Unlock()
	n.SetBinary(c.upgradeTo)
	return n.Start()
}

// writes reports whether the workload may send writes to id: any node but
// one already upgraded while others are not. The upgrade notes of this
// release (docs/operations.md#upgrades) ask for every node to run it
// before its Clients write, and the sample's Client lives in each node's
// process; reads go everywhere.
func (c *processes) writes(id string) bool {
	if c.upgradeTo == "" {
		return true
	}
	c.upgradeMu.Lock()
	defer c.upgradeMu.Unlock()
	if !c.upgraded[id] {
		return true
	}
	for _, other := range c.g.Nodes() {
		if !c.upgraded[other.ID()] {
			return false
		}
	}
	return true
}

package protocluster

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/protoraft/protoraft/actors"
)

// keepLoop runs, with Config.NonVoters, on every member that hosts a node;
// it acts only while that node leads: it reconciles the group's Raft
// configuration with the table every WatchInterval (keepOnce).
func (p *Provider) keepLoop() {
	defer p.wg.Done()
	tick := time.NewTicker(p.cfg.WatchInterval)
	defer tick.Stop()
	for {
		// A promotion waits for the node to catch up: up to two calls.
		ctx, cancel := context.WithTimeout(context.Background(), 2*p.cfg.CallTimeout)
		if p.leads(ctx) {
			if err := p.keepOnce(ctx); err != nil {
				p.log.Debug("protocluster: membership not reconciled yet", slog.Any("error", err))
			}
		}
		cancel()
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

// keepOnce makes at most one membership change, the first of these that
// applies, so that each one is made against the configuration it saw:
//
//  1. a node of the table's departed list that the configuration still
//     holds is removed (never this leader itself: the next leader does it);
//  2. a departed node the configuration no longer holds is forgotten
//     (ForgetNode, a table write);
//  3. a live member's node that the configuration does not hold joins as
//     a non-voter;
//  4. while fewer than len(Config.Voters) voters remain, the non-voter of
//     the earliest registered live member is promoted (the node actor
//     promotes only a node that has caught up).
//
// The table decides who is live and the log orders it, so two leaders in
// turn make the same changes; Raft refuses a change built on a stale
// configuration.
func (p *Provider) keepOnce(ctx context.Context) error {
	qr, err := p.read(ctx, &Query{Q: &Query_Topology{Topology: &TopologyQuery{}}}, actors.Consistency_STALE)
	if err != nil {
		return err
	}
	res, err := p.c.ActorSystem.Root.RequestFuture(p.group.Node(), &actors.MembersRequest{Meta: actors.NewMeta(p.cfg.CallTimeout)}, p.cfg.CallTimeout).Result()
	if err != nil {
		return fmt.Errorf("protocluster: reading the configuration: %w", err)
	}
	mr, ok := res.(*actors.MembersResponse)
	if !ok {
		return fmt.Errorf("protocluster: members answered %T", res)
	}
	if err := mr.GetError().Err(); err != nil {
		return fmt.Errorf("protocluster: reading the configuration: %w", err)
	}
	servers := map[string]*actors.Server{}
	voters := 0
	for _, s := range mr.GetMembers() {
		servers[s.Id] = s
		if s.Suffrage == actors.Suffrage_VOTER {
			voters++
		}
	}
	self := p.group.Self().ID
	for _, n := range qr.GetDepartedNodes() {
		if n == self {
			continue
		}
		if _, ok := servers[n]; ok {
			return p.changeMembership(ctx, &actors.MembershipRequest{Op: actors.MembershipOp_REMOVE, Id: n}, "removed the node of a member that left")
		}
		if _, err := p.write(ctx, &Command{Op: &Command_ForgetNode{ForgetNode: &ForgetNode{NodeId: n}}}); err != nil {
			return err
		}
	}
	for _, m := range qr.GetMembers() {
		if m.NodeId == "" || slices.Contains(qr.GetDepartedNodes(), m.NodeId) {
			continue
		}
		if _, ok := servers[m.NodeId]; !ok {
			return p.changeMembership(ctx, &actors.MembershipRequest{Op: actors.MembershipOp_ADD_NONVOTER, Id: m.NodeId, Address: m.NodeAddress}, "added a member's node as a non-voter")
		}
	}
	if voters >= len(p.cfg.Voters) {
		return nil
	}
	for _, m := range qr.GetMembers() {
		if s, ok := servers[m.NodeId]; ok && m.NodeId != "" && s.Suffrage != actors.Suffrage_VOTER {
			return p.changeMembership(ctx, &actors.MembershipRequest{Op: actors.MembershipOp_PROMOTE, Id: m.NodeId}, "promoted a member's non-voter to keep the voter count")
		}
	}
	return nil
}

// changeMembership asks this member's node, the leader, for one change.
func (p *Provider) changeMembership(ctx context.Context, req *actors.MembershipRequest, what string) error {
	timeout := p.cfg.CallTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	req.Meta = actors.NewMeta(timeout * 9 / 10)
	res, err := p.c.ActorSystem.Root.RequestFuture(p.group.Node(), req, timeout).Result()
	if err != nil {
		return fmt.Errorf("protocluster: %s of %s: %w", req.Op, req.Id, err)
	}
	mr, ok := res.(*actors.MembershipResponse)
	if !ok {
		return fmt.Errorf("protocluster: %s answered %T", req.Op, res)
	}
	if err := mr.GetError().Err(); err != nil {
		return fmt.Errorf("protocluster: %s of %s: %w", req.Op, req.Id, err)
	}
	p.log.Info("protocluster: "+what, slog.String("node", req.Id), slog.String("op", req.Op.String()))
	return nil
}

package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/inbox"
)

// pollInterval is how often Join, Leave and WaitLeader look again while
// they wait for the group to move (an election, replication to catch up).
const pollInterval = 50 * time.Millisecond

// Join makes this node a voter of the group that members belong to. It asks
// the leader (found through any member's front door, following NOT_LEADER
// hints) to add this node as a non-voter, waits until this node has applied
// everything the leader had committed by then, and only then asks for its
// promotion: a joiner that is still copying the log never counts toward the
// quorum, so a slow one cannot stall the group.
//
// Join is idempotent: a node that already is a voter returns nil at once,
// and one left a non-voter by an interrupted Join is promoted. It returns
// the leader's refusal as an *actors.Error (INVALID_ARGUMENT naming the
// field when this node's ID or address is already used by another member),
// or ctx's error when ctx ends first.
func (g *Group) Join(ctx context.Context, members ...Peer) error {
	if len(members) == 0 {
		return actors.InvalidArgument("members", "no member to ask")
	}
	var seeds []*actor.PID
	for i, p := range members {
		if err := validatePeer(fmt.Sprintf("members[%d]", i), p); err != nil {
			return err
		}
		seeds = append(seeds, p.FrontDoor(g.cfg.Node.Group))
	}
	id, addr := g.self.ID, g.RaftAddress()
	var target uint64 // leader's commit index once this node was a non-voter
	for {
		st, door, err := g.leaderStatus(ctx, seeds)
		if err != nil {
			return fmt.Errorf("cluster: join %s: %w", g.cfg.Node.Group, err)
		}
		me := findMember(st.Members, id)
		var req *actors.MembershipRequest
		switch {
		case me != nil && me.Address == addr && me.Suffrage == actors.Suffrage_VOTER:
			g.shared.log.Info("joined the group as a voter", zap.String("leader", st.GetNode().GetId()))
			return nil
		case me == nil || me.Address != addr:
			// A member with this ID at another address is refused by the
			// leader, before Raft is touched; its error is returned as is.
			req = &actors.MembershipRequest{Op: actors.MembershipOp_ADD_NONVOTER, Id: id, Address: addr}
		default:
			if target == 0 {
				target = st.CommitIndex
			}
			caught, err := g.caughtUp(ctx, target)
			if err != nil {
				return fmt.Errorf("cluster: join %s: waiting to catch up to index %d: %w", g.cfg.Node.Group, target, err)
			}
			if !caught {
				if err := sleep(ctx, pollInterval); err != nil {
					return fmt.Errorf("cluster: join %s: waiting to catch up to index %d: %w", g.cfg.Node.Group, target, err)
				}
				continue
			}
			req = &actors.MembershipRequest{Op: actors.MembershipOp_PROMOTE, Id: id}
		}
		if err := g.changeMembership(ctx, door, req); err != nil {
			return err
		}
	}
}

// Leave removes this node from its group. A node that leads hands
// leadership to another voter first, so the removal is done by a leader
// that stays; Leave returns once the removal has committed (or the node is
// no member at all). The node keeps running: call Stop afterwards. The last
// voter of a group cannot leave (INVALID_ARGUMENT): the group would have no
// quorum left to commit anything, its own removal included.
func (g *Group) Leave(ctx context.Context) error {
	id := g.self.ID
	for {
		// Ask again each round: the leader may change under a leave, and
		// the other members are reachable even if this node lost track.
		seeds := []*actor.PID{g.FrontDoor()}
		if st, err := g.nodeStatus(ctx); err == nil {
			for _, m := range st.Members {
				if pid, err := FrontDoorOf(m.Address); err == nil && m.Id != id {
					seeds = append(seeds, pid)
				}
			}
		}
		st, door, err := g.leaderStatus(ctx, seeds)
		if err != nil {
			return fmt.Errorf("cluster: leave %s: %w", g.cfg.Node.Group, err)
		}
		me := findMember(st.Members, id)
		if me == nil {
			g.shared.log.Info("left the group")
			return nil
		}
		if me.Suffrage == actors.Suffrage_VOTER && countVoters(st.Members) == 1 {
			return actors.InvalidArgument("node.id", "node %s is the last voter of group %s; the group would have no quorum", id, g.cfg.Node.Group)
		}
		if st.GetNode().GetId() == id {
			resp, err := g.ask(ctx, door, func(m *actors.RequestMeta) actors.Request {
				return &actors.TransferLeadershipRequest{Meta: m}
			})
			if err := settle(ctx, resp, err); err != nil {
				return fmt.Errorf("cluster: leave %s: handing over leadership: %w", g.cfg.Node.Group, err)
			}
			continue
		}
		if err := g.changeMembership(ctx, door, &actors.MembershipRequest{Op: actors.MembershipOp_REMOVE, Id: id}); err != nil {
			return err
		}
	}
}

// changeMembership sends one change to the leader's front door. It returns
// nil when the caller should look at the group again: after success, and
// after a retryable failure (the change may or may not have committed, and
// the next look tells which). Anything else is the leader's refusal.
func (g *Group) changeMembership(ctx context.Context, door *actor.PID, req *actors.MembershipRequest) error {
	resp, err := g.ask(ctx, door, func(m *actors.RequestMeta) actors.Request {
		req.Meta = m
		return req
	})
	if err := settle(ctx, resp, err); err != nil {
		return fmt.Errorf("cluster: %s of %s: %w", actors.Op(req), req.Id, err)
	}
	return nil
}

// settle sorts the outcome of one request: nil to go on (success, or a
// retryable failure after a pause), the refusal itself otherwise.
func settle(ctx context.Context, resp actors.Response, err error) error {
	if err == nil {
		rerr := resp.GetError()
		if rerr.Err() == nil {
			return nil
		}
		if !actors.Retryable(rerr.Code) {
			return rerr
		}
	}
	// A lost reply (timeout, dead letter during a restart) is retryable
	// too: every step of Join and Leave looks at the group before acting.
	return sleep(ctx, pollInterval)
}

// caughtUp reports whether this node knows a leader and has applied
// everything up to target.
func (g *Group) caughtUp(ctx context.Context, target uint64) (bool, error) {
	st, err := g.nodeStatus(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, nil
	}
	return st.GetLeader().GetId() != "" && st.AppliedIndex >= target, nil
}

// nodeStatus asks this node itself for its status.
func (g *Group) nodeStatus(ctx context.Context) (*actors.StatusResponse, error) {
	resp, err := g.ask(ctx, g.Node(), func(m *actors.RequestMeta) actors.Request {
		return &actors.StatusRequest{Meta: m}
	})
	if err != nil {
		return nil, err
	}
	if err := resp.GetError().Err(); err != nil {
		return nil, err
	}
	return resp.(*actors.StatusResponse), nil
}

// leaderStatus finds the leader, starting at the seeds and following hints,
// and returns its status and its front door. A follower answers a status
// request itself, so a status that is not the leader's counts as a hint.
// It tries until ctx ends.
func (g *Group) leaderStatus(ctx context.Context, seeds []*actor.PID) (*actors.StatusResponse, *actor.PID, error) {
	var last error
	next := 0
	var target *actor.PID
	for hops := 0; ; hops++ {
		if target == nil {
			target = seeds[next%len(seeds)]
			next++
		}
		resp, err := g.ask(ctx, target, func(m *actors.RequestMeta) actors.Request {
			return &actors.StatusRequest{Meta: m}
		})
		var hint *actors.Server
		switch {
		case err != nil:
			last = err
		case refusal(resp.GetError()):
			// No credentials or no permission holds at every member, where
			// one seed's own failure (a damaged node answering INTERNAL)
			// does not: asking on would only hide it behind a timeout.
			return nil, nil, resp.GetError()
		case resp.GetError().Err() != nil:
			last = resp.GetError()
			hint = resp.GetError().GetLeader()
		default:
			st := resp.(*actors.StatusResponse)
			if st.State == "Leader" {
				return st, target, nil
			}
			last = fmt.Errorf("%s is %s", st.GetNode().GetId(), st.State)
			hint = st.Leader
		}
		target = nil
		if hint != nil {
			if pid, err := FrontDoorOf(hint.Address); err == nil {
				target = pid
			}
		}
		// Follow a fresh hint at once; pause when the hints run in a circle
		// (an election in progress) or there is none.
		if target != nil && hops%4 != 3 {
			continue
		}
		if err := sleep(ctx, pollInterval); err != nil {
			return nil, nil, fmt.Errorf("no leader found: %w (last: %v)", err, last)
		}
	}
}

// ask sends one request and waits for its reply, bounded by ctx and by
// the group's request timeout. The request's own deadline ends a little
// before the wait does, so the node's DEADLINE_EXCEEDED arrives instead of
// a bare timeout.
func (g *Group) ask(ctx context.Context, to *actor.PID, build func(*actors.RequestMeta) actors.Request) (actors.Response, error) {
	wait := g.cfg.attemptTimeout()
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	if wait <= 0 {
		return nil, context.DeadlineExceeded
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	meta := &actors.RequestMeta{Credentials: g.cfg.Credentials}
	meta.SetTimeout(wait * 9 / 10)
	res, err := inbox.Ask(g.system, to, build(meta), wait)
	if err != nil {
		return nil, err
	}
	resp, ok := res.(actors.Response)
	if !ok {
		return nil, fmt.Errorf("%s answered %T", to, res)
	}
	return resp, nil
}

// refusal reports whether err is the group refusing the caller: the same
// answer at every member.
func refusal(err *actors.Error) bool {
	c := actors.CodeOf(err)
	return c == actors.Code_UNAUTHENTICATED || c == actors.Code_PERMISSION_DENIED
}

func findMember(members []*actors.Server, id string) *actors.Server {
	for _, m := range members {
		if m.Id == id {
			return m
		}
	}
	return nil
}

func countVoters(members []*actors.Server) int {
	n := 0
	for _, m := range members {
		if m.Suffrage == actors.Suffrage_VOTER {
			n++
		}
	}
	return n
}

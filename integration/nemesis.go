package integration

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// Kind names a nemesis: one kind of fault.
type Kind string

// The nemeses of the in-process mode.
const (
	// KindIsolateLeader cuts the leader off in both directions, and probes
	// it with linearizable reads sent straight to its node actor: once the
	// majority has a new leader, none of them may succeed.
	KindIsolateLeader Kind = "isolate-leader"
	// KindPartitionMinority splits off a random minority (possibly with
	// the leader in it).
	KindPartitionMinority Kind = "partition-minority"
	// KindPartitionMajority leaves the leader on the minority side, so the
	// majority must elect a new leader while the old one keeps running.
	KindPartitionMajority Kind = "partition-majority"
	// KindRing lets each node talk only to its neighbours on a random ring
	// (with three nodes: a line, whose middle node sees both ends).
	KindRing Kind = "ring"
	// KindOneWay cuts one direction only: the leader to every follower or
	// every follower to the leader.
	KindOneWay Kind = "one-way-cut"
	// KindDrop loses a percentage of every RPC.
	KindDrop Kind = "drop"
	// KindDelay holds every RPC of one node or of all for a delay with
	// jitter.
	KindDelay Kind = "delay"
	// KindStopLeader stops the leader's group (Group.Stop) for the step and
	// spawns it again from its data directory afterwards.
	KindStopLeader Kind = "stop-leader"
	// KindCrash makes the group's supervisor restart a node actor, as a
	// panic in it would.
	KindCrash Kind = "node-crash"
	// KindRestart restarts a node from disk: cut off (so it dies without
	// saying goodbye), stopped, healed and spawned again at once.
	KindRestart Kind = "restart"
	// KindMembership adds, removes or replaces a node under load, the
	// leader and a partitioned node included.
	KindMembership Kind = "membership"
	// KindSnapshot cuts a follower off long enough for the leader to
	// compact its log past it, so that healing brings it back by snapshot
	// install.
	KindSnapshot Kind = "snapshot-catch-up"
	// KindTimeouts changes the Raft timeouts at run time on every node and
	// restores them after the step.
	KindTimeouts Kind = "timeouts"
)

// AllKinds are every in-process nemesis, in a fixed order so that a seed
// always picks the same ones.
var AllKinds = []Kind{
	KindIsolateLeader, KindPartitionMinority, KindPartitionMajority, KindRing, KindOneWay,
	KindDrop, KindDelay, KindStopLeader, KindCrash, KindRestart, KindMembership, KindSnapshot, KindTimeouts,
}

// composable are the nemeses that may be added on top of another one in the
// same step: they degrade the network without changing who is up.
var composable = []Kind{KindDrop, KindDelay}

// Step is one entry of a schedule: faults held for Hold, then everything
// healed for Quiet. Param picks targets and sizes at run time, when the
// leader and the members are known.
type Step struct {
	Kinds []Kind        `json:"kinds"`
	Hold  time.Duration `json:"hold"`
	Quiet time.Duration `json:"quiet"`
	Param int64         `json:"param"`
}

// Schedule builds a random schedule from seed that fills about d.
func Schedule(seed int64, d time.Duration, kinds []Kind) []Step {
	rng := rand.New(rand.NewSource(seed))
	var steps []Step
	var total time.Duration
	for total < d {
		s := Step{
			Kinds: []Kind{kinds[rng.Intn(len(kinds))]},
			Hold:  time.Duration(600+rng.Intn(900)) * time.Millisecond,
			Quiet: time.Duration(300+rng.Intn(500)) * time.Millisecond,
			Param: rng.Int63(),
		}
		if rng.Intn(4) == 0 {
			extra := composable[rng.Intn(len(composable))]
			if extra != s.Kinds[0] {
				s.Kinds = append(s.Kinds, extra)
			}
		}
		steps = append(steps, s)
		total += s.Hold + s.Quiet
	}
	return steps
}

// Event is what a nemesis actually did, at run time.
type Event struct {
	At     int64  `json:"at"`
	Step   int    `json:"step"`
	Kind   Kind   `json:"kind"`
	Detail string `json:"detail"`
}

// nemesis applies a schedule to an in-process group.
type nemesis struct {
	c   *inproc
	rec *recorder
	wl  *workload
	// admin is the nemesis's own Client, for membership and timeouts.
	admin *cluster.Client

	mu         sync.Mutex
	events     []Event
	faults     map[Kind]int
	violations []string
	probes     probeStats
}

// probeStats counts the stale-read probe's reads sent to isolated leaders.
type probeStats struct {
	Sent              int `json:"sent"`
	OKBeforeNewLeader int `json:"ok_before_new_leader"`
	AfterNewLeader    int `json:"after_new_leader"`
}

func newNemesis(c *inproc, rec *recorder, wl *workload) *nemesis {
	return &nemesis{c: c, rec: rec, wl: wl, admin: newClientFor(c, c.peers()), faults: map[Kind]int{}}
}

func (n *nemesis) event(step int, k Kind, format string, args ...any) {
	e := Event{At: n.rec.now(), Step: step, Kind: k, Detail: fmt.Sprintf(format, args...)}
	n.mu.Lock()
	n.events = append(n.events, e)
	n.mu.Unlock()
	n.c.logf("nemesis %d %s: %s", step, k, e.Detail)
}

func (n *nemesis) count(k Kind) {
	n.mu.Lock()
	n.faults[k]++
	n.mu.Unlock()
}

func (n *nemesis) violation(format string, args ...any) {
	n.mu.Lock()
	n.violations = append(n.violations, fmt.Sprintf(format, args...))
	n.mu.Unlock()
}

// run plays the schedule; every step ends healed.
func (n *nemesis) run(ctx context.Context, steps []Step) {
	for i, s := range steps {
		if ctx.Err() != nil {
			return
		}
		n.play(ctx, i, s)
		n.heal(ctx, i)
		sleepCtx(ctx, s.Quiet)
	}
}

// play applies one step's faults, holds them and undoes what only the step
// itself knows how to undo; heal does the rest.
func (n *nemesis) play(ctx context.Context, i int, s Step) {
	rng := rand.New(rand.NewSource(s.Param))
	var undo []func()
	for _, k := range s.Kinds {
		if u := n.apply(ctx, i, k, rng, s.Hold); u != nil {
			undo = append(undo, u)
		}
	}
	sleepCtx(ctx, s.Hold)
	for j := len(undo) - 1; j >= 0; j-- {
		undo[j]()
	}
}

// apply starts one fault and returns what ends it (beyond Heal), or nil.
func (n *nemesis) apply(ctx context.Context, i int, k Kind, rng *rand.Rand, hold time.Duration) func() {
	f := n.c.faults
	running := n.c.running()
	if len(running) == 0 {
		return nil
	}
	leader := n.c.leader()
	var followers []*member
	for _, m := range running {
		if m != leader {
			followers = append(followers, m)
		}
	}
	switch k {
	case KindIsolateLeader:
		if leader == nil {
			n.event(i, k, "no leader to isolate")
			return nil
		}
		st, _ := n.c.status(leader)
		f.Isolate(raft.ServerID(leader.id))
		n.count(k)
		n.event(i, k, "isolated %s (term %d)", leader.id, st.GetTerm())
		return n.probe(ctx, i, leader, st.GetTerm(), followers)
	case KindPartitionMinority, KindPartitionMajority:
		live := n.c.live()
		if len(live) < 3 {
			return nil
		}
		shuffled := shuffle(rng, live)
		size := rng.Intn((len(live)-1)/2) + 1
		var minority []*member
		if k == KindPartitionMajority && leader != nil {
			minority = append(minority, leader)
			for _, m := range shuffled {
				if len(minority) < size && m != leader {
					minority = append(minority, m)
				}
			}
		} else {
			minority = shuffled[:size]
		}
		in := map[*member]bool{}
		for _, m := range minority {
			in[m] = true
		}
		var majority []*member
		for _, m := range live {
			if !in[m] {
				majority = append(majority, m)
			}
		}
		f.Partition(ids(minority), ids(majority))
		n.count(k)
		n.event(i, k, "%v | %v", ids(minority), ids(majority))
	case KindRing:
		live := shuffle(rng, n.c.live())
		if len(live) < 3 {
			return nil
		}
		neighbour := func(a, b int) bool {
			d := (a - b + len(live)) % len(live)
			return d == 1 || d == len(live)-1
		}
		var cut [][2]raft.ServerID
		if len(live) == 3 {
			// Three nodes on a ring all neighbour each other: cut the ends
			// of a line instead, so the middle one bridges them.
			a, b := raft.ServerID(live[0].id), raft.ServerID(live[2].id)
			cut = append(cut, [2]raft.ServerID{a, b}, [2]raft.ServerID{b, a})
		}
		for a := range live {
			for b := range live {
				if len(live) > 3 && a != b && !neighbour(a, b) {
					cut = append(cut, [2]raft.ServerID{raft.ServerID(live[a].id), raft.ServerID(live[b].id)})
				}
			}
		}
		for _, p := range cut {
			f.Cut(p[0], p[1])
		}
		n.count(k)
		n.event(i, k, "ring %v, cut %v", ids(live), cut)
	case KindOneWay:
		if leader == nil {
			return nil
		}
		if rng.Intn(2) == 0 {
			f.Cut(raft.ServerID(leader.id), raftactorAny)
			n.event(i, k, "%s -> everyone cut", leader.id)
		} else {
			f.Cut(raftactorAny, raft.ServerID(leader.id))
			n.event(i, k, "everyone -> %s cut", leader.id)
		}
		n.count(k)
	case KindDrop:
		pct := float64(5 + rng.Intn(30))
		f.Drop(raftactorAny, raftactorAny, pct)
		n.count(k)
		n.event(i, k, "drop %.0f%% of all RPCs", pct)
	case KindDelay:
		d := time.Duration(2+rng.Intn(40)) * time.Millisecond
		j := time.Duration(1+rng.Intn(40)) * time.Millisecond
		if rng.Intn(2) == 0 {
			f.Delay(raftactorAny, raftactorAny, d, j)
			n.event(i, k, "delay all RPCs %v + up to %v", d, j)
		} else {
			m := running[rng.Intn(len(running))]
			f.Delay(raft.ServerID(m.id), raftactorAny, d, j)
			f.Delay(raftactorAny, raft.ServerID(m.id), d, j)
			n.event(i, k, "delay %s's RPCs %v + up to %v", m.id, d, j)
		}
		n.count(k)
	case KindStopLeader:
		if leader == nil {
			return nil
		}
		if err := n.c.stop(leader); err != nil {
			n.event(i, k, "stop %s: %v", leader.id, err)
		} else {
			n.event(i, k, "stopped %s", leader.id)
		}
		n.count(k)
	case KindCrash:
		m := leader
		if m == nil || rng.Intn(2) == 0 {
			m = running[rng.Intn(len(running))]
		}
		err := n.c.crash(m)
		n.count(k)
		n.event(i, k, "supervisor restart of %s (leader %v): %v", m.id, m == leader, errText(err))
		return func() { n.c.bumpWhenUp(ctx, m) }
	case KindRestart:
		m := running[rng.Intn(len(running))]
		f.Isolate(raft.ServerID(m.id))
		err := n.c.stop(m)
		f.Heal()
		if err == nil {
			err = n.c.start(m)
		}
		n.count(k)
		n.event(i, k, "restarted %s from disk (leader %v): %v", m.id, m == leader, errText(err))
	case KindMembership:
		n.count(k)
		n.membership(ctx, i, rng, leader, followers)
	case KindSnapshot:
		if leader == nil || len(followers) == 0 {
			return nil
		}
		m := followers[rng.Intn(len(followers))]
		before, _ := n.c.status(m)
		f.Isolate(raft.ServerID(m.id))
		n.count(k)
		n.event(i, k, "isolated %s (last index %d, snapshot %d)", m.id, before.GetLastIndex(), before.GetLastSnapshotIndex())
		return func() { n.snapshotCatchUp(ctx, i, m, before) }
	case KindTimeouts:
		hb := time.Duration(250+rng.Intn(400)) * time.Millisecond
		el := hb + time.Duration(rng.Intn(300))*time.Millisecond
		t := &actors.Timeouts{Heartbeat: durationpb.New(hb), Election: durationpb.New(el), SnapshotThreshold: uint64(50 + rng.Intn(300))}
		n.count(k)
		n.event(i, k, "heartbeat %v election %v snapshot threshold %d: %s", hb, el, t.SnapshotThreshold, n.setTimeouts(ctx, t))
		return func() {
			n.event(i, k, "restored: %s", n.setTimeouts(ctx, timeoutsProto(testTimeouts)))
		}
	}
	return nil
}

// raftactorAny matches every node in a Faults rule.
const raftactorAny = raft.ServerID("*")

// probe sends linearizable reads straight to an isolated leader's node
// actor until the step ends, and reports any that succeeds after the rest
// of the group elected a newer leader: two nodes would then serve reads as
// leader, and the old one's could miss acknowledged writes.
func (n *nemesis) probe(ctx context.Context, i int, old *member, term uint64, others []*member) func() {
	g := old.g
	if g == nil {
		return nil
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var newLeaderAt time.Time
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if newLeaderAt.IsZero() {
				for _, m := range others {
					if st, err := n.c.status(m); err == nil && st.State == "Leader" && st.Term > term {
						newLeaderAt = time.Now()
						n.event(i, KindIsolateLeader, "%s leads in term %d while %s is cut off", m.id, st.Term, old.id)
						// A write through the new leader makes a read that the
						// old one might still serve observably stale.
						wctx, cancel := context.WithTimeout(ctx, time.Second)
						_, _ = n.admin.Write(wctx, kvstore.Put("probe", []byte(fmt.Sprint(n.rec.now()))))
						cancel()
						break
					}
				}
			}
			sent := time.Now()
			resp, err := n.c.ask(g.Node(), &actors.ReadRequest{Meta: actors.NewMeta(300 * time.Millisecond),
				Query: kvstore.Get("probe"), Consistency: actors.Consistency_LINEARIZABLE})
			ok := err == nil && resp != nil
			n.mu.Lock()
			n.probes.Sent++
			switch {
			case ok && !newLeaderAt.IsZero() && sent.After(newLeaderAt):
				n.probes.AfterNewLeader++
				n.mu.Unlock()
				n.violation("stale-read probe: isolated old leader %s (term %d) served a linearizable read sent after a new leader was elected", old.id, term)
				continue
			case ok:
				n.probes.OKBeforeNewLeader++
			}
			n.mu.Unlock()
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}

// membership changes the group under load: grow, shrink, or replace a
// follower, the leader or a partitioned follower (add a new node, then
// remove the old one).
func (n *nemesis) membership(ctx context.Context, i int, rng *rand.Rand, leader *member, followers []*member) {
	live := n.c.live()
	mctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	add := func() *member {
		m, err := n.c.add(mctx)
		n.wl.setMembers(n.c.peers())
		n.admin.SetMembers(n.c.peers())
		if err != nil {
			m.joining = true
			n.event(i, KindMembership, "add %s: %v", m.id, err)
			return nil
		}
		n.event(i, KindMembership, "added %s", m.id)
		return m
	}
	remove := func(m *member, why string) {
		err := n.c.remove(mctx, m, n.admin)
		n.wl.setMembers(n.c.peers())
		n.admin.SetMembers(n.c.peers())
		n.event(i, KindMembership, "remove %s (%s): %s", m.id, why, errText(err))
	}
	choice := rng.Intn(5)
	switch {
	case choice == 0 && len(live) < 5:
		add()
	case choice == 1 && len(live) > 3 && len(followers) > 0:
		remove(followers[rng.Intn(len(followers))], "shrink")
	case choice == 2 && leader != nil:
		if add() != nil {
			remove(leader, "replace the leader")
		}
	case choice == 3 && len(followers) > 0:
		m := followers[rng.Intn(len(followers))]
		n.c.faults.Isolate(raft.ServerID(m.id))
		n.event(i, KindMembership, "isolated %s before replacing it", m.id)
		if add() != nil {
			remove(m, "replace a partitioned follower")
		}
	case len(followers) > 0:
		m := followers[rng.Intn(len(followers))]
		if add() != nil {
			remove(m, "replace a follower")
		}
	}
}

// snapshotCatchUp makes the leader snapshot while m is cut off, heals m and
// waits for it to catch up.
func (n *nemesis) snapshotCatchUp(ctx context.Context, i int, m *member, before *actors.StatusResponse) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	snap, err := n.admin.Snapshot(sctx)
	n.event(i, KindSnapshot, "leader snapshot at %d: %s", snap.GetIndex(), errText(err))
	n.c.faults.Heal()
	leader := n.c.leader()
	if leader == nil {
		return
	}
	lst, err := n.c.status(leader)
	if err != nil {
		return
	}
	for sctx.Err() == nil {
		st, err := n.c.status(m)
		if err == nil && st.AppliedIndex >= lst.CommitIndex {
			n.event(i, KindSnapshot, "%s caught up to %d (snapshot index %d -> %d)", m.id, st.AppliedIndex,
				before.GetLastSnapshotIndex(), st.GetLastSnapshotIndex())
			return
		}
		sleepCtx(sctx, 50*time.Millisecond)
	}
	n.event(i, KindSnapshot, "%s did not catch up to %d within 10s", m.id, lst.CommitIndex)
}

// setTimeouts changes the timeouts of the leader through the Client and of
// every other running node at its front door (timeouts are per node).
func (n *nemesis) setTimeouts(ctx context.Context, t *actors.Timeouts) string {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var errs []string
	if _, err := n.admin.UpdateTimeouts(tctx, t); err != nil {
		errs = append(errs, "leader: "+err.Error())
	}
	for _, m := range n.c.running() {
		if _, err := n.c.ask(m.g.FrontDoor(), &actors.UpdateTimeoutsRequest{Meta: actors.NewMeta(askTimeout * 9 / 10), Timeouts: t}); err != nil {
			errs = append(errs, m.id+": "+err.Error())
		}
	}
	if len(errs) == 0 {
		return "ok"
	}
	return fmt.Sprint(errs)
}

// timeoutsProto is the reloadable part of t, to put a node back to it.
func timeoutsProto(t raftactor.Timeouts) *actors.Timeouts {
	return &actors.Timeouts{
		Heartbeat:         durationpb.New(t.Heartbeat),
		Election:          durationpb.New(t.Election),
		SnapshotThreshold: t.SnapshotThreshold,
	}
}

// heal removes every network fault, starts every member that is not
// running and finishes interrupted joins.
func (n *nemesis) heal(ctx context.Context, i int) {
	n.c.faults.Heal()
	for _, m := range n.c.live() {
		if m.g == nil {
			if err := n.c.start(m); err != nil {
				n.event(i, "heal", "start %s: %v", m.id, err)
			}
		}
	}
	for _, m := range n.c.live() {
		if m.joining && m.g != nil {
			jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := m.g.Join(jctx, n.c.peers()...)
			cancel()
			if err == nil {
				m.joining = false
			}
			n.event(i, "heal", "join %s again: %s", m.id, errText(err))
		}
	}
}

func shuffle(rng *rand.Rand, ms []*member) []*member {
	out := append([]*member(nil), ms...)
	rng.Shuffle(len(out), func(a, b int) { out[a], out[b] = out[b], out[a] })
	return out
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

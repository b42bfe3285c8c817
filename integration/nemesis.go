package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"time"
)

// nemesis applies a schedule to a group through its carrier. Each step
// draws its targets and sizes from its own Param, in the same order on
// every run, so a seed (or a pinned schedule) picks the same victims as
// far as the group's state (who leads) is the same.
type nemesis struct {
	c    carrier
	rec  *recorder
	logf func(string, ...any)
	// The carrier's optional faults; nil when it has none of that kind.
	net     network
	pause   pauser
	crash   crasher
	members reconfigurer
	snap    snapshotter
	retime  retimer
	probe   prober
	clocks  clocker
	nets    netFaulter
	disk    damager

	// param is the Param of the step being played, for the overlays that
	// ride on a step's own fault.
	param    int64
	disks    disker
	upgrades upgrader

	mu sync.Mutex
	// rejoins are the recoveries of damaged nodes, run by the next heal
	// (deferRejoin).
	rejoins    []func(context.Context)
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

func newNemesis(c carrier, rec *recorder, logf func(string, ...any)) *nemesis {
	n := &nemesis{c: c, rec: rec, logf: logf, faults: map[Kind]int{}}
	n.net, _ = c.(network)
	n.pause, _ = c.(pauser)
	n.crash, _ = c.(crasher)
	n.members, _ = c.(reconfigurer)
	n.snap, _ = c.(snapshotter)
	n.retime, _ = c.(retimer)
	n.probe, _ = c.(prober)
	n.clocks, _ = c.(clocker)
	n.nets, _ = c.(netFaulter)
	n.disk, _ = c.(damager)
	n.disks, _ = c.(disker)
	n.upgrades, _ = c.(upgrader)
	return n
}

// supports reports whether the carrier can inject k.
func (n *nemesis) supports(k Kind) bool {
	switch k {
	case KindStopLeader, KindRestart, KindSigkill, KindSigkillLeader, KindGracefulRestart:
		return true
	case KindIsolateLeader:
		return n.net != nil && n.probe != nil
	case KindPartitionMinority, KindPartitionMajority, KindRing, KindOneWay, KindDrop, KindDelay:
		return n.net != nil
	case KindCrash:
		return n.crash != nil
	case KindMembership:
		return n.members != nil && n.net != nil
	case KindSnapshot:
		return n.snap != nil && n.net != nil
	case KindTimeouts:
		return n.retime != nil
	case KindSigstopLeader:
		return n.pause != nil
	case KindBlackhole, KindOneWayBlackhole, KindNetem:
		return n.nets != nil
	case KindUpgrade:
		return n.upgrades != nil && len(n.upgrades.outdated()) > 0
	}
	return false
}

func (n *nemesis) event(step int, k Kind, format string, args ...any) {
	e := Event{At: n.rec.now(), Step: step, Kind: k, Detail: fmt.Sprintf(format, args...)}
	n.mu.Lock()
	n.events = append(n.events, e)
	n.mu.Unlock()
	n.logf("nemesis %d %s: %s", step, k, e.Detail)
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
	n.param = s.Param
	var undo []func()
	// A network fault goes first, while the step's leader still leads.
	for _, k := range s.Kinds {
		if isNetKind(k) {
			n.applyNet(ctx, i, k, s.Param)
		}
	}
	for _, k := range s.Kinds {
		if isNetKind(k) {
			continue
		}
		if u := n.apply(ctx, i, k, rng); u != nil {
			undo = append(undo, u)
		}
	}
	for _, overlay := range []func(context.Context, int, int64) func(){n.clockOverlay, n.diskOverlay, n.powerOverlay} {
		if u := overlay(ctx, i, s.Param); u != nil {
			undo = append(undo, u)
		}
	}
	sleepCtx(ctx, s.Hold)
	for j := len(undo) - 1; j >= 0; j-- {
		undo[j]()
	}
}

// clockSalt separates the clock overlay's draws from the step's own, so
// adding it changed no victim or size any pinned seed draws.
const clockSalt = 0x636c6f636b

// clockDrawn says whether the step of param moves a clock.
func clockDrawn(param int64) bool {
	return rand.New(rand.NewSource(param^clockSalt)).Intn(3) == 0
}

// clockOverlay moves one node's wall clock for a third of the steps, by
// one second to two hours, forward or back, drawn from the step's Param;
// what it returns moves the clock back. The group must behave as if
// nothing happened: no session expires early, no result changes.
func (n *nemesis) clockOverlay(ctx context.Context, i int, param int64) func() {
	if n.clocks == nil {
		return nil
	}
	if !clockDrawn(param) {
		return nil
	}
	rng := rand.New(rand.NewSource(param ^ clockSalt))
	rng.Intn(3)
	running := runningNodes(n.c)
	if len(running) == 0 {
		return nil
	}
	id := running[rng.Intn(len(running))]
	if rng.Intn(2) == 0 {
		if leader := leaderOf(ctx, n.c); leader != "" {
			id = leader
		}
	}
	d := time.Second * time.Duration(1+rng.Intn(2*3600))
	if rng.Intn(2) == 0 {
		d = -d
	}
	if !n.clocks.jumpClock(id, d) {
		return nil
	}
	n.count(KindClock)
	n.event(i, KindClock, "moved the wall clock of %s by %v", id, d)
	return func() {
		n.clocks.jumpClock(id, -d)
		n.event(i, KindClock, "moved the wall clock of %s back", id)
	}
}

// Salts of the disk overlays' draws, for the same reason as clockSalt.
const (
	diskSalt  = 0x6469736b66756c6c // "diskfull"
	powerSalt = 0x706f776572637574 // "powercut"
)

// overlayDrawn says whether the overlay of salt rides on the step of param
// (one step in five), and returns its random source, past that draw.
func overlayDrawn(param, salt int64) (*rand.Rand, bool) {
	rng := rand.New(rand.NewSource(param ^ salt))
	return rng, rng.Intn(5) == 0
}

// diskVictim picks a running node for a disk overlay: the leader half of
// the time.
func (n *nemesis) diskVictim(ctx context.Context, rng *rand.Rand) string {
	running := runningNodes(n.c)
	if len(running) == 0 {
		return ""
	}
	id := running[rng.Intn(len(running))]
	if rng.Intn(2) == 0 {
		if leader := leaderOf(ctx, n.c); leader != "" {
			id = leader
		}
	}
	return id
}

// diskOverlay fills one node's disk for a fifth of the steps until the
// step ends: in-process its log writes fail with ENOSPC (or, one time in
// three, its fsyncs with EIO); a process's own small file system is filled
// with a ballast file. What it returns gives the space back.
func (n *nemesis) diskOverlay(ctx context.Context, i int, param int64) func() {
	if n.disks == nil {
		return nil
	}
	if fill, _ := n.disks.diskFaults(); !fill {
		return nil
	}
	rng, drawn := overlayDrawn(param, diskSalt)
	if !drawn {
		return nil
	}
	id := n.diskVictim(ctx, rng)
	if id == "" {
		return nil
	}
	what, heal, ok := n.disks.fillDisk(ctx, id, rng)
	if !ok {
		return nil
	}
	n.count(KindDiskFull)
	n.event(i, KindDiskFull, "disk of %s full: %s", id, what)
	return func() {
		n.event(i, KindDiskFull, "disk of %s has space again (%s)", id, heal())
	}
}

// powerOverlay cuts one node's power for a fifth of the steps and
// checks that its data directory still holds every entry it reported as
// stored; what it returns starts it again from that directory.
func (n *nemesis) powerOverlay(ctx context.Context, i int, param int64) func() {
	if n.disks == nil {
		return nil
	}
	if _, cut := n.disks.diskFaults(); !cut {
		return nil
	}
	rng, drawn := overlayDrawn(param, powerSalt)
	if !drawn {
		return nil
	}
	id := n.diskVictim(ctx, rng)
	if id == "" {
		return nil
	}
	reported, onDisk, detail, err := n.disks.powerCut(ctx, id)
	if errors.Is(err, errNotCut) {
		n.event(i, KindPowerCut, "skipped %s: %v", id, err)
		return nil
	}
	n.count(KindPowerCut)
	if detail != "" {
		detail = ", " + detail
	}
	n.event(i, KindPowerCut, "power of %s cut: reported last index %d, its data directory holds up to %d%s: %s", id, reported, onDisk, detail, errText(err))
	if err != nil {
		n.violation("power cut of %s: %v", id, err)
	} else if onDisk < reported {
		n.violation("power cut of %s lost entries it reported stored: last index %d before the cut, %d on disk after it", id, reported, onDisk)
	}
	return func() {
		err := n.c.start(ctx, id)
		n.event(i, KindPowerCut, "restarted %s from what its disk held: %s", id, errText(err))
	}
}

// apply starts one fault and returns what ends it (beyond heal), or nil.
func (n *nemesis) apply(ctx context.Context, i int, k Kind, rng *rand.Rand) func() {
	running := runningNodes(n.c)
	if len(running) == 0 {
		n.event(i, k, "skipped: no node up")
		return nil
	}
	leader := leaderOf(ctx, n.c)
	var followers []string
	for _, id := range running {
		if id != leader {
			followers = append(followers, id)
		}
	}
	restartAfter := func(id string) func() {
		return func() {
			err := n.c.start(ctx, id)
			n.event(i, k, "restarted %s from its data directory: %s", id, errText(err))
		}
	}
	switch k {
	case KindIsolateLeader:
		if leader == "" {
			n.event(i, k, "no leader to isolate")
			return nil
		}
		st, _ := n.c.status(ctx, leader)
		n.net.isolate(leader)
		n.count(k)
		n.event(i, k, "isolated %s (term %d)", leader, st.GetTerm())
		return n.probeIsolated(ctx, i, leader, st.GetTerm(), followers)
	case KindPartitionMinority, KindPartitionMajority:
		live := n.c.nodes()
		if len(live) < 3 {
			return nil
		}
		shuffled := shuffle(rng, live)
		size := rng.Intn((len(live)-1)/2) + 1
		var minority []string
		if k == KindPartitionMajority && leader != "" {
			minority = append(minority, leader)
			for _, id := range shuffled {
				if len(minority) < size && id != leader {
					minority = append(minority, id)
				}
			}
		} else {
			minority = shuffled[:size]
		}
		in := map[string]bool{}
		for _, id := range minority {
			in[id] = true
		}
		var majority []string
		for _, id := range live {
			if !in[id] {
				majority = append(majority, id)
			}
		}
		n.net.partition(minority, majority)
		n.count(k)
		n.event(i, k, "%v | %v", minority, majority)
	case KindRing:
		live := shuffle(rng, n.c.nodes())
		if len(live) < 3 {
			return nil
		}
		neighbour := func(a, b int) bool {
			d := (a - b + len(live)) % len(live)
			return d == 1 || d == len(live)-1
		}
		var cut [][2]string
		if len(live) == 3 {
			// Three nodes on a ring all neighbour each other: cut the ends
			// of a line instead, so the middle one bridges them.
			a, b := live[0], live[2]
			cut = append(cut, [2]string{a, b}, [2]string{b, a})
		}
		for a := range live {
			for b := range live {
				if len(live) > 3 && a != b && !neighbour(a, b) {
					cut = append(cut, [2]string{live[a], live[b]})
				}
			}
		}
		for _, p := range cut {
			n.net.cut(p[0], p[1])
		}
		n.count(k)
		n.event(i, k, "ring %v, cut %v", live, cut)
	case KindOneWay:
		if leader == "" {
			return nil
		}
		if rng.Intn(2) == 0 {
			n.net.cut(leader, anyNode)
			n.event(i, k, "%s -> everyone cut", leader)
		} else {
			n.net.cut(anyNode, leader)
			n.event(i, k, "everyone -> %s cut", leader)
		}
		n.count(k)
	case KindDrop:
		pct := float64(5 + rng.Intn(30))
		n.net.drop(anyNode, anyNode, pct)
		n.count(k)
		n.event(i, k, "drop %.0f%% of all RPCs", pct)
	case KindDelay:
		d := time.Duration(2+rng.Intn(40)) * time.Millisecond
		j := time.Duration(1+rng.Intn(40)) * time.Millisecond
		if rng.Intn(2) == 0 {
			n.net.delay(anyNode, anyNode, d, j)
			n.event(i, k, "delay all RPCs %v + up to %v", d, j)
		} else {
			id := running[rng.Intn(len(running))]
			n.net.delay(id, anyNode, d, j)
			n.net.delay(anyNode, id, d, j)
			n.event(i, k, "delay %s's RPCs %v + up to %v", id, d, j)
		}
		n.count(k)
	case KindStopLeader:
		if leader == "" {
			return nil
		}
		err := n.c.stop(ctx, leader)
		n.count(k)
		n.event(i, k, "stopped %s (the heal starts it again): %s", leader, errText(err))
	case KindCrash:
		id := leader
		if id == "" || rng.Intn(2) == 0 {
			id = running[rng.Intn(len(running))]
		}
		err := n.crash.crash(id)
		n.count(k)
		n.event(i, k, "supervisor restart of %s (leader %v): %v", id, id == leader, errText(err))
		return func() { n.crash.recovered(ctx, id) }
	case KindRestart:
		id := running[rng.Intn(len(running))]
		err := n.c.kill(id)
		if err == nil {
			if u := n.damageOverlay(ctx, i, id, n.param); u != nil {
				// The overlay damaged the stopped node's files and starts it.
				n.count(k)
				n.event(i, k, "stopped %s to damage its files (leader %v)", id, id == leader)
				u()
				return nil
			}
			err = n.c.start(ctx, id)
		}
		n.count(k)
		n.event(i, k, "restarted %s from disk (leader %v): %v", id, id == leader, errText(err))
	case KindMembership:
		n.count(k)
		n.membership(ctx, i, rng, leader, followers)
	case KindSnapshot:
		if leader == "" || len(followers) == 0 {
			return nil
		}
		id := followers[rng.Intn(len(followers))]
		before, _ := n.c.status(ctx, id)
		n.net.isolate(id)
		n.count(k)
		n.event(i, k, "isolated %s (last index %d, snapshot %d)", id, before.GetLastIndex(), before.GetLastSnapshotIndex())
		return func() { n.snapshotCatchUp(ctx, i, id, before.GetLastSnapshotIndex()) }
	case KindTimeouts:
		hb := time.Duration(250+rng.Intn(400)) * time.Millisecond
		el := hb + time.Duration(rng.Intn(300))*time.Millisecond
		t := raftTimeouts{Heartbeat: hb, Election: el, SnapshotThreshold: uint64(50 + rng.Intn(300))}
		n.count(k)
		n.event(i, k, "heartbeat %v election %v snapshot threshold %d: %s", hb, el, t.SnapshotThreshold, errText(n.setTimeouts(ctx, t)))
		return func() {
			n.event(i, k, "restored: %s", errText(n.setTimeouts(ctx, n.retime.defaultTimeouts())))
		}
	case KindSigkill, KindSigkillLeader:
		victim := running[rng.Intn(len(running))]
		if k == KindSigkillLeader {
			if victim = n.leaderOrSkip(ctx, i, k, leader); victim == "" {
				return nil
			}
		}
		err := n.c.kill(victim)
		n.count(k)
		n.event(i, k, "killed %s: %s", victim, errText(err))
		if err == nil {
			if u := n.damageOverlay(ctx, i, victim, n.param); u != nil {
				return u
			}
		}
		return restartAfter(victim)
	case KindSigstopLeader:
		l := n.leaderOrSkip(ctx, i, k, leader)
		if l == "" {
			return nil
		}
		st, _ := n.c.status(ctx, l)
		if err := n.pause.pause(l); err != nil {
			n.event(i, k, "pause %s: %v", l, err)
			return nil
		}
		n.count(k)
		term := st.GetTerm()
		n.event(i, k, "paused leader %s (term %d)", l, term)
		return func() {
			// Say whether the others elected a new leader meanwhile: that
			// is the case the check is about.
			if nl := leaderOf(ctx, n.c); nl != "" {
				if nst, err := n.c.status(ctx, nl); err == nil && nst.GetTerm() > term {
					n.event(i, k, "new leader %s at term %d while %s was paused", nl, nst.GetTerm(), l)
				}
			}
			n.event(i, k, "resumed %s: %s", l, errText(n.pause.resume(l)))
		}
	case KindGracefulRestart:
		victim := running[rng.Intn(len(running))]
		err := n.c.stop(ctx, victim)
		n.count(k)
		n.event(i, k, "stopped %s: %s", victim, errText(err))
		restartAfter(victim)()
	case KindUpgrade:
		n.upgrade(ctx, i, leader)
	default:
		n.event(i, k, "unknown nemesis")
	}
	return nil
}

// leaderOrSkip returns leader, or waits a little for one, or records that
// the step is skipped and returns "".
func (n *nemesis) leaderOrSkip(ctx context.Context, i int, k Kind, leader string) string {
	if leader != "" {
		return leader
	}
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	l, err := waitLeader(lctx, n.c)
	if err != nil {
		n.event(i, k, "skipped: %v", err)
	}
	return l
}

// probeIsolated sends linearizable reads straight to an isolated leader's
// node until the step ends, and reports any that succeeds after the rest
// of the group elected a newer leader: two nodes would then serve reads as
// leader, and the old one's could miss acknowledged writes.
func (n *nemesis) probeIsolated(ctx context.Context, i int, old string, term uint64, others []string) func() {
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
				for _, id := range others {
					if st, err := n.c.status(ctx, id); err == nil && st.GetState() == "Leader" && st.GetTerm() > term {
						newLeaderAt = time.Now()
						n.event(i, KindIsolateLeader, "%s leads in term %d while %s is cut off", id, st.GetTerm(), old)
						// A write through the new leader makes a read that the
						// old one might still serve observably stale.
						wctx, cancel := context.WithTimeout(ctx, time.Second)
						_ = n.probe.probeWrite(wctx, fmt.Sprint(n.rec.now()))
						cancel()
						break
					}
				}
			}
			sent := time.Now()
			rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			ok := n.probe.probeRead(rctx, old) == nil
			cancel()
			n.mu.Lock()
			n.probes.Sent++
			switch {
			case ok && !newLeaderAt.IsZero() && sent.After(newLeaderAt):
				n.probes.AfterNewLeader++
				n.mu.Unlock()
				n.violation("stale-read probe: isolated old leader %s (term %d) served a linearizable read sent after a new leader was elected", old, term)
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
func (n *nemesis) membership(ctx context.Context, i int, rng *rand.Rand, leader string, followers []string) {
	live := n.c.nodes()
	mctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	add := func() bool {
		id, err := n.members.add(mctx)
		if err != nil {
			n.event(i, KindMembership, "add %s: %v", id, err)
			return false
		}
		n.event(i, KindMembership, "added %s", id)
		return true
	}
	remove := func(id, why string) {
		err := n.members.remove(mctx, id)
		n.event(i, KindMembership, "remove %s (%s): %s", id, why, errText(err))
	}
	choice := rng.Intn(5)
	switch {
	case choice == 0 && len(live) < 5:
		add()
	case choice == 1 && len(live) > 3 && len(followers) > 0:
		remove(followers[rng.Intn(len(followers))], "shrink")
	case choice == 2 && leader != "":
		if add() {
			remove(leader, "replace the leader")
		}
	case choice == 3 && len(followers) > 0:
		id := followers[rng.Intn(len(followers))]
		n.net.isolate(id)
		n.event(i, KindMembership, "isolated %s before replacing it", id)
		if add() {
			remove(id, "replace a partitioned follower")
		}
	case len(followers) > 0:
		id := followers[rng.Intn(len(followers))]
		if add() {
			remove(id, "replace a follower")
		}
	}
}

// snapshotCatchUp makes the leader snapshot while id is cut off, heals the
// network and waits for id to catch up.
func (n *nemesis) snapshotCatchUp(ctx context.Context, i int, id string, snapshotBefore uint64) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	index, err := n.snap.snapshot(sctx)
	n.event(i, KindSnapshot, "leader snapshot at %d: %s", index, errText(err))
	n.net.healNetwork()
	leader := leaderOf(sctx, n.c)
	if leader == "" {
		return
	}
	lst, err := n.c.status(sctx, leader)
	if err != nil {
		return
	}
	for sctx.Err() == nil {
		st, err := n.c.status(sctx, id)
		if err == nil && st.GetAppliedIndex() >= lst.GetCommitIndex() {
			n.event(i, KindSnapshot, "%s caught up to %d (snapshot index %d -> %d)", id, st.GetAppliedIndex(),
				snapshotBefore, st.GetLastSnapshotIndex())
			return
		}
		sleepCtx(sctx, 50*time.Millisecond)
	}
	n.event(i, KindSnapshot, "%s did not catch up to %d within 10s", id, lst.GetCommitIndex())
}

// setTimeouts changes every running node's timeouts, bounded.
func (n *nemesis) setTimeouts(ctx context.Context, t raftTimeouts) error {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return n.retime.setTimeouts(tctx, t)
}

// heal removes every network fault, resumes every paused node, starts
// every node that is not running and finishes interrupted joins.
func (n *nemesis) heal(ctx context.Context, i int) {
	if n.net != nil {
		n.net.healNetwork()
	}
	if n.nets != nil {
		if err := n.nets.healNet(); err != nil {
			n.event(i, kindHeal, "heal the network: %s", errText(err))
		}
	}
	n.runRejoins(ctx)
	for _, id := range n.c.nodes() {
		if n.pause != nil && n.pause.paused(id) {
			n.event(i, kindHeal, "resume %s: %s", id, errText(n.pause.resume(id)))
		}
		if n.c.running(id) {
			continue
		}
		var err error
		for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
			if err = n.c.start(ctx, id); err == nil {
				break
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
		n.event(i, kindHeal, "start %s: %s", id, errText(err))
	}
	if n.members == nil {
		return
	}
	for _, id := range n.members.joining() {
		jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := n.members.join(jctx, id)
		cancel()
		n.event(i, kindHeal, "join %s again: %s", id, errText(err))
	}
}

func shuffle(rng *rand.Rand, ids []string) []string {
	out := append([]string(nil), ids...)
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

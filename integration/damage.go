package integration

import (
	"context"
	"math/rand"

	"github.com/protoraft/protoraft/internal/diskdamage"
)

// damageSalt separates the damage overlay's draws from the step's own,
// so that adding it changed no victim or size any pinned seed draws.
const damageSalt = 0x6469736b

// damageDrawn says which damage, if any, the kill step of param does to
// its victim's files: half the kill steps damage them, a torn tail or a
// flipped bit alike often.
func damageDrawn(param int64) Kind {
	rng := rand.New(rand.NewSource(param ^ damageSalt))
	if rng.Intn(2) != 0 {
		return ""
	}
	if rng.Intn(2) == 0 {
		return KindTornTail
	}
	return KindCorruptFile
}

// damageOverlay damages the files of id, just killed, when the step of
// param draws it, and returns what starts id again (nil when it draws
// nothing or the carrier has no files). A torn tail must be rolled back:
// a node that refuses to start on one is a violation. A flipped bit may
// be refused (the node found the damage) or not (it fell in a torn-looking
// tail, rolled back); a refused node is removed, wiped and joins again.
func (n *nemesis) damageOverlay(ctx context.Context, i int, id string, param int64) func() {
	if n.disk == nil {
		return nil
	}
	k := damageDrawn(param)
	if k == "" {
		return nil
	}
	rng := rand.New(rand.NewSource(param ^ damageSalt))
	rng.Intn(2)
	rng.Intn(2)
	dir := n.disk.dataDir(id)
	var d diskdamage.Damage
	var err error
	if k == KindTornTail {
		d, err = diskdamage.TornTail(dir, rng)
	} else {
		d, err = diskdamage.Corrupt(dir, rng)
	}
	if err != nil {
		n.event(i, k, "no damage to %s: %v", id, err)
		return nil
	}
	n.count(k)
	n.event(i, k, "%s of %s", d, id)
	return func() {
		refused, err := n.disk.startDamaged(ctx, id)
		switch {
		case err == nil:
			n.event(i, k, "%s started: the damage was rolled back", id)
		case !refused:
			n.event(i, k, "start %s: %v", id, err)
		case k == KindTornTail:
			n.violation("%s refused to start after a torn tail (%s): %v", id, d, err)
		default:
			n.event(i, k, "%s refused to start: its data directory is damaged", id)
			n.deferRejoin(func(ctx context.Context) {
				n.event(i, k, "%s removed, wiped and joined again: %s", id, errText(n.disk.rejoin(ctx, id)))
			})
		}
	}
}

// deferRejoin leaves the recovery of a node that refused its damaged
// files to the heal that ends the step: the step's network faults may
// still cut that node off (a blackhole on it in the network namespace
// mode), and a node that cannot reach the others cannot join them.
func (n *nemesis) deferRejoin(r func(context.Context)) {
	n.mu.Lock()
	n.rejoins = append(n.rejoins, r)
	n.mu.Unlock()
}

// runRejoins runs the recoveries deferRejoin left, once the network is
// whole again.
func (n *nemesis) runRejoins(ctx context.Context) {
	n.mu.Lock()
	rs := n.rejoins
	n.rejoins = nil
	n.mu.Unlock()
	for _, r := range rs {
		r(ctx)
	}
}

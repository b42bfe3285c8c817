package integration

import (
	"math/rand"
	"time"
)

// Kind names a nemesis: one kind of fault.
type Kind string

// The nemeses. Which a run can use depends on its carrier (see carrier.go):
// the network faults need a carrier that can fault Raft RPCs between nodes,
// a pause needs processes, a supervisor restart needs node actors; the
// node kills and restarts work on every carrier.
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
	// KindStopLeader stops the leader gracefully for the step and starts
	// it again from its data directory afterwards.
	KindStopLeader Kind = "stop-leader"
	// KindCrash makes the group's supervisor restart a node actor, as a
	// panic in it would.
	KindCrash Kind = "node-crash"
	// KindRestart kills a node (it dies without saying goodbye) and starts
	// it again from its data directory at once.
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

	// KindSigkill kills a random node (SIGKILL for a process) and starts it
	// again from its data directory after the hold.
	KindSigkill Kind = "sigkill"
	// KindSigkillLeader kills the leader and starts it again from its data
	// directory after the hold.
	KindSigkillLeader Kind = "sigkill-leader"
	// KindSigstopLeader freezes the leader (SIGSTOP) for longer than an
	// election, then lets it run on (SIGCONT): the woken old leader must
	// not answer linearizable (or lease) reads from its stale term, which
	// the linearizability check sees in the history.
	KindSigstopLeader Kind = "sigstop-leader"
	// KindGracefulRestart stops a random node gracefully (SIGTERM for a
	// process) and starts it again at once: a restart with no partition
	// and no crash.
	KindGracefulRestart Kind = "graceful-restart"
	// KindClock moves one node's wall clock seconds to hours forward or
	// back for the step (the leader's half of the time), as a node whose
	// clock is set wrong or stepped by NTP: it must change no result. It
	// is not drawn by the schedules, whose draws are pinned: it rides on
	// top of a third of the in-process steps, chosen from the step's Param
	// (clockOverlay).
	KindClock Kind = "clock"
	// KindTornTail damages a SIGKILLed node's files before it restarts:
	// a half-written copy of the newest log segment's last batch, or
	// garbage, is written after its end, as a crash mid-write leaves it.
	// What was written before stays whole: it was synced, and may have
	// been acknowledged (diskdamage.TornTail).
	// The node must roll the torn write back and rejoin. Like the clock,
	// it is not drawn by the schedules: it rides on a kill step, chosen
	// from the step's Param (damageOverlay).
	KindTornTail Kind = "torn-tail"
	// KindCorruptFile flips a random bit in a random log segment (sealed
	// or open) or snapshot file of a SIGKILLed node before it restarts.
	// The node must refuse to start (or roll back a torn-looking tail);
	// a refused node is removed, wiped and joins again, the documented
	// recovery. It rides on kill steps as KindTornTail does.
	KindCorruptFile Kind = "corrupt-file"
	// KindPowerCut cuts one node's power (the leader's half of the time):
	// everything it wrote since its last fsync is lost (faults.Disk), it
	// stops, and it starts again from what its disk holds once the step
	// ends. Every entry it reported as stored before the cut must still be
	// in its data directory, and the checkers must stay green. Like
	// KindClock it is not drawn by the schedules: it rides on a fifth of
	// the in-process steps, chosen from the step's Param (powerOverlay).
	KindPowerCut Kind = "power-cut"
	// KindDiskFull fails one node's log writes with "no space left on
	// device" (or its fsyncs with an I/O error) for the step, the leader's
	// half of the time, and gives the space back after it: the node must
	// refuse what it cannot store, acknowledge nothing that is not durable,
	// and take part again without a restart. It rides on a fifth of the
	// in-process steps (diskOverlay).
	KindDiskFull Kind = "disk-full"
	// KindUpgrade moves one node of the process carrier to the later build
	// (Processes.Upgrade): it is stopped gracefully, as an operator stops
	// it, and started on the later build from the same data directory and
	// addresses; the step waits until it has caught up with the leader's
	// commit index, as the upgrade runbook does before the next node.
	// Followers go first, the leader last. Schedules never draw it: a
	// rolling-upgrade test names it in its steps.
	KindUpgrade Kind = "upgrade"
)

// kindHeal marks the events of the heal after every step.
const kindHeal Kind = "heal"

// AllKinds are the in-process carrier's nemeses, in a fixed order so that
// a seed always picks the same ones.
var AllKinds = []Kind{
	KindIsolateLeader, KindPartitionMinority, KindPartitionMajority, KindRing, KindOneWay,
	KindDrop, KindDelay, KindStopLeader, KindCrash, KindRestart, KindMembership, KindSnapshot, KindTimeouts,
}

// ProcessKinds are the process carrier's nemeses, in a fixed order so that
// a seed always picks the same ones.
var ProcessKinds = []Kind{KindSigkill, KindSigkillLeader, KindSigstopLeader, KindGracefulRestart}

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

// Schedule builds the in-process carrier's random schedule from seed that
// fills about d: any kind at each step, now and then with a network fault
// on top.
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

// ProcessSchedule builds the process carrier's random schedule from seed
// that fills about d. It draws the kinds in rounds, each a random order of
// all of them, so that even a short run meets every kind. A frozen leader
// is held longer than an election timeout (the sample's is 500ms) so that
// the others elect a new one; the quiet time lets a restarted process
// rejoin before the next fault.
func ProcessSchedule(seed int64, d time.Duration, kinds []Kind) []Step {
	rng := rand.New(rand.NewSource(seed))
	var steps []Step
	var total time.Duration
	var round []Kind
	for total < d {
		if len(round) == 0 {
			round = append([]Kind(nil), kinds...)
			rng.Shuffle(len(round), func(a, b int) { round[a], round[b] = round[b], round[a] })
		}
		k := round[0]
		round = round[1:]
		s := Step{
			Kinds: []Kind{k},
			Hold:  time.Duration(400+rng.Intn(1000)) * time.Millisecond,
			Quiet: time.Duration(500+rng.Intn(500)) * time.Millisecond,
			Param: rng.Int63(),
		}
		if k == KindSigstopLeader {
			s.Hold = time.Duration(1500+rng.Intn(1500)) * time.Millisecond
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

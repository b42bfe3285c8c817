package integration

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"time"

	"github.com/protoraft/protoraft/actors"
)

// carrier is what the runner needs of a group under test: it starts,
// stops, kills and asks its nodes, makes the workload's clients and reads
// the final state. The runner decides when and to whom, the carrier knows
// how: through node actors in one ActorSystem (inproc.go) or through
// samples/kv processes and their HTTP API (process.go). Nodes are named by
// their IDs.
//
// The faults a carrier can inject beyond start, stop and kill are the
// small interfaces below it implements; the nemeses that need one are
// offered only on carriers that do (nemesis.supports).
type carrier interface {
	// name says which carrier ran, in reports and artifacts.
	name() string
	// kinds are the nemeses a schedule draws from when the run names
	// none, in a fixed order; schedule draws one from seed that fills
	// about d (Schedule or ProcessSchedule).
	kinds() []Kind
	schedule(seed int64, d time.Duration, kinds []Kind) []Step

	// nodes returns the IDs of the members, running or not, removed ones
	// excepted, sorted.
	nodes() []string
	// running reports whether id's node is up: started, and not paused.
	running(id string) bool
	// status asks id's own node for its view of the group.
	status(ctx context.Context, id string) (*actors.StatusResponse, error)
	// start starts id's node from its data directory, unless it runs.
	start(ctx context.Context, id string) error
	// stop stops id's node gracefully, as an operator would (a leader
	// hands leadership over); its data directory stays.
	stop(ctx context.Context, id string) error
	// kill ends id's node without a goodbye to its peers and with nothing
	// flushed beyond what Raft synced; its data directory stays.
	kill(id string) error

	// clients makes the workload's n clients (and any the carrier adds),
	// each with a random source derived from seed, recording into rec.
	clients(rec *recorder, seed int64, n, keys int) []client
	// read reads key linearizably for the final state, through via when
	// the carrier can choose, and says which node answered ("" when it
	// cannot tell).
	read(ctx context.Context, key, via string) (out Output, node string)
	// state is id's whole state, read from its own node.
	state(ctx context.Context, id string) (nodeState, error)

	// incidents are what went wrong outside the schedule, such as a node
	// that died on its own; each is a violation.
	incidents() []string
	// stuck describes where a group that does not converge is stuck, for
	// the artifacts ("" when the carrier cannot tell).
	stuck() string
	// save writes the carrier's own artifacts of a failed run into dir.
	save(dir string) error
	// close stops every node and frees everything; later calls do
	// nothing.
	close()
}

// anyNode stands for every node in a network fault's from or to.
const anyNode = "*"

// network is a carrier that can fault the Raft RPCs between its nodes.
type network interface {
	// isolate cuts id off from everyone, both ways.
	isolate(id string)
	// partition cuts every RPC between a node of a and one of b.
	partition(a, b []string)
	// cut drops every RPC from from to to.
	cut(from, to string)
	// drop loses percent of the RPCs from from to to.
	drop(from, to string, percent float64)
	// delay holds the RPCs from from to to for d plus up to jitter.
	delay(from, to string, d, jitter time.Duration)
	// healNetwork removes every network fault.
	healNetwork()
}

// pauser is a carrier that can freeze a node and let it run on later,
// with its sockets open and its peers' bytes waiting (SIGSTOP, SIGCONT).
type pauser interface {
	pause(id string) error
	resume(id string) error
	paused(id string) bool
}

// crasher is a carrier whose nodes have a supervisor that restarts them
// after a failure, as a panic in the node actor would cause.
type crasher interface {
	crash(id string) error
	// recovered returns once a crashed node answers again (or a bound
	// passes), and from then on counts it as a new incarnation.
	recovered(ctx context.Context, id string)
}

// reconfigurer is a carrier that can change the group's membership.
type reconfigurer interface {
	// add starts a new, empty node and joins it as a voter; a join that
	// fails is left to the heal (joining, join).
	add(ctx context.Context) (id string, err error)
	// remove removes id through the leader (a leader leaves, handing
	// leadership over) and stops it.
	remove(ctx context.Context, id string) error
	// joining lists the nodes whose join has not completed.
	joining() []string
	// join completes id's interrupted join.
	join(ctx context.Context, id string) error
	// retire stops id for good: a member the configuration does not hold
	// (a join that never finished, a removal whose reply was lost).
	retire(id string)
}

// snapshotter is a carrier that can make the leader snapshot and compact
// its log.
type snapshotter interface {
	snapshot(ctx context.Context) (index uint64, err error)
}

// raftTimeouts are the Raft timeouts a node can change at run time.
type raftTimeouts struct {
	Heartbeat, Election time.Duration
	SnapshotThreshold   uint64
}

// retimer is a carrier that can change every node's Raft timeouts at run
// time.
type retimer interface {
	setTimeouts(ctx context.Context, t raftTimeouts) error
	// defaultTimeouts are those the nodes started with.
	defaultTimeouts() raftTimeouts
}

// duplicateFinder is a carrier that sees every command every node applies
// and so finds a write applied twice (applyLedger).
type duplicateFinder interface {
	duplicates() []string
}

// damager is a carrier whose stopped nodes' files the runner can damage,
// and that can carry out the documented recovery of a node that refuses
// to start on damaged files (docs/operations.md).
type damager interface {
	// dataDir is id's data directory.
	dataDir(id string) string
	// startDamaged starts id after its files were damaged; refused says it
	// would not start because it found its data directory damaged.
	startDamaged(ctx context.Context, id string) (refused bool, err error)
	// rejoin removes id from the group through the leader, deletes its
	// data directory, and starts it empty, joining the group again. Its
	// writes live on the majority: what it lost it lost legitimately.
	rejoin(ctx context.Context, id string) error
}

// clocker is a carrier whose nodes read a wall clock it can move.
type clocker interface {
	// jumpClock moves node id's wall clock by d (forward or back; moves
	// add up) and reports whether the node has such a clock.
	jumpClock(id string, d time.Duration) bool
}

// disker is a carrier whose nodes' disks it can fill and whose power it
// can cut: through a faults.Disk under each node's log (in-process), or
// through a small real file system of each node's own (processes, as
// root).
type disker interface {
	// diskFaults says which of the two this carrier's nodes can suffer
	// in this run.
	diskFaults() (fill, cut bool)
	// fillDisk fills id's disk, drawing from rng how where the carrier has
	// a choice, and returns what it did and what gives the space back
	// (which says what the node met meanwhile); ok is false when id has no
	// disk the carrier can fill.
	fillDisk(ctx context.Context, id string, rng *rand.Rand) (what string, heal func() string, ok bool)
	// powerCut cuts id's power and stops it; it returns the last index id
	// reported just before, the last one its data directory holds after,
	// and what the cut took (for the event). errNotCut says it did not cut.
	powerCut(ctx context.Context, id string) (reported, onDisk uint64, detail string, err error)
}

// crashCounter counts the nodes that crashed in a way the run excuses: a
// process that panicked on its full disk, as hashicorp/raft does when its
// stable store cannot write. Not a violation; the heal starts it again,
// and the checks still hold it to every acknowledged write.
type crashCounter interface {
	crashes() []string
}

// prober is a carrier that can send a linearizable read straight to one
// node, bypassing the routing of its clients, for the stale-read probe on
// an isolated leader.
type prober interface {
	// probeRead reads the probe key on id's node itself.
	probeRead(ctx context.Context, id string) error
	// probeWrite writes the probe key through the leader.
	probeWrite(ctx context.Context, value string) error
}

// probeKey is the key the stale-read probe writes and reads; the workload
// never uses it.
const probeKey = "probe"

// nodeState is one node's whole state as it answers a stale read of every
// key: the applied index it reflects and each key's value and revision.
type nodeState struct {
	applied uint64
	// entries are "key=value@revision".
	entries []string
}

// String lists the state one line per key, in key order, so two nodes'
// states compare as strings.
func (s nodeState) String() string {
	lines := append([]string(nil), s.entries...)
	sort.Strings(lines)
	return strings.Join(append([]string{fmt.Sprintf("applied=%d", s.applied)}, lines...), "\n")
}

// runningNodes returns the IDs of the running nodes, sorted.
func runningNodes(c carrier) []string {
	var out []string
	for _, id := range c.nodes() {
		if c.running(id) {
			out = append(out, id)
		}
	}
	return out
}

// leaderOf returns the running node that says it leads, or "". When two
// say so (an isolated old leader that has not stepped down yet) the one
// with the higher term wins.
func leaderOf(ctx context.Context, c carrier) string {
	var best string
	var term uint64
	for _, id := range runningNodes(c) {
		st, err := c.status(ctx, id)
		if err == nil && st.GetState() == "Leader" && (best == "" || st.GetTerm() > term) {
			best, term = id, st.GetTerm()
		}
	}
	return best
}

// waitLeader waits until a leader is known, or ctx ends.
func waitLeader(ctx context.Context, c carrier) (string, error) {
	for {
		if l := leaderOf(ctx, c); l != "" {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no leader: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

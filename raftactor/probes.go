package raftactor

import (
	"cmp"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/internal/wire"
)

// Leadership probes are the one way a leader asks voters whether they still
// follow it: a LeadershipProbe answered with the voter's term and, when the
// voter follows the prober, the age of its last contact with it (peers.go
// sends and answers them). Raft's own acknowledgements cannot serve: they
// may describe messages the voter took before the question arose (see
// confirm). Three rules read the answers:
//   - a read confirmation (confirm, probeTally): a quorum of the voters in
//     the leader's term, after the read index was noted;
//   - the guard on removing or demoting a voter (quorumAfterLosing): enough
//     of the remaining voters following this leader with a fresh contact;
//   - the guard on promoting a non-voter (awaitCaughtUp): the non-voter
//     itself following this leader with a fresh contact, having applied
//     the commit index the leader had when it began to wait.

// prober sends leadership probes; peers is the real one.
type prober interface {
	localID() raft.ServerID
	probe(id raft.ServerID, target raft.ServerAddress) (*wire.LeadershipProbeAnswer, error)
}

// localID is the prober's own server ID.
func (p peers) localID() raft.ServerID { return p.self }

// probeVoters probes every server of voters, each from a goroutine of its
// own, and sends each answer (or why there is none) to answers, which must
// have room for all of them.
func probeVoters(p prober, voters []raft.Server, answers chan<- probeAnswer) {
	for _, s := range voters {
		go func() {
			start := time.Now()
			a, err := p.probe(s.ID, s.Address)
			answers <- probeAnswer{id: s.ID, answer: a, err: err, took: time.Since(start)}
		}()
	}
}

// probeAnswer is one voter's answer to a probe, or why there is none, and
// how long it took.
type probeAnswer struct {
	id     raft.ServerID
	answer *wire.LeadershipProbeAnswer
	err    error
	took   time.Duration
}

// errProbeSlow marks a voter that did not answer within the hedge.
var errProbeSlow = errors.New("no answer to a leadership probe within the hedge")

// probeLatencies remembers how fast each voter answered probes lately, so
// that rounds ask the fastest first. The zero value is ready.
type probeLatencies struct {
	mu   sync.Mutex
	ewma map[raft.ServerID]time.Duration
}

// Hedge bounds: a first wave that has not answered after hedgeFactor times
// its usual round trip (but at least minHedge, at most maxHedge) is taken to
// be slow, and the other voters are asked too.
const (
	hedgeFactor = 4
	minHedge    = 500 * time.Microsecond
	maxHedge    = 50 * time.Millisecond
)

// plan orders peers fastest first, voters never measured ahead of all (so
// each gets measured), and returns how many of them to ask at once (n, or
// all when fewer) and how long to wait for those before asking the rest.
func (l *probeLatencies) plan(peers []raft.Server, n int) (first int, hedge time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.SortStableFunc(peers, func(a, b raft.Server) int { return cmp.Compare(l.ewma[a.ID], l.ewma[b.ID]) })
	first = min(n, len(peers))
	var slowest time.Duration
	for _, s := range peers[:first] {
		slowest = max(slowest, l.ewma[s.ID])
	}
	return first, min(max(hedgeFactor*slowest, minHedge), maxHedge)
}

// observe records an answer's round trip; a failed probe counts as slow
// as the hedge allows, so the voter goes to the back of the line.
func (l *probeLatencies) observe(a probeAnswer) {
	took := a.took
	if a.err != nil {
		took = maxHedge
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ewma == nil {
		l.ewma = make(map[raft.ServerID]time.Duration)
	}
	if old, ok := l.ewma[a.id]; ok {
		took = old + (took-old)/8
	}
	l.ewma[a.id] = took
}

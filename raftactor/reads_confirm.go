package raftactor

import (
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// confirm notes the commit index, then probes the other voters of the
// latest configuration (probeQuorum) until a quorum answered in this term
// (probeTally). Raft's own VerifyLeader cannot serve here: it counts any
// heartbeat or append acknowledged after it was called, including one the
// follower took before the read arrived, so a leader cut off while such
// acknowledgements are still on their way would vouch for an index that a
// newer leader's writes have passed.
func (b *readIndexBatcher) confirm(r *raft.Raft, probe prober, round *readRound) {
	start := monoNow()
	b.counts.rounds.Add(1)
	defer func() { b.counts.roundNanos.Add(uint64(max(monoNow()-start, 0))) }()
	round.term = r.CurrentTerm()
	if r.State() != raft.Leader {
		round.err = actors.NotLeader(leaderOf(r))
		return
	}
	round.index = r.CommitIndex()
	cf := r.GetConfiguration()
	if err := cf.Error(); err != nil {
		round.err = raftError(r, err)
		return
	}
	tally, peers := newProbeTally(round.term, cf.Configuration(), probe.localID())
	b.probeQuorum(probe, tally, peers)
	switch {
	case tally.newer:
		round.err = actors.NotLeader(nil)
	case !tally.confirmed():
		round.err = actors.Errorf(actors.Code_UNAVAILABLE, "leadership not confirmed: %d of the %d votes a quorum needs answered in term %d", tally.votes, tally.need, round.term)
	case r.CurrentTerm() != round.term:
		round.err = actors.NotLeader(leaderOf(r))
	default:
		if age, ok := tally.leaseAge(); ok {
			b.confirmed.Store(&confirmation{term: round.term, at: start - age})
		}
	}
}

// probeQuorum probes peers until tally is decided. It asks first only as
// many as a quorum needs, those that answered fastest lately, and the rest
// when one of those fails or answers from another term, or when they take
// longer than the hedge: under read load every probe costs the followers
// and the links, and one answer is all a group of three needs.
func (b *readIndexBatcher) probeQuorum(probe prober, tally *probeTally, peers []raft.Server) {
	answers := make(chan probeAnswer, len(peers))
	send := func(group []raft.Server) {
		b.counts.probes.Add(uint64(len(group)))
		probeVoters(probe, group, answers)
	}
	first, hedge := b.latencies.plan(peers, max(tally.need-tally.votes, 0))
	send(peers[:first])
	rest := peers[first:]
	// silent is the first wave still unanswered: if the hedge fires on
	// them, they count as slow, or the next round would ask them first
	// again and wait for the hedge again.
	silent := make(map[raft.ServerID]bool, first)
	for _, s := range peers[:first] {
		silent[s.ID] = true
	}
	var hedgeFired <-chan time.Time
	if len(rest) > 0 {
		timer := time.NewTimer(hedge)
		defer timer.Stop()
		hedgeFired = timer.C
	}
	for !tally.decided() {
		select {
		case a := <-answers:
			delete(silent, a.id)
			b.latencies.observe(a)
			if counted := tally.add(a); !counted && len(rest) > 0 {
				b.counts.hedges.Add(1)
				send(rest)
				rest, hedgeFired = nil, nil
			}
		case <-hedgeFired:
			for id := range silent {
				b.latencies.observe(probeAnswer{id: id, err: errProbeSlow})
			}
			b.counts.hedges.Add(1)
			send(rest)
			rest, hedgeFired = nil, nil
		}
	}
}

// probeTally counts one round's answers. It is the whole rule by which a
// leader takes itself to still lead:
//   - a quorum of the latest configuration's voters must be in the round's
//     term when the probe reaches them, this node counting for itself when
//     it is a voter. Quorums of successive configurations overlap (Raft
//     changes one server at a time), so any leader of a later term was
//     elected by a quorum holding one of these voters, which would then be
//     in that later term already: so none was elected before the round.
//   - one answer from a later term decides the round: another leader may
//     exist.
//   - the lease is as old as the oldest contact among the first quorum of
//     answers that report one (leaseAge).
type probeTally struct {
	term    uint64
	need    int // votes a quorum needs
	votes   int // answers in term, plus this node's own
	pending int // probes not answered yet
	self    bool
	newer   bool            // an answer came from a later term
	ages    []time.Duration // contact ages among the counted answers
}

// newProbeTally starts a tally for term over cfg and returns the voters to
// probe: every voter but self.
func newProbeTally(term uint64, cfg raft.Configuration, self raft.ServerID) (*probeTally, []raft.Server) {
	t := &probeTally{term: term}
	var peers []raft.Server
	voters := 0
	for _, s := range cfg.Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if s.ID == self {
			t.self = true
			t.votes++
			continue
		}
		peers = append(peers, s)
	}
	t.need = voters/2 + 1
	t.pending = len(peers)
	return t, peers
}

// add counts one answer and reports whether it was a vote.
func (t *probeTally) add(a probeAnswer) bool {
	t.pending--
	switch {
	case a.err != nil:
	case a.answer.GetTerm() > t.term:
		t.newer = true
	case a.answer.GetTerm() == t.term:
		t.votes++
		if age := a.answer.GetContactAgeNanos(); age >= 0 {
			t.ages = append(t.ages, time.Duration(age))
		}
		return true
	}
	return false
}

// decided reports whether the answers so far settle the round.
func (t *probeTally) decided() bool {
	return t.newer || t.votes >= t.need || t.votes+t.pending < t.need
}

// confirmed reports whether a quorum vouched for the term.
func (t *probeTally) confirmed() bool { return !t.newer && t.votes >= t.need }

// leaseAge is how long before the round began the lease it establishes
// starts: the largest contact age among the fewest answers that make a
// quorum with this node. ok is false when too few answers report a
// contact, or this node is no voter (it cannot vouch that it votes for no
// one else).
func (t *probeTally) leaseAge() (age time.Duration, ok bool) {
	if !t.self || !t.confirmed() {
		return 0, false
	}
	n := t.need - 1
	if len(t.ages) < n {
		return 0, false
	}
	if n == 0 {
		return 0, true
	}
	ages := slices.Clone(t.ages)
	slices.Sort(ages)
	return ages[n-1], true
}

package raftactor

import (
	"slices"
	"strings"
	"time"

	"github.com/protoraft/protoraft/internal/wire"
)

// defaultSessionTTL is how long a client's session lives after its last
// write, measured by the replicated clock.
const defaultSessionTTL = 10 * time.Minute

// maxSessionResults bounds the results one session remembers; a client with
// more writes in flight than this loses exactly-once for the oldest.
const maxSessionResults = 1024

// sessions is the replicated session table that makes client retries
// exactly-once: a write carries a client ID and a sequence number, and a
// sequence applied before is answered with its first result instead of
// being applied again.
//
// A session starts with an explicit open (a "session" entry, which raises
// its floor) and lives while its client writes. A write marked registered
// is refused, never applied, when the table does not know its client
// (sessionExpired): after the session expired, the table cannot tell a
// retry of an applied sequence from a new one, and applying it could apply
// it twice. Unmarked writes, which every log written before explicit opens
// holds, still start their session, so old logs replay to the state they
// always had.
//
// Each life of a session has an identity, its open index: the log index of
// the open that created it. Every copy of that open is answered with it
// while the session lives, and the client names it in each write. A copy
// of an open can arrive after the session expired (duplicated in flight,
// held in a mailbox) and create the session again, with the old floor and
// none of the old results; a retry of a write applied before the expiry
// would then be applied a second time. It names the old life, though, so
// it is refused with sessionExpired. A write that names none (0: clients
// and log entries from before open indexes), or a session that has none
// (restored from a snapshot from before them), is not checked.
//
// Everything here is a function of the log alone. The clock is the
// largest replicated time stamped on the session entries applied so far
// (EntryMeta.leader_unix_nano). A leader stamps the replicated clock its
// own state machine had reached when it began stamping in its term (after
// an entry of its term applied, so every earlier entry had) plus the time
// its monotonic clock measured since; never a wall-clock reading. So no
// node's wall clock, however wrong, moves it; time without a leader does
// not count, which lets sessions live longer, never shorter; and every
// node expires the same sessions at the same log position. It is touched
// only on Raft's FSM goroutine or under the fsm's write lock.
type sessions struct {
	ttl       int64
	clock     int64
	lastSweep int64
	byClient  map[string]*session
}

type session struct {
	ackedBelow uint64
	// floor is the sequence of the session's last open: a sequence below it
	// belongs to an earlier opening and is refused as expired.
	floor uint64
	// openIndex identifies this life of the session: the log index of the
	// open that created it, or of the first open that found it without
	// one (a session started by an unmarked write, or restored from a
	// snapshot from before open indexes). 0 while unknown: writes are then
	// not checked against it.
	openIndex  uint64
	lastActive int64
	results    map[uint64]rememberedResult
}

type rememberedResult commandResult

// duplicateWrite is what Apply returns for a retried write: the first
// result and the index it was applied at.
type duplicateWrite rememberedResult

// staleSequence is what Apply returns for a sequence whose result the client
// already acknowledged, so it is forgotten and cannot be answered.
type staleSequence struct{}

// sessionExpired is what Apply returns for a registered write whose
// session the table does not know, or whose sequence lies below the floor
// of the session's last open: it was not applied, and an earlier attempt
// of it may have been.
type sessionExpired struct {
	// reopened: the session is known, opened again above the sequence.
	reopened bool
	// liveOpen, when set, is the open index of the session the table
	// knows, which is not the one the write names: the write's session
	// expired and was created again since.
	liveOpen uint64
}

// sessionOpened is what Apply returns for a session open: the open index
// of the session it opened or refreshed, which the client names in its
// writes.
type sessionOpened struct {
	openIndex uint64
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: int64(ttl), byClient: map[string]*session{}}
}

// tick moves the replicated clock to an entry's stamp if it is later.
func (s *sessions) tick(m *wire.EntryMeta) { s.clock = max(s.clock, m.GetLeaderUnixNano()) }

// open starts the session of m's client, or refreshes it, and raises its
// floor (and what it has acknowledged) to m's sequence, so no older
// sequence of the client can be applied after it. Applying the same open
// again changes nothing but the session's last activity. A session it
// starts takes index, the open's log index, as its open index; one it
// refreshes keeps its own, so every copy of an open is answered alike
// while the session lives.
func (s *sessions) open(m *wire.EntryMeta, index uint64) any {
	s.tick(m)
	c := s.byClient[m.GetClientId()]
	if c == nil {
		c = &session{results: map[uint64]rememberedResult{}}
		s.byClient[m.GetClientId()] = c
	}
	if c.openIndex == 0 {
		c.openIndex = index
	}
	c.lastActive = s.clock
	if m.GetSequence() > c.floor {
		c.floor = m.GetSequence()
	}
	c.acknowledge(c.floor)
	return sessionOpened{openIndex: c.openIndex}
}

// apply runs one session write through the table: a known sequence gets its
// remembered result, a forgotten one staleSequence, a registered write of
// an unknown session, of another life of it (open index) or below its
// floor sessionExpired, a new one is applied by run and remembered with
// the command index run applied it at.
func (s *sessions) apply(m *wire.EntryMeta, run func() commandResult) any {
	s.tick(m)
	c := s.byClient[m.ClientId]
	if c == nil {
		if m.GetRegistered() {
			return sessionExpired{}
		}
		c = &session{results: map[uint64]rememberedResult{}}
		s.byClient[m.ClientId] = c
	}
	if want := m.GetOpenIndex(); want != 0 && c.openIndex != 0 && want != c.openIndex {
		// Checked before the write counts as activity: it belongs to a
		// life of the session that is over, not to this one.
		return sessionExpired{liveOpen: c.openIndex}
	}
	c.lastActive = s.clock
	if r, ok := c.results[m.Sequence]; ok {
		return duplicateWrite(r)
	}
	if m.Sequence < c.floor {
		return sessionExpired{reopened: true}
	}
	if m.Sequence < c.ackedBelow {
		return staleSequence{}
	}
	res := run()
	c.results[m.Sequence] = rememberedResult(res)
	c.acknowledge(m.AckedBelow)
	if len(c.results) > maxSessionResults {
		seqs := make([]uint64, 0, len(c.results))
		for seq := range c.results {
			seqs = append(seqs, seq)
		}
		slices.Sort(seqs)
		for _, seq := range seqs[:len(seqs)-maxSessionResults] {
			delete(c.results, seq)
		}
		c.ackedBelow = max(c.ackedBelow, seqs[len(seqs)-maxSessionResults])
	}
	return res
}

// acknowledge raises what the session's client acknowledged to below and
// forgets the results under it.
func (c *session) acknowledge(below uint64) {
	if below <= c.ackedBelow {
		return
	}
	c.ackedBelow = below
	for seq := range c.results {
		if seq < below {
			delete(c.results, seq)
		}
	}
}

// expire drops sessions idle for longer than the TTL. It sweeps at most
// every eighth of the TTL of replicated time, so a busy log pays little.
func (s *sessions) expire() {
	if s.ttl <= 0 || s.clock-s.lastSweep < s.ttl/8 {
		return
	}
	s.lastSweep = s.clock
	for id, c := range s.byClient {
		if s.clock-c.lastActive > s.ttl {
			delete(s.byClient, id)
		}
	}
}

// table captures the sessions for a snapshot, in a deterministic order so
// equal tables give equal bytes.
func (s *sessions) table() *wire.SessionTable {
	t := &wire.SessionTable{Clock: s.clock}
	for id, c := range s.byClient {
		ps := &wire.Session{ClientId: id, AckedBelow: c.ackedBelow, Floor: c.floor, OpenIndex: c.openIndex, LastActive: c.lastActive}
		for seq, r := range c.results {
			ps.Results = append(ps.Results, &wire.SessionResult{Sequence: seq, Result: r.result, Index: r.index})
		}
		slices.SortFunc(ps.Results, func(a, b *wire.SessionResult) int { return cmpUint(a.Sequence, b.Sequence) })
		t.Sessions = append(t.Sessions, ps)
	}
	slices.SortFunc(t.Sessions, func(a, b *wire.Session) int { return strings.Compare(a.ClientId, b.ClientId) })
	return t
}

// restore replaces the table with one from a snapshot. A session of a
// snapshot from before open indexes has none (0), so the writes its client
// sends are not checked against it until an open gives it one.
func (s *sessions) restore(t *wire.SessionTable) {
	s.clock, s.lastSweep = t.GetClock(), t.GetClock()
	s.byClient = map[string]*session{}
	for _, ps := range t.GetSessions() {
		c := &session{ackedBelow: ps.AckedBelow, floor: ps.Floor, openIndex: ps.OpenIndex, lastActive: ps.LastActive, results: map[uint64]rememberedResult{}}
		for _, r := range ps.Results {
			c.results[r.Sequence] = rememberedResult{result: r.Result, index: r.Index}
		}
		s.byClient[ps.ClientId] = c
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

package raftactor

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/wire"
)

// indexLog is a state machine that records every command with the index it
// was applied at, and answers each with that index.
type indexLog struct{ applied []string }

func (s *indexLog) Apply(index uint64, command []byte) []byte {
	s.applied = append(s.applied, fmt.Sprintf("%d:%s", index, command))
	return binary.BigEndian.AppendUint64(nil, index)
}
func (s *indexLog) Query([]byte) ([]byte, error) { return nil, nil }
func (s *indexLog) Snapshot() (Snapshot, error) {
	return indexLogSnapshot(append([]string(nil), s.applied...)), nil
}
func (s *indexLog) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.applied = nil
	if len(b) > 0 {
		for _, l := range bytes.Split(b, []byte{'\n'}) {
			s.applied = append(s.applied, string(l))
		}
	}
	return err
}

type indexLogSnapshot []string

func (s indexLogSnapshot) Persist(w io.Writer) error {
	_, err := io.WriteString(w, strings.Join(s, "\n"))
	return err
}
func (indexLogSnapshot) Release() {}

// write is a pending write for logEntry: a command and an optional session.
func testWrite(command, client string, seq uint64) pendingWrite {
	m := &actors.RequestMeta{ClientId: client, Sequence: seq}
	return pendingWrite{req: &actors.WriteRequest{Meta: m, Command: []byte(command)}}
}

func entryAt(t *testing.T, index uint64, writes ...pendingWrite) *raft.Log {
	t.Helper()
	l, err := logEntry(writes, time.Unix(1700000000, 0).UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	l.Index, l.Term, l.Type = index, 1, raft.LogCommand
	return &l
}

func applyOne(f *fsm, l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

func TestBatchCommandsGetTheirOwnIndexes(t *testing.T) {
	sm := &indexLog{}
	f := newFSM(sm, time.Hour)
	if got, ok := applyOne(f, entryAt(t, 5, testWrite("a", "", 0))).(commandResult); !ok || got.index != 5 || !bytes.Equal(got.result, u64(5)) {
		t.Fatalf("single entry at 5: %+v", got)
	}
	res, ok := applyOne(f, entryAt(t, 6, testWrite("b", "", 0), testWrite("c", "", 0), testWrite("d", "", 0))).(batchResults)
	if !ok || len(res) != 3 {
		t.Fatalf("batch at 6: %#v", res)
	}
	for i, want := range []uint64{6, 7, 8} {
		if cr := res[i].(commandResult); cr.index != want || !bytes.Equal(cr.result, u64(want)) {
			t.Fatalf("batch command %d: %+v, want index %d", i, cr, want)
		}
	}
	// The next entries sit at log indexes the batch already numbered:
	// their commands are numbered on, until the log overtakes.
	if got := applyOne(f, entryAt(t, 7, testWrite("e", "", 0))).(commandResult); got.index != 9 {
		t.Fatalf("entry at 7 after the batch: index %d, want 9", got.index)
	}
	if got := applyOne(f, entryAt(t, 20, testWrite("f", "", 0))).(commandResult); got.index != 20 {
		t.Fatalf("entry at 20: index %d, want 20", got.index)
	}
	want := []string{"5:a", "6:b", "7:c", "8:d", "9:e", "20:f"}
	if fmt.Sprint(sm.applied) != fmt.Sprint(want) {
		t.Fatalf("applied %v, want %v", sm.applied, want)
	}
	if _, idx, _ := f.query(nil); idx != 20 {
		t.Fatalf("query reflects command index %d, want 20", idx)
	}
}

func TestBatchSessionsAreExactlyOnce(t *testing.T) {
	sm := &indexLog{}
	f := newFSM(sm, time.Hour)
	res := applyOne(f, entryAt(t, 3,
		testWrite("x", "c1", 1),
		testWrite("x-retry", "c1", 1), // the same write, retried while the first waited
		testWrite("y", "c2", 1),
		testWrite("z", "", 0),
	)).(batchResults)
	first := res[0].(commandResult)
	if dup, ok := res[1].(duplicateWrite); !ok || dup.index != first.index || !bytes.Equal(dup.result, first.result) {
		t.Fatalf("retry inside the batch: %#v, first %+v", res[1], first)
	}
	if got := []uint64{first.index, res[2].(commandResult).index, res[3].(commandResult).index}; fmt.Sprint(got) != "[3 4 5]" {
		t.Fatalf("indexes %v, want [3 4 5]", got)
	}
	// A retry in a later single entry gets the same first result.
	if dup, ok := applyOne(f, entryAt(t, 4, testWrite("x-again", "c1", 1))).(duplicateWrite); !ok || dup.index != 3 {
		t.Fatalf("retry in a later entry: %#v", dup)
	}
	if fmt.Sprint(sm.applied) != "[3:x 4:y 5:z]" {
		t.Fatalf("applied %v", sm.applied)
	}
}

func TestUndecodableBatchIsAppliedAsNothingEverywhere(t *testing.T) {
	sm := &indexLog{}
	f := newFSM(sm, time.Hour)
	ext, _ := proto.Marshal(&wire.EntryMeta{System: systemBatch})
	res := applyOne(f, &raft.Log{Index: 2, Type: raft.LogCommand, Data: []byte{0xff, 0xff}, Extensions: ext})
	if r, ok := res.(batchResults); !ok || r != nil {
		t.Fatalf("undecodable batch: %#v", res)
	}
	if len(sm.applied) != 0 {
		t.Fatalf("applied %v", sm.applied)
	}
}

func TestSnapshotKeepsTheCommandIndex(t *testing.T) {
	f := newFSM(&indexLog{}, time.Hour)
	applyOne(f, entryAt(t, 10, testWrite("a", "", 0), testWrite("b", "", 0), testWrite("c", "", 0)))
	restored := restoreInto(t, f, &indexLog{})
	if got := restored.lastCommand.Load(); got != 12 {
		t.Fatalf("restored command index %d, want 12", got)
	}
	if got := applyOne(restored, entryAt(t, 11, testWrite("d", "", 0))).(commandResult); got.index != 13 {
		t.Fatalf("after restore: index %d, want 13", got.index)
	}
}

func TestSnapshotFromBeforeBatchingNumbersFromItsAppliedIndex(t *testing.T) {
	// A snapshot written before batching has no command index in its
	// session table.
	ext, _ := proto.Marshal(&wire.SessionTable{Clock: 1})
	var buf bytes.Buffer
	sink := &memSink{Buffer: &buf}
	if err := (&fsmSnapshot{snap: indexLogSnapshot{"7:a"}, applied: 8, ext: ext}).Persist(sink); err != nil {
		t.Fatal(err)
	}
	f := newFSM(&indexLog{}, time.Hour)
	if err := f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if got := f.lastCommand.Load(); got != 8 {
		t.Fatalf("command index %d, want the applied index 8", got)
	}
	if got := applyOne(f, entryAt(t, 9, testWrite("b", "", 0))).(commandResult); got.index != 9 {
		t.Fatalf("next command: index %d, want its log index 9", got.index)
	}
}

func restoreInto(t *testing.T, from *fsm, sm StateMachine) *fsm {
	t.Helper()
	snap, err := from.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&memSink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	to := newFSM(sm, time.Hour)
	if err := to.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	return to
}

type memSink struct{ *bytes.Buffer }

func (memSink) ID() string    { return "mem" }
func (memSink) Cancel() error { return nil }
func (memSink) Close() error  { return nil }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func TestLeaseHeldOnlyWithinTheLeaseOfAConfirmationOfThisTerm(t *testing.T) {
	var b readIndexBatcher
	lease := 500 * time.Millisecond
	if b.leaseHeld(3, lease, time.Second) {
		t.Fatal("lease held without any confirmation")
	}
	b.confirmed.Store(&confirmation{term: 3, at: time.Second})
	for _, c := range []struct {
		term uint64
		now  time.Duration
		want bool
	}{
		{3, time.Second + 100*time.Millisecond, true},
		{3, time.Second + 499*time.Millisecond, true},
		// A leader paused past its lease finds it gone when it resumes.
		{3, time.Second + 500*time.Millisecond, false},
		{3, time.Minute, false},
		// A confirmation of an earlier term never counts.
		{4, time.Second + 100*time.Millisecond, false},
	} {
		if got := b.leaseHeld(c.term, lease, c.now); got != c.want {
			t.Errorf("term %d at %v: lease held %v, want %v", c.term, c.now, got, c.want)
		}
	}
}

// oldEntry is a session write as builds before explicit session opens
// wrote it: no registered mark, stamped with the leader's wall clock.
func oldEntry(t *testing.T, index uint64, wall time.Time, client string, seq, acked uint64, cmd string) *raft.Log {
	t.Helper()
	ext, err := proto.Marshal(&wire.EntryMeta{ClientId: client, Sequence: seq, AckedBelow: acked, LeaderUnixNano: wall.UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: []byte(cmd), Extensions: ext}
}

// Logs written before explicit opens replay to the state they always had:
// an unmarked write starts its session, and after the session expired by
// the (then wall-clock) stamps, a retry starts it again and is applied.
func TestOldFormatSessionWritesReplayAsBefore(t *testing.T) {
	sm := &indexLog{}
	f := newFSM(sm, time.Minute)
	t0 := time.Unix(1700000000, 0)
	if _, ok := applyOne(f, oldEntry(t, 1, t0, "c", 1, 0, "a")).(commandResult); !ok {
		t.Fatal("first write not applied")
	}
	if _, ok := applyOne(f, oldEntry(t, 2, t0.Add(time.Second), "c", 1, 0, "a")).(duplicateWrite); !ok {
		t.Fatal("retry within the TTL not answered from the table")
	}
	applyOne(f, oldEntry(t, 3, t0.Add(2*time.Minute), "other", 1, 1, "b"))
	if _, ok := applyOne(f, oldEntry(t, 4, t0.Add(2*time.Minute), "c", 1, 0, "a")).(commandResult); !ok {
		t.Fatal("an unmarked write of an expired session was not applied as before")
	}
	if fmt.Sprint(sm.applied) != "[1:a 3:b 4:a]" {
		t.Fatalf("applied %v", sm.applied)
	}
	tb := f.sessions.table()
	if tb.Clock != t0.Add(2*time.Minute).UnixNano() || len(tb.Sessions) != 2 || tb.Sessions[0].ClientId != "c" || tb.Sessions[0].Floor != 0 {
		t.Fatalf("session table %v", tb)
	}
}

// sessionEntry is what the leader writes for one request now.
func sessionEntry(t *testing.T, index uint64, stamp int64, md *actors.RequestMeta, cmd string) *raft.Log {
	t.Helper()
	w := pendingWrite{req: &actors.WriteRequest{Meta: md, Command: []byte(cmd)}}
	l, err := logEntry([]pendingWrite{w}, stamp)
	if err != nil {
		t.Fatal(err)
	}
	l.Index, l.Term, l.Type = index, 1, raft.LogCommand
	return &l
}

func TestRegisteredWritesNeedAnOpenSession(t *testing.T) {
	sm := &indexLog{}
	f := newFSM(sm, time.Minute)
	reg := func(seq, acked uint64) *actors.RequestMeta {
		return &actors.RequestMeta{ClientId: "c", Sequence: seq, AckedBelow: acked, RegisteredSession: true}
	}
	open := func(floor uint64) *actors.RequestMeta {
		return &actors.RequestMeta{ClientId: "c", Sequence: floor, OpenSession: true}
	}
	if r, ok := applyOne(f, sessionEntry(t, 1, 0, reg(5, 0), "x")).(sessionExpired); !ok || r.reopened {
		t.Fatalf("registered write of an unknown session: %#v", r)
	}
	if _, ok := applyOne(f, sessionEntry(t, 2, 0, open(5), "")).(sessionOpened); !ok {
		t.Fatal("open not applied")
	}
	if _, ok := applyOne(f, sessionEntry(t, 3, 0, open(5), "")).(sessionOpened); !ok {
		t.Fatal("a retried open not applied")
	}
	if _, ok := applyOne(f, sessionEntry(t, 4, 0, reg(5, 5), "a")).(commandResult); !ok {
		t.Fatal("registered write of the open session not applied")
	}
	// A registered write in a batch is checked the same way.
	res := applyOne(f, entryAt(t, 5, pendingWrite{req: &actors.WriteRequest{Meta: reg(6, 5), Command: []byte("b")}},
		pendingWrite{req: &actors.WriteRequest{Meta: &actors.RequestMeta{ClientId: "d", Sequence: 1, RegisteredSession: true}, Command: []byte("never")}})).(batchResults)
	if _, ok := res[0].(commandResult); !ok {
		t.Fatalf("batched registered write: %#v", res[0])
	}
	if _, ok := res[1].(sessionExpired); !ok {
		t.Fatalf("batched registered write of an unknown session: %#v", res[1])
	}
	// Reopened above its sequences, the session refuses them as expired,
	// also after a snapshot.
	applyOne(f, sessionEntry(t, 6, 0, open(10), ""))
	f = restoreInto(t, f, sm)
	if r, ok := applyOne(f, sessionEntry(t, 7, 0, reg(6, 0), "b")).(sessionExpired); !ok || !r.reopened {
		t.Fatalf("sequence below the floor: %#v", r)
	}
	if _, ok := applyOne(f, sessionEntry(t, 8, 0, reg(10, 10), "c")).(commandResult); !ok {
		t.Fatal("first sequence of the reopened session not applied")
	}
	if fmt.Sprint(sm.applied) != "[4:a 5:b 8:c]" {
		t.Fatalf("applied %v", sm.applied)
	}
	if wr := writeResponse(sessionExpired{}, &actors.WriteRequest{Meta: reg(6, 0)}); actors.CodeOf(wr.Error) != actors.Code_SESSION_EXPIRED {
		t.Fatalf("response %v", wr)
	}
}

// The open index names one life of a session: every copy of the open that
// created it answers it, a write naming another life is refused, in a
// batch too, a write naming none is not checked, and a snapshot keeps it.
func TestWritesNamingAnotherLifeOfTheirSessionAreRefused(t *testing.T) {
	sm := &indexLog{}
	f := newFSM(sm, time.Minute)
	open := func(floor uint64) *actors.RequestMeta {
		return &actors.RequestMeta{ClientId: "c", Sequence: floor, OpenSession: true}
	}
	named := func(openIndex, seq uint64) *actors.RequestMeta {
		return &actors.RequestMeta{ClientId: "c", Sequence: seq, RegisteredSession: true, SessionOpenIndex: openIndex}
	}
	for _, index := range []uint64{2, 3} {
		if r, ok := applyOne(f, sessionEntry(t, index, 0, open(1), "")).(sessionOpened); !ok || r.openIndex != 2 {
			t.Fatalf("open at %d: %#v, want open index 2", index, r)
		}
	}
	if wr := writeResponse(sessionOpened{openIndex: 2}, &actors.WriteRequest{Meta: open(1)}); wr.SessionOpenIndex != 2 {
		t.Fatalf("open response %v", wr)
	}
	if _, ok := applyOne(f, sessionEntry(t, 4, 0, named(2, 1), "a")).(commandResult); !ok {
		t.Fatal("a write naming the session's open not applied")
	}
	r, ok := applyOne(f, sessionEntry(t, 5, 0, named(9, 2), "b")).(sessionExpired)
	if !ok || r.liveOpen != 2 {
		t.Fatalf("a write naming another open: %#v", r)
	}
	if wr := writeResponse(r, &actors.WriteRequest{Meta: named(9, 2)}); actors.CodeOf(wr.Error) != actors.Code_SESSION_EXPIRED {
		t.Fatalf("response %v", wr)
	}
	// Writes that name no open (clients from before open indexes) are not
	// checked.
	if _, ok := applyOne(f, sessionEntry(t, 6, 0, named(0, 2), "b")).(commandResult); !ok {
		t.Fatal("a registered write naming no open not applied")
	}
	res := applyOne(f, entryAt(t, 7,
		pendingWrite{req: &actors.WriteRequest{Meta: named(2, 3), Command: []byte("c")}},
		pendingWrite{req: &actors.WriteRequest{Meta: named(5, 4), Command: []byte("never")}})).(batchResults)
	if _, ok := res[0].(commandResult); !ok {
		t.Fatalf("batched write naming the session's open: %#v", res[0])
	}
	if r, ok := res[1].(sessionExpired); !ok || r.liveOpen != 2 {
		t.Fatalf("batched write naming another open: %#v", res[1])
	}
	f = restoreInto(t, f, sm)
	if r, ok := applyOne(f, sessionEntry(t, 8, 0, named(9, 5), "d")).(sessionExpired); !ok || r.liveOpen != 2 {
		t.Fatalf("after a snapshot, a write naming another open: %#v", r)
	}
	if r, ok := applyOne(f, sessionEntry(t, 9, 0, open(5), "")).(sessionOpened); !ok || r.openIndex != 2 {
		t.Fatalf("after a snapshot, an open: %#v", r)
	}
	if fmt.Sprint(sm.applied) != "[4:a 6:b 7:c]" {
		t.Fatalf("applied %v", sm.applied)
	}
}

// A session table from a snapshot written before open indexes decodes with
// its sessions' open index unknown: their writes are not checked, until an
// open gives the session the open's own index.
func TestSessionsFromSnapshotsBeforeOpenIndexesAreNotChecked(t *testing.T) {
	ext, err := proto.Marshal(&wire.SessionTable{Clock: 1, CommandIndex: 8, Sessions: []*wire.Session{
		{ClientId: "c", AckedBelow: 1, Floor: 1, LastActive: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := (&fsmSnapshot{snap: indexLogSnapshot{"7:a"}, applied: 8, ext: ext}).Persist(&memSink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	sm := &indexLog{}
	f := newFSM(sm, time.Hour)
	if err := f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	named := func(openIndex, seq uint64) *actors.RequestMeta {
		return &actors.RequestMeta{ClientId: "c", Sequence: seq, RegisteredSession: true, SessionOpenIndex: openIndex}
	}
	if _, ok := applyOne(f, sessionEntry(t, 9, 0, named(3, 1), "b")).(commandResult); !ok {
		t.Fatal("a write of a session without an open index not applied")
	}
	if r, ok := applyOne(f, sessionEntry(t, 10, 0, &actors.RequestMeta{ClientId: "c", Sequence: 2, OpenSession: true}, "")).(sessionOpened); !ok || r.openIndex != 10 {
		t.Fatalf("an open of a session without an open index: %#v, want 10", r)
	}
	if _, ok := applyOne(f, sessionEntry(t, 11, 0, named(3, 2), "c")).(sessionExpired); !ok {
		t.Fatal("a write naming another open once the session has one was not refused")
	}
	if _, ok := applyOne(f, sessionEntry(t, 12, 0, named(10, 2), "c")).(commandResult); !ok {
		t.Fatal("a write naming the session's open not applied")
	}
	if fmt.Sprint(sm.applied) != "[7:a 9:b 12:c]" {
		t.Fatalf("applied %v", sm.applied)
	}
	if tb := f.sessions.table(); len(tb.Sessions) != 1 || tb.Sessions[0].OpenIndex != 10 {
		t.Fatalf("session table %v", tb)
	}
}

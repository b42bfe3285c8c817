package raftactor

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/wire"
)

// defaultMaxWriteBatch is how many writes the leader packs into one log
// entry at most (Config.MaxWriteBatch).
const defaultMaxWriteBatch = 64

// maxWriteBatchBytes bounds the commands of one batch entry, so that an
// AppendEntries of Raft's 64 entries stays far below the remote message
// limit; a larger command goes into an entry of its own.
const maxWriteBatchBytes = 256 << 10

// writeBatch is the writes the leader has accepted and not yet handed to
// Raft. Writes that wait in the mailbox together go into the log as one
// entry: Raft then stores, replicates, reads back and applies one entry
// instead of many, and the whole batch waits on one future.
//
// The batch closes when the node's own flushWrites message, sent when the
// first write of the batch arrived, comes out of the mailbox: every write
// that was queued before it has joined by then, and a lone write waits for
// nothing but the messages already ahead of it. It closes early when full.
type writeBatch struct {
	writes []pendingWrite
	bytes  int
	// flushQueued says a flushWrites message is in the mailbox.
	flushQueued bool
}

// pendingWrite is one accepted write and how to answer it.
type pendingWrite struct {
	req      *actors.WriteRequest
	reply    *reply
	deadline time.Time
}

// flushWrites is the message the node sends itself to close the batch.
type flushWrites struct{}

// write accepts a command for the Raft log. Only the leader accepts
// writes; there is no other path to the state machine.
func (n *Node) write(ctx actor.Context, m *actors.WriteRequest) {
	if r := n.run.raft; r.State() != raft.Leader {
		n.respond(ctx, &actors.WriteResponse{Error: actors.NotLeader(leaderOf(r))})
		return
	}
	deadline := m.GetMeta().Deadline(n.cfg.RequestTimeout)
	rep := n.later(ctx, m, deadline)
	if rep == nil {
		return
	}
	w := pendingWrite{req: m, reply: rep, deadline: deadline}
	size := len(m.GetCommand())
	if n.cfg.MaxWriteBatch <= 1 || size >= maxWriteBatchBytes || m.GetMeta().GetOpenSession() {
		// A session open is an entry of its own kind, never batched.
		// Alone, but after the writes that arrived before it.
		n.flushWrites(false)
		n.apply([]pendingWrite{w})
		return
	}
	b := &n.batch
	if len(b.writes) > 0 && b.bytes+size > maxWriteBatchBytes {
		n.flushWrites(false)
	}
	b.writes = append(b.writes, w)
	b.bytes += size
	if len(b.writes) >= n.cfg.MaxWriteBatch {
		n.flushWrites(false)
		return
	}
	if !b.flushQueued {
		b.flushQueued = true
		ctx.Send(n.inbox, flushWrites{})
	}
}

// flushWrites hands the batch to Raft. fromMessage says the node's own
// flushWrites message triggered it (the batch closed early otherwise).
func (n *Node) flushWrites(fromMessage bool) {
	if fromMessage {
		n.batch.flushQueued = false
	}
	writes := n.batch.writes[:0:0]
	for _, w := range n.batch.writes {
		// A write answered DEADLINE_EXCEEDED while it waited stays out of
		// the log.
		if !w.reply.done.Load() {
			writes = append(writes, w)
		}
	}
	n.batch.writes, n.batch.bytes = nil, 0
	if len(writes) == 0 {
		return
	}
	if n.run == nil {
		failWrites(writes, actors.Errorf(actors.Code_UNAVAILABLE, "node %s is not running", n.cfg.ID))
		return
	}
	n.apply(writes)
}

// failBatch answers every write of the batch with err.
func (n *Node) failBatch(err *actors.Error) {
	writes := n.batch.writes
	n.batch.writes, n.batch.bytes = nil, 0
	failWrites(writes, err)
}

func failWrites(writes []pendingWrite, err *actors.Error) {
	if len(writes) == 0 {
		return
	}
	out := writes[0].reply.n.outcomes(len(writes))
	for _, w := range writes {
		w.reply.finishIn(out, &actors.WriteResponse{Error: err})
	}
	out.tell()
}

// apply hands one log entry holding writes to the appender, which answers
// each write with its own result once the entry is applied. A single write
// keeps the entry format of builds before batching.
func (n *Node) apply(writes []pendingWrite) {
	entry, err := logEntry(writes, n.stamp())
	if err != nil {
		failWrites(writes, actors.InvalidArgument("meta", "%v", err))
		return
	}
	latest := writes[0].deadline
	for _, w := range writes[1:] {
		if w.deadline.After(latest) {
			latest = w.deadline
		}
	}
	r := n.run.raft
	job := appendJob{entry: entry, deadline: latest, answer: func(f raft.ApplyFuture) { answer(r, f, writes) }}
	if !n.run.appender.append(job) {
		failWrites(writes, actors.Errorf(actors.Code_UNAVAILABLE, "%d log entries are waiting for Raft already", appendQueue))
	}
}

// stamp is the replicated time for the next entry this node writes as
// leader (leaderClock).
func (n *Node) stamp() int64 {
	return n.run.clock.stamp(n.run.raft, n.run.fsm, n.run.ready, n.cfg.RequestTimeout)
}

// appendQueue bounds the entries waiting for Raft to take them.
const appendQueue = 1024

// appender hands log entries to Raft one after another, in the order
// Receive closed them: every entry the node writes, the batches of writes
// and the policy entries alike. Raft's ApplyLog may wait for the leader
// loop, which Receive must not; goroutines of their own would race each
// other and let a later entry into the log before an earlier one. With one
// appender the log keeps the order in which the leader received the
// requests, so what one sender sends in order is applied in that order.
type appender struct {
	r     *raft.Raft
	queue chan appendJob
	done  chan struct{}
}

// appendJob is one entry, and what answers its requests once Raft took
// it: answer runs on a goroutine of its own and may wait on the future.
type appendJob struct {
	entry    raft.Log
	deadline time.Time
	answer   func(raft.ApplyFuture)
}

func startAppender(r *raft.Raft) *appender {
	a := &appender{r: r, queue: make(chan appendJob, appendQueue), done: make(chan struct{})}
	go a.run()
	return a
}

// append queues job; false when the queue is full. Only Receive calls it.
func (a *appender) append(job appendJob) bool {
	select {
	case a.queue <- job:
		return true
	default:
		return false
	}
}

// stop waits until every queued entry was handed over. After Raft's
// Shutdown that is at once: ApplyLog then fails every one of them.
func (a *appender) stop() {
	close(a.queue)
	<-a.done
}

func (a *appender) run() {
	defer close(a.done)
	for job := range a.queue {
		f := a.r.ApplyLog(job.entry, time.Until(job.deadline))
		go job.answer(f)
	}
}

// answer waits until the entry is applied and answers each of its writes.
func answer(r *raft.Raft, f raft.ApplyFuture, writes []pendingWrite) {
	if err := f.Error(); err != nil {
		failWrites(writes, raftError(r, err))
		return
	}
	res := f.Response()
	if len(writes) == 1 {
		writes[0].reply.finish(writeResponse(res, writes[0].req))
		return
	}
	results, _ := res.(batchResults)
	if len(results) != len(writes) {
		failWrites(writes, actors.Errorf(actors.Code_INTERNAL, "batch entry %d gave %d results for %d writes", f.Index(), len(results), len(writes)))
		return
	}
	out := writes[0].reply.n.outcomes(len(writes))
	for i, w := range writes {
		w.reply.finishIn(out, writeResponse(results[i], w.req))
	}
	out.tell()
}

// logEntry builds the log entry of writes, stamped with the replicated
// time stamp: a single write as its command with its session in the
// extensions, a session open as a "session" entry, several writes as a
// WriteBatch.
func logEntry(writes []pendingWrite, stamp int64) (raft.Log, error) {
	if len(writes) == 1 {
		m := writes[0].req
		entry := raft.Log{Data: m.GetCommand()}
		if md := m.GetMeta(); md.GetOpenSession() {
			ext, err := proto.Marshal(&wire.EntryMeta{
				System:         systemSession,
				ClientId:       md.ClientId,
				Sequence:       md.Sequence,
				LeaderUnixNano: stamp,
			})
			if err != nil {
				return raft.Log{}, err
			}
			return raft.Log{Extensions: ext}, nil
		}
		if md := m.GetMeta(); md.GetClientId() != "" {
			ext, err := proto.Marshal(&wire.EntryMeta{
				ClientId:       md.ClientId,
				Sequence:       md.Sequence,
				AckedBelow:     md.AckedBelow,
				Registered:     md.RegisteredSession,
				OpenIndex:      md.SessionOpenIndex,
				LeaderUnixNano: stamp,
			})
			if err != nil {
				return raft.Log{}, err
			}
			entry.Extensions = ext
		}
		return entry, nil
	}
	b := &wire.WriteBatch{Writes: make([]*wire.BatchedWrite, len(writes))}
	for i, w := range writes {
		md := w.req.GetMeta()
		b.Writes[i] = &wire.BatchedWrite{
			Command:    w.req.GetCommand(),
			ClientId:   md.GetClientId(),
			Sequence:   md.GetSequence(),
			AckedBelow: md.GetAckedBelow(),
			Registered: md.GetRegisteredSession(),
			OpenIndex:  md.GetSessionOpenIndex(),
		}
	}
	data, err := proto.Marshal(b)
	if err != nil {
		return raft.Log{}, err
	}
	ext, err := proto.Marshal(&wire.EntryMeta{System: systemBatch, LeaderUnixNano: stamp})
	if err != nil {
		return raft.Log{}, err
	}
	return raft.Log{Data: data, Extensions: ext}, nil
}

// writeResponse turns what the state machine returned for a write into its
// response.
func writeResponse(res any, m *actors.WriteRequest) *actors.WriteResponse {
	switch res := res.(type) {
	case commandResult:
		return &actors.WriteResponse{Result: res.result, Index: res.index}
	case duplicateWrite:
		return &actors.WriteResponse{Result: res.result, Index: res.index}
	case sessionOpened:
		return &actors.WriteResponse{SessionOpenIndex: res.openIndex}
	case sessionExpired:
		if res.liveOpen != 0 {
			return &actors.WriteResponse{Error: actors.SessionExpired(
				"sequence %d of client %s belongs to the session opened at %d, which expired; the session now known was opened at %d: not applied now, its outcome unknown",
				m.GetMeta().GetSequence(), m.GetMeta().GetClientId(), m.GetMeta().GetSessionOpenIndex(), res.liveOpen)}
		}
		if res.reopened {
			return &actors.WriteResponse{Error: actors.SessionExpired(
				"sequence %d of client %s belongs to an earlier opening of its session: not applied now, its outcome unknown", m.GetMeta().GetSequence(), m.GetMeta().GetClientId())}
		}
		return &actors.WriteResponse{Error: actors.SessionExpired(
			"the session of client %s expired or was never opened: sequence %d not applied now, its outcome unknown", m.GetMeta().GetClientId(), m.GetMeta().GetSequence())}
	case staleSequence:
		return &actors.WriteResponse{Error: actors.InvalidArgument("meta.sequence",
			"sequence %d of client %s was acknowledged and forgotten", m.GetMeta().GetSequence(), m.GetMeta().GetClientId())}
	default:
		return &actors.WriteResponse{Error: actors.Errorf(actors.Code_INTERNAL, "unexpected apply result %T", res)}
	}
}

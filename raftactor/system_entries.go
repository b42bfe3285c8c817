package raftactor

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/wire"
)

// systemPolicy is the EntryMeta.system value of a policy change: the
// entry's data is an authorization policy document, for protoraft's front
// door, never for the user's state machine.
const systemPolicy = "policy"

// systemState is protoraft's own replicated state beside the sessions:
// the committed policy. It is changed only on Raft's FSM goroutine (apply,
// restore) and saved in the snapshot's extension section.
type systemState struct {
	mu          sync.Mutex
	policy      []byte
	policyIndex uint64
	// onPolicy is Config.OnPolicy; nil when no one listens.
	onPolicy func(doc []byte, index uint64)
}

// setPolicy records a committed policy and tells the listener. The
// listener is quick by contract (an atomic swap), so calling it under the
// fsm's lock keeps policies in log order without a queue.
func (s *systemState) setPolicy(doc []byte, index uint64) {
	s.mu.Lock()
	s.policy, s.policyIndex = doc, index
	fn := s.onPolicy
	s.mu.Unlock()
	if fn != nil && len(doc) > 0 {
		fn(doc, index)
	}
}

// save adds the system state to the snapshot's extension section.
func (s *systemState) save(t *wire.SessionTable) *wire.SessionTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.policy) > 0 {
		t.Policy = &wire.PolicyState{Document: s.policy, Index: s.policyIndex}
	}
	return t
}

// restore replaces the system state with a snapshot's. A snapshot without
// a policy (written before policies existed, or before the first change)
// leaves the listener's policy, loaded at spawn, in force.
func (s *systemState) restore(t *wire.SessionTable) {
	p := t.GetPolicy()
	s.setPolicy(p.GetDocument(), p.GetIndex())
}

// updatePolicy commits a new authorization policy through Raft, as a
// system entry, and replies once it applied. The document is checked first
// (Config.CheckPolicy), so a bad one never takes a place in the log. The
// entry goes through the appender after the writes received before it, so
// it enters the log in the order the leader received it, as every entry
// does.
func (n *Node) updatePolicy(ctx actor.Context, m *actors.PolicyUpdateRequest) {
	r := n.run.raft
	doc := m.GetDocument()
	if len(doc) == 0 {
		n.respond(ctx, &actors.PolicyUpdateResponse{Error: actors.InvalidArgument("document", "the policy document is empty")})
		return
	}
	if n.cfg.CheckPolicy != nil {
		if err := n.cfg.CheckPolicy(doc); err != nil {
			n.respond(ctx, &actors.PolicyUpdateResponse{Error: err})
			return
		}
	}
	if r.State() != raft.Leader {
		n.respond(ctx, &actors.PolicyUpdateResponse{Error: actors.NotLeader(leaderOf(r))})
		return
	}
	ext, err := proto.Marshal(&wire.EntryMeta{System: systemPolicy, LeaderUnixNano: n.stamp()})
	if err != nil {
		n.respond(ctx, &actors.PolicyUpdateResponse{Error: actors.Errorf(actors.Code_INTERNAL, "%v", err)})
		return
	}
	deadline := m.GetMeta().Deadline(n.cfg.RequestTimeout)
	rep := n.later(ctx, m, deadline)
	if rep == nil {
		return
	}
	n.flushWrites(false)
	job := appendJob{entry: raft.Log{Data: doc, Extensions: ext}, deadline: deadline, answer: func(f raft.ApplyFuture) {
		if err := f.Error(); err != nil {
			rep.finish(&actors.PolicyUpdateResponse{Error: raftError(r, err)})
			return
		}
		rep.finish(&actors.PolicyUpdateResponse{Index: f.Index()})
	}}
	if !n.run.appender.append(job) {
		rep.finish(&actors.PolicyUpdateResponse{Error: actors.Errorf(actors.Code_UNAVAILABLE, "%d log entries are waiting for Raft already", appendQueue)})
	}
}

// get returns the committed policy and the index it was committed at
// (nil and 0 before the first one).
func (s *systemState) get() ([]byte, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy, s.policyIndex
}

// getPolicy answers a PolicyGetRequest from the state machine, after the
// wait a read of the same consistency makes: LINEARIZABLE (ReadIndex on
// the leader, a read index from the leader on a follower) answers with
// every policy committed before the request arrived, so a read-back on any
// member sees a change acknowledged before it; STALE answers at once with
// what this node applied. The policy is protoraft's replicated state, so
// reading it is a read like any other, only of the system state rather than
// the user's state machine. The wait runs on a goroutine of its own, never
// in Receive.
func (n *Node) getPolicy(ctx actor.Context, m *actors.PolicyGetRequest) {
	kind, refusal := n.readKindFor(m.GetConsistency())
	if refusal != nil {
		n.respond(ctx, &actors.PolicyGetResponse{Error: refusal})
		return
	}
	p, spawn := n.readPath(), n.cfg.SpawnPolicy
	self := &actors.Server{Id: n.cfg.ID, Address: string(n.addr)}
	n.async(ctx, m, func(deadline time.Time) actors.Response {
		if err := p.waitFor(kind, deadline); err != nil {
			return &actors.PolicyGetResponse{Error: err}
		}
		// Applied first: the policy read after it reflects at least that
		// index (Raft's own AppliedIndex runs ahead of the state machine).
		applied := p.f.applied.Load()
		doc, index := p.f.system.get()
		resp := &actors.PolicyGetResponse{Document: doc, Index: index, Source: actors.PolicySource_POLICY_COMMITTED,
			AppliedIndex: applied, Node: self}
		if len(doc) == 0 {
			resp.Document, resp.Index, resp.Source = spawn, 0, actors.PolicySource_POLICY_SPAWN
			if len(spawn) == 0 {
				resp.Source = actors.PolicySource_POLICY_NONE
			}
		}
		if len(resp.Document) > 0 {
			sum := sha256.Sum256(resp.Document)
			resp.Digest = hex.EncodeToString(sum[:])
		}
		return resp
	})
}

package raftactor

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// ReadIndexFunc answers a peer's ReadIndexRequest on the leader: a read
// index confirmed by a quorum after the call began, or why there is none.
type ReadIndexFunc func(deadline time.Time) (uint64, *actors.Error)

// SetReadIndexHandler sets what answers peers' ReadIndexRequests; until it
// is set they are answered UNAVAILABLE.
func (t *Transport) SetReadIndexHandler(fn ReadIndexFunc) {
	t.mu.Lock()
	t.readIndexFn = fn
	t.mu.Unlock()
}

// ReadIndex asks the leader (id at target) for a read index, for a
// linearizable read served by this follower. The RPC is authenticated,
// bounded and subject to fault injection like every Raft RPC, so a
// follower cut off from the leader cannot serve such a read.
func (t *Transport) ReadIndex(id raft.ServerID, target raft.ServerAddress, deadline time.Time) (uint64, *actors.Error) {
	timeout := min(time.Until(deadline), t.cfg.RPCTimeout)
	if timeout <= 0 {
		return 0, actors.DeadlineExceeded("asking the leader for a read index")
	}
	reply, err := t.call(id, target, &actors.RaftRPC{Body: &actors.RaftRPC_ReadIndex{ReadIndex: &actors.ReadIndexRequest{Id: string(t.cfg.LocalID)}}}, timeout)
	if err != nil {
		return 0, actors.Errorf(actors.Code_UNAVAILABLE, "asking the leader %s for a read index: %v", id, err)
	}
	ri := reply.GetReadIndex()
	if ri == nil {
		return 0, actors.Errorf(actors.Code_INTERNAL, "leader %s answered a read index request with %T", id, reply.GetBody())
	}
	if ri.GetError().Err() != nil {
		return 0, ri.GetError()
	}
	return ri.GetIndex(), nil
}

// handleReadIndex answers a peer's ReadIndexRequest from a goroutine: the
// answer waits for a quorum.
func (t *Transport) handleReadIndex(sender *actor.PID, fromID raft.ServerID) {
	t.mu.Lock()
	fn := t.readIndexFn
	t.mu.Unlock()
	answer := func(index uint64, err *actors.Error) {
		t.sendReply(sender, fromID, &actors.RaftRPCReply{Body: &actors.RaftRPCReply_ReadIndex{
			ReadIndex: &actors.ReadIndexResponse{Index: index, Error: err},
		}})
	}
	if fn == nil {
		answer(0, actors.Errorf(actors.Code_UNAVAILABLE, "%s is not ready to serve read indexes", t.cfg.LocalID))
		return
	}
	started := t.goTracked(func() { answer(fn(time.Now().Add(t.cfg.RPCTimeout))) })
	if !started {
		t.sendReply(sender, fromID, &actors.RaftRPCReply{Error: ErrTransportClosed.Error()})
	}
}

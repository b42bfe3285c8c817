package transport

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/internal/wire"
)

// snapshotTimeoutUnit scales the final chunk's timeout with the snapshot
// size, as hashicorp's NetworkTransport does: after the last byte the
// receiver still persists the snapshot and restores its FSM before it
// answers, which takes time proportional to the size.
const snapshotTimeoutUnit = 256 * 1024

var (
	// errTransferAbandoned closes a transfer whose sender went silent, so
	// raft's reader (raft's main loop on a follower) is not blocked forever.
	errTransferAbandoned = fmt.Errorf("%w: snapshot transfer abandoned by sender", ErrProtocol)
	// errTransferAborted answers a chunk of a transfer that ended early.
	errTransferAborted = fmt.Errorf("%w: snapshot transfer aborted", ErrProtocol)
	// errInstallFinished unblocks a chunk write after raft already answered
	// (it refused the snapshot without reading it all).
	errInstallFinished = errors.New("snapshot install already answered")
)

// InstallSnapshot implements raft.Transport. The snapshot travels in chunks
// of at most SnapshotChunkSize, one at a time, each waiting for its ack, so
// no message nears the remote's size limit and a slow receiver throttles
// the sender. The first chunk carries the request; the final chunk's reply
// carries raft's answer.
func (t *Transport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if args.Size < 0 {
		return fmt.Errorf("negative snapshot size %d", args.Size)
	}
	transferID := t.nextTransfer.Add(1)
	chunkSize := int64(t.cfg.SnapshotChunkSize)
	finalTimeout := t.cfg.RPCTimeout * time.Duration(max(1, args.Size/snapshotTimeoutUnit))
	var offset int64
	for {
		n := min(chunkSize, args.Size-offset)
		// A fresh buffer per chunk: a local receiver holds the very slice
		// until it wrote it, possibly after our timeout already fired.
		buf := make([]byte, n)
		if _, err := io.ReadFull(data, buf); err != nil {
			return fmt.Errorf("reading snapshot at offset %d: %w", offset, err)
		}
		final := offset+n == args.Size
		chunk := &wire.SnapshotChunk{TransferId: transferID, Offset: uint64(offset), Data: buf, Final: final}
		if offset == 0 {
			chunk.Request = wire.EncodeInstallSnapshot(args)
		}
		timeout := t.cfg.RPCTimeout
		if final {
			timeout = finalTimeout
		}
		reply, err := t.Call(id, target, &wire.RaftRPC{Body: &wire.RaftRPC_SnapshotChunk{SnapshotChunk: chunk}}, timeout)
		if err != nil {
			return fmt.Errorf("snapshot chunk at offset %d: %w", offset, err)
		}
		// Raft may answer before the last chunk when it refuses the snapshot.
		if r := reply.GetInstallSnapshot(); r != nil {
			*resp = *r.Decode()
			return nil
		}
		if final {
			return unexpectedReply(reply)
		}
		ack, ok := reply.GetBody().(*wire.RaftRPCReply_ChunkAck)
		if !ok {
			return unexpectedReply(reply)
		}
		offset += n
		if ack.ChunkAck != uint64(offset) {
			return fmt.Errorf("%w: snapshot chunk acked at %d, sent up to %d", ErrProtocol, ack.ChunkAck, offset)
		}
	}
}

// transferKey names one inbound transfer; the sender's address is part of
// it because transfer IDs are only unique per sender.
type transferKey struct {
	from string
	id   uint64
}

// inChunk is one chunk with the PID its reply goes to.
type inChunk struct {
	sender *actor.PID
	chunk  *wire.SnapshotChunk
}

// inTransfer is the receiving end of one snapshot transfer: raft reads the
// pipe, the transfer goroutine writes chunks into it.
type inTransfer struct {
	key    transferKey
	fromID raft.ServerID
	size   int64
	pr     *io.PipeReader
	pw     *io.PipeWriter
	chunks chan inChunk
	respCh chan raft.RPCResponse

	respDone chan struct{} // closed once resp is set
	resp     raft.RPCResponse

	dead     chan struct{}
	deadOnce sync.Once
}

// abort fails the transfer: raft's reader and any blocked chunk write get
// err, and the transfer's goroutines end.
func (tr *inTransfer) abort(err error) {
	tr.deadOnce.Do(func() {
		// Writer first, so raft's reader sees err rather than ErrClosedPipe.
		_ = tr.pw.CloseWithError(err)
		_ = tr.pr.CloseWithError(err)
		close(tr.dead)
	})
}

// handleChunk routes an inbound chunk to its transfer without blocking the
// caller (an actor's Receive); the first chunk starts the transfer and
// hands the InstallSnapshot RPC to raft through the ordered dispatcher.
func (t *Transport) handleChunk(sender *actor.PID, from string, c *wire.SnapshotChunk) {
	key := transferKey{from: from, id: c.GetTransferId()}
	var tr *inTransfer
	if c.GetRequest() != nil {
		req := c.GetRequest().Decode()
		pr, pw := io.Pipe()
		tr = &inTransfer{
			key: key, fromID: raft.ServerID(req.ID), size: req.Size, pr: pr, pw: pw,
			chunks:   make(chan inChunk, 4),
			respCh:   make(chan raft.RPCResponse, 1),
			respDone: make(chan struct{}),
			dead:     make(chan struct{}),
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			t.sendReply(sender, tr.fromID, ErrorReply(ErrTransportClosed))
			return
		}
		old := t.transfers[key]
		t.transfers[key] = tr
		t.wg.Add(2)
		t.mu.Unlock()
		if old != nil {
			old.abort(fmt.Errorf("%w: snapshot transfer restarted", ErrProtocol))
		}
		go t.runTransfer(tr)
		go t.watchTransfer(tr)
		queued := t.enqueue(inboundRPC{
			rpc:    raft.RPC{Command: req, Reader: pr, RespChan: tr.respCh},
			respCh: tr.respCh,
			fromID: tr.fromID,
			onFail: tr.abort,
		})
		if !queued {
			t.sendReply(sender, tr.fromID, ErrorReply(ErrQueueFull))
			return
		}
	} else {
		t.mu.Lock()
		tr = t.transfers[key]
		t.mu.Unlock()
		if tr == nil {
			t.sendReply(sender, "", ErrorReply(fmt.Errorf("%w: unknown snapshot transfer %d from %s", ErrProtocol, key.id, key.from)))
			return
		}
	}
	select {
	case tr.chunks <- inChunk{sender: sender, chunk: c}:
	case <-tr.dead:
		t.sendReply(sender, tr.fromID, ErrorReply(errTransferAborted))
	default:
		// The sender waits for each ack, so a full buffer means a broken
		// sender; end the transfer rather than block.
		tr.abort(fmt.Errorf("%w: snapshot chunks arrived faster than acked", ErrProtocol))
		t.sendReply(sender, tr.fromID, ErrorReply(fmt.Errorf("%w: snapshot transfer overrun", ErrProtocol)))
	}
}

// runTransfer writes a transfer's chunks into raft's pipe in order and
// acks each one once written; it ends with the final chunk, an error, an
// idle timeout or Close.
func (t *Transport) runTransfer(tr *inTransfer) {
	defer t.wg.Done()
	defer func() {
		tr.abort(errTransferAbandoned)
		t.mu.Lock()
		if t.transfers[tr.key] == tr {
			delete(t.transfers, tr.key)
		}
		t.mu.Unlock()
	}()
	idleTimeout := 2 * t.cfg.RPCTimeout
	idle := time.NewTimer(idleTimeout)
	defer idle.Stop()
	fail := func(sender *actor.PID, err error) {
		t.log.Warn("inbound snapshot transfer failed", zap.String("from", tr.key.from), zap.Error(err))
		tr.abort(err)
		t.sendReply(sender, tr.fromID, ErrorReply(err))
	}
	answered := func(sender *actor.PID) bool {
		select {
		case <-tr.respDone:
			t.sendReply(sender, tr.fromID, responseToReply(tr.resp))
			return true
		default:
			return false
		}
	}
	var next int64
	for {
		select {
		case <-t.shutdown:
			tr.abort(ErrTransportClosed)
			return
		case <-tr.dead:
			return
		case <-idle.C:
			t.log.Warn("inbound snapshot transfer abandoned", zap.String("from", tr.key.from), zap.Int64("received", next), zap.Int64("size", tr.size))
			tr.abort(errTransferAbandoned)
			return
		case in := <-tr.chunks:
			c := in.chunk
			if answered(in.sender) {
				return
			}
			if int64(c.GetOffset()) != next {
				fail(in.sender, fmt.Errorf("%w: snapshot chunk at offset %d, expected %d", ErrProtocol, c.GetOffset(), next))
				return
			}
			if next+int64(len(c.GetData())) > tr.size {
				fail(in.sender, fmt.Errorf("%w: snapshot chunk overruns size %d", ErrProtocol, tr.size))
				return
			}
			if len(c.GetData()) > 0 {
				if _, err := tr.pw.Write(c.GetData()); err != nil {
					if !answered(in.sender) {
						fail(in.sender, err)
					}
					return
				}
			}
			next += int64(len(c.GetData()))
			if !c.GetFinal() {
				t.sendReply(in.sender, tr.fromID, &wire.RaftRPCReply{Body: &wire.RaftRPCReply_ChunkAck{ChunkAck: uint64(next)}})
				idle.Reset(idleTimeout)
				continue
			}
			if next != tr.size {
				fail(in.sender, fmt.Errorf("%w: snapshot ended at %d of %d bytes", ErrProtocol, next, tr.size))
				return
			}
			_ = tr.pw.Close()
			select {
			case <-tr.respDone:
				t.sendReply(in.sender, tr.fromID, responseToReply(tr.resp))
			case <-t.shutdown:
				t.sendReply(in.sender, tr.fromID, ErrorReply(ErrTransportClosed))
			case <-tr.dead:
				t.sendReply(in.sender, tr.fromID, ErrorReply(errTransferAborted))
			}
			return
		}
	}
}

// watchTransfer waits for raft's answer to the InstallSnapshot RPC. It runs
// apart from runTransfer because raft may answer while a chunk write is
// blocked (it refused the snapshot without reading it); closing the pipe's
// read side then unblocks that write.
func (t *Transport) watchTransfer(tr *inTransfer) {
	defer t.wg.Done()
	select {
	case r := <-tr.respCh:
		tr.resp = r
		close(tr.respDone)
		_ = tr.pr.CloseWithError(errInstallFinished)
	case <-t.shutdown:
	case <-tr.dead:
	}
}

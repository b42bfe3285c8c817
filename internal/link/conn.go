package link

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/internal/wire"
	"github.com/protoraft/protoraft/remoteguard"
)

// frameHeader is the length prefix of every frame.
const frameHeader = 4

// Conn is one connection of a Link. The dialing side sends requests and
// pairs the answers with their callers by call number; the accepting side
// hands requests to its nodes' handlers with a sender that writes the
// answer back. One goroutine reads; whoever sends writes (see send).
type Conn struct {
	link     *Link
	peer     string // the peer's actor system address (dialed), or its TCP address (accepted)
	nc       net.Conn
	accepted bool
	replies  *actor.PID    // accepted side: the sender given to node actors
	w        *bufio.Writer // used by the goroutine that set writing

	mu       sync.Mutex // guards everything below
	closed   bool
	out      [][]byte                 // frames waiting to be written
	writing  bool                     // a goroutine is writing out
	calls    map[uint32]actor.Process // dialing side: callers waiting for an answer
	nextCall uint32
}

func newConn(l *Link, peer string, nc net.Conn, accepted bool) *Conn {
	return &Conn{
		link:     l,
		peer:     peer,
		nc:       nc,
		accepted: accepted,
		w:        bufio.NewWriterSize(nc, 64<<10),
		calls:    make(map[uint32]actor.Process),
	}
}

// prepare registers the reply process of an accepted connection; close
// removes it.
func (c *Conn) prepare() error {
	if !c.accepted {
		return nil
	}
	reg := c.link.system.ProcessRegistry
	pid, ok := reg.Add(&linkReplies{c: c}, "raftlink$"+reg.NextId())
	if !ok {
		return errors.New("raft link: could not register its reply process")
	}
	c.replies = pid
	return nil
}

// run reads until the connection ends; the caller added it to the link's
// wait group, under the link's lock, so Close waits for it.
func (c *Conn) run() {
	defer c.link.wg.Done()
	c.read()
}

// Request sends rpc to the node actor target of the peer's process: rp gets
// the answer (a *wire.RaftRPCReply), or an error wrapping ErrClosed if the
// connection closes first. It returns the call number, for Forget; false
// means the connection is closed and nothing was sent.
func (c *Conn) Request(target string, rpc *wire.RaftRPC, rp actor.Process) (uint32, bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, false
	}
	c.nextCall++
	call := c.nextCall
	c.calls[call] = rp
	c.mu.Unlock()
	if err := c.send(&wire.LinkFrame{Call: call, Target: target, Rpc: rpc}); err != nil {
		c.Forget(call)
		return 0, false
	}
	c.link.stats.requestsSent.Add(1)
	return call, true
}

// Forget drops a call whose caller stopped waiting.
func (c *Conn) Forget(call uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.calls, call)
}

// send writes one frame, or queues it when another goroutine is writing:
// that one writes it too before it stops, so frames sent together leave in
// one flush and none waits for a writer goroutine to be scheduled. The
// write blocks only while the peer reads nothing (its socket buffer full),
// and at most linkWriteTimeout: then the connection closes.
func (c *Conn) send(f *wire.LinkFrame) error {
	// Size fills the size cache, which the marshal then uses instead of
	// sizing every nested message a second time.
	size := proto.Size(f)
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(make([]byte, frameHeader, frameHeader+size), f)
	if err != nil {
		return fmt.Errorf("raft link frame: %w", err)
	}
	if len(b)-frameHeader > remoteguard.MaxMessageSize {
		return fmt.Errorf("raft link frame of %d bytes exceeds %d", len(b)-frameHeader, remoteguard.MaxMessageSize)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-frameHeader))
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.out = append(c.out, b)
	if c.writing {
		c.mu.Unlock()
		return nil
	}
	c.writing = true
	c.mu.Unlock()
	c.write()
	return nil
}

// write writes what is queued until the queue is empty; only the goroutine
// that set writing calls it.
func (c *Conn) write() {
	var batch [][]byte
	for {
		c.mu.Lock()
		batch, c.out = c.out, batch[:0]
		if len(batch) == 0 || c.closed {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		_ = c.nc.SetWriteDeadline(time.Now().Add(linkWriteTimeout))
		for i, b := range batch {
			if _, err := c.w.Write(b); err != nil {
				c.close(err)
				return
			}
			batch[i] = nil
		}
		if err := c.w.Flush(); err != nil {
			c.close(err)
			return
		}
	}
}

// read reads frames until the connection fails or closes.
func (c *Conn) read() {
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var head [frameHeader]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			c.close(err)
			return
		}
		n := binary.BigEndian.Uint32(head[:])
		if n > remoteguard.MaxMessageSize {
			c.close(fmt.Errorf("raft link frame of %d bytes exceeds %d", n, remoteguard.MaxMessageSize))
			return
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			c.close(err)
			return
		}
		f := &wire.LinkFrame{}
		if err := proto.Unmarshal(b, f); err != nil {
			c.close(fmt.Errorf("raft link frame: %w", err))
			return
		}
		if err := c.handle(f); err != nil {
			c.close(err)
			return
		}
	}
}

// handle takes one received frame: an answer on the dialing side, a
// request on the accepting side. An error is a protocol violation, and
// ends the connection.
func (c *Conn) handle(f *wire.LinkFrame) error {
	if !c.accepted {
		if f.GetReply() == nil {
			return errors.New("raft link: a frame without an answer on a dialed connection")
		}
		c.mu.Lock()
		rp := c.calls[f.GetCall()]
		delete(c.calls, f.GetCall())
		c.mu.Unlock()
		if rp != nil {
			rp.SendUserMessage(nil, f.GetReply())
		}
		return nil
	}
	if f.GetRpc() == nil {
		return errors.New("raft link: a frame without a request on an accepted connection")
	}
	c.link.stats.requestsReceived.Add(1)
	h := c.link.receiver(f.GetTarget())
	if h == nil {
		// Answered rather than dropped, so the caller fails now instead of
		// at its timeout, as a dead letter over remote would.
		return c.send(&wire.LinkFrame{Call: f.GetCall(), Reply: notFound(f.GetTarget())})
	}
	h.HandleRPC(&actor.PID{Address: c.replies.Address, Id: c.replies.Id, RequestId: f.GetCall()}, f.GetRpc())
	return nil
}

// close ends the connection once: callers still waiting get ErrClosed
// and the link forgets the connection as a route.
func (c *Conn) close(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	calls := c.calls
	c.calls = nil
	c.out = nil
	c.mu.Unlock()
	_ = c.nc.Close()
	for _, rp := range calls {
		rp.SendUserMessage(nil, fmt.Errorf("%w: %s: %v", ErrClosed, c.peer, err))
	}
	if c.replies != nil {
		c.link.system.ProcessRegistry.Remove(c.replies)
	}
	c.link.lost(c)
	if !errors.Is(err, ErrClosed) && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.link.log.Info("raft link: connection closed", zap.String("peer", c.peer), zap.Bool("accepted", c.accepted), zap.Error(err))
	}
}

// linkReplies is the sender an accepted connection gives the node actors:
// what they answer goes back on the connection, paired with the request by
// the call number carried in the sender PID's RequestId.
type linkReplies struct{ c *Conn }

// SendUserMessage implements actor.Process.
func (p *linkReplies) SendUserMessage(pid *actor.PID, message interface{}) {
	_, msg, _ := actor.UnwrapEnvelope(message)
	var reply *wire.RaftRPCReply
	switch m := msg.(type) {
	case *wire.RaftRPCReply:
		reply = m
	case *actor.DeadLetterResponse:
		reply = notFound(m.GetTarget().GetId())
	default:
		return
	}
	_ = p.c.send(&wire.LinkFrame{Call: pid.GetRequestId(), Reply: reply})
}

// SendSystemMessage implements actor.Process; the reply process has no
// lifecycle of its own.
func (p *linkReplies) SendSystemMessage(*actor.PID, interface{}) {}

// Stop implements actor.Process.
func (p *linkReplies) Stop(*actor.PID) {}

// notFound answers an RPC for a node actor that does not run here.
func notFound(target string) *wire.RaftRPCReply {
	return &wire.RaftRPCReply{Code: wire.RPCError_RPC_ERROR_NOT_FOUND, Error: "raft link: no node actor " + target + " here"}
}

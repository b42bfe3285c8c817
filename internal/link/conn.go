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

	"github.com/protoraft/protoraft/internal/inbox"
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
	idle     time.Duration // accepted side: the link's idle timeout
	budget   *budget       // accepted side: the link's budget for frames being read
	wait     time.Duration // accepted side: how long a reader waits for budget
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
	pid, ok := reg.Add(&linkReplies{c: c}, inbox.Name(c.link.system, "raftlink"))
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

// errBudget ends an accepted connection whose reader waited in vain for
// budget to read a frame.
var errBudget = errors.New("raft link: frames being read on the link's connections exceed its budget")

// errIdle ends an accepted connection on which no frame arrived for the
// idle timeout.
var errIdle = errors.New("raft link: idle connection closed")

// read reads frames until the connection fails or closes. On an accepted
// connection a frame must arrive whole within the idle timeout after the
// previous one (one above linkReadStep within linkFrameTimeout of its
// length prefix), and its bytes count against the link's budget while it
// is read.
func (c *Conn) read() {
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var head [frameHeader]byte
	for {
		if c.idle > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.idle))
		}
		if _, err := io.ReadFull(r, head[:]); err != nil {
			var ne net.Error
			if c.idle > 0 && errors.As(err, &ne) && ne.Timeout() {
				err = fmt.Errorf("%w: no frame for %v", errIdle, c.idle)
			}
			c.close(err)
			return
		}
		n := binary.BigEndian.Uint32(head[:])
		if n > remoteguard.MaxMessageSize {
			c.close(fmt.Errorf("raft link frame of %d bytes exceeds %d", n, remoteguard.MaxMessageSize))
			return
		}
		if c.idle > 0 && n > linkReadStep {
			// A large frame must also arrive within what a sender allows
			// itself to write it, so a peer that announces one and stalls
			// holds its budget that long, not for the idle timeout.
			_ = c.nc.SetReadDeadline(time.Now().Add(min(c.idle, linkFrameTimeout)))
		}
		b, held, err := c.readFrame(r, int(n))
		if err != nil {
			c.budget.give(held)
			c.close(err)
			return
		}
		f := &wire.LinkFrame{}
		err = proto.Unmarshal(b, f) // copies what it keeps: b can go
		c.budget.give(held)
		if err != nil {
			c.close(fmt.Errorf("raft link frame: %w", err))
			return
		}
		if err := c.handle(f); err != nil {
			c.close(err)
			return
		}
	}
}

// readFrame reads a frame of n bytes into a buffer that grows as they
// arrive: it starts at linkReadStep (or n, if smaller) and doubles only
// once full, so a peer that announces a large frame and sends little of it
// gets little allocated. On an accepted connection every growth takes its
// bytes from the link's budget first; held is what the caller gives back.
func (c *Conn) readFrame(r io.Reader, n int) (b []byte, held int, err error) {
	for len(b) < n {
		if len(b) == cap(b) {
			size := min(n, max(2*cap(b), linkReadStep))
			if c.accepted {
				if !c.budget.take(size-held, c.wait, c.link.done) {
					return nil, held, errBudget
				}
				held = size
				c.link.countRead(size)
			}
			grown := make([]byte, len(b), size)
			copy(grown, b)
			b = grown
		}
		m, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, held, err
		}
	}
	return b, held, nil
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
	switch {
	case errors.Is(err, ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
	case errors.Is(err, errIdle):
		c.link.log.Debug("raft link: idle connection closed", zap.String("peer", c.peer), zap.Duration("idle", c.idle))
	default:
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

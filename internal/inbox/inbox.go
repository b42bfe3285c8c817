package inbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// prefixes holds each actor system's random prefix.
var prefixes sync.Map // *actor.ActorSystem → string

// Name returns a fresh process name for a reply inbox of kind in system:
// kind, the system's random prefix and the registry's next ID. Register it
// with system.ProcessRegistry.Add.
func Name(system *actor.ActorSystem, kind string) string {
	return kind + "-" + prefix(system) + "$" + system.ProcessRegistry.NextId()
}

func prefix(system *actor.ActorSystem) string {
	if p, ok := prefixes.Load(system); ok {
		return p.(string)
	}
	b := make([]byte, 8)
	// crypto/rand.Read does not fail since Go 1.24.
	_, _ = rand.Read(b)
	p, _ := prefixes.LoadOrStore(system, hex.EncodeToString(b))
	return p.(string)
}

// Box is a process that takes the single answer to one request. It never
// blocks the sender: a second message (there should be none) is dropped.
type Box struct{ reply chan any }

// Open registers a Box in system under a Name of kind. The caller removes
// it from system.ProcessRegistry once it stops waiting; an answer that
// comes later goes to dead letters.
func Open(system *actor.ActorSystem, kind string) (*Box, *actor.PID, error) {
	box := &Box{reply: make(chan any, 1)}
	self, ok := system.ProcessRegistry.Add(box, Name(system, kind))
	if !ok {
		return nil, nil, errors.New("inbox: could not register a reply inbox")
	}
	return box, self, nil
}

// Reply delivers the answer, unwrapped from its envelope.
func (b *Box) Reply() <-chan any { return b.reply }

// SendUserMessage implements actor.Process.
func (b *Box) SendUserMessage(_ *actor.PID, message any) {
	_, msg, _ := actor.UnwrapEnvelope(message)
	select {
	case b.reply <- msg:
	default:
	}
}

// SendSystemMessage implements actor.Process; a box has no lifecycle.
func (b *Box) SendSystemMessage(*actor.PID, any) {}

// Stop implements actor.Process; whoever opened the box removes it.
func (b *Box) Stop(*actor.PID) {}

// Ask sends msg to target from a Box and waits for the answer at most
// timeout: RequestFuture(...).Result() for a request that may cross
// remote, whose answer must reach this start of the program only.
func Ask(system *actor.ActorSystem, target *actor.PID, msg any, timeout time.Duration) (any, error) {
	box, self, err := Open(system, "protoraft-ask")
	if err != nil {
		return nil, err
	}
	defer system.ProcessRegistry.Remove(self)
	system.Root.RequestWithCustomSender(target, msg, self)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case res := <-box.Reply():
		if _, dead := res.(*actor.DeadLetterResponse); dead {
			return nil, actor.ErrDeadLetter
		}
		return res, nil
	case <-timer.C:
		return nil, actor.ErrTimeout
	}
}

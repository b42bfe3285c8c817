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

// Ask sends msg to target with a reply inbox named by Name and waits for
// the answer at most timeout: RequestFuture(...).Result() for a request
// that may cross remote, whose answer must reach this start of the program
// only.
func Ask(system *actor.ActorSystem, target *actor.PID, msg any, timeout time.Duration) (any, error) {
	box := &oneReply{reply: make(chan any, 1)}
	self, ok := system.ProcessRegistry.Add(box, Name(system, "protoraft-ask"))
	if !ok {
		return nil, errors.New("inbox: could not register a reply inbox")
	}
	defer system.ProcessRegistry.Remove(self)
	system.Root.RequestWithCustomSender(target, msg, self)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case res := <-box.reply:
		if _, dead := res.(*actor.DeadLetterResponse); dead {
			return nil, actor.ErrDeadLetter
		}
		return res, nil
	case <-timer.C:
		return nil, actor.ErrTimeout
	}
}

// oneReply is Ask's inbox: it keeps the first message it gets.
type oneReply struct{ reply chan any }

// SendUserMessage implements actor.Process.
func (b *oneReply) SendUserMessage(_ *actor.PID, message any) {
	_, msg, _ := actor.UnwrapEnvelope(message)
	select {
	case b.reply <- msg:
	default:
	}
}

// SendSystemMessage implements actor.Process; an inbox has no lifecycle.
func (b *oneReply) SendSystemMessage(*actor.PID, any) {}

// Stop implements actor.Process; Ask removes the inbox itself.
func (b *oneReply) Stop(*actor.PID) {}

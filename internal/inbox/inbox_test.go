package inbox

import (
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Two starts of a program (two actor systems, whose registries count from
// the same start) never name a reply inbox alike, where protoactor's
// counter alone does: a late answer to the first start's request cannot
// reach the second start's inbox. Within one system every name is new.
func TestNamesAreNotReusedByAnotherStart(t *testing.T) {
	first, second := actor.NewActorSystem(), actor.NewActorSystem()
	defer first.Shutdown()
	defer second.Shutdown()
	if a, b := first.ProcessRegistry.NextId(), second.ProcessRegistry.NextId(); a != b {
		t.Fatalf("the registries' counters differ (%s, %s): the test shows nothing", a, b)
	}
	seen := map[string]bool{}
	for range 100 {
		for _, s := range []*actor.ActorSystem{first, second} {
			n := Name(s, "reply")
			if seen[n] {
				t.Fatalf("name %s given twice", n)
			}
			seen[n] = true
		}
	}
}

// Ask gets the answer of the actor it asks, and a timeout when none comes.
func TestAsk(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	echo := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if s, ok := ctx.Message().(string); ok && s != "silence" {
			ctx.Respond("re: " + s)
		}
	}))
	if res, err := Ask(system, echo, "hello", 5*time.Second); err != nil || res != "re: hello" {
		t.Fatalf("got %v, %v", res, err)
	}
	if _, err := Ask(system, echo, "silence", 50*time.Millisecond); !errors.Is(err, actor.ErrTimeout) {
		t.Fatalf("no answer: got %v, want a timeout", err)
	}
}

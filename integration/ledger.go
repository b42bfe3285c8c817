package integration

import (
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// applyLedger catches a write applied twice. Every write of the workload
// sets a value no other write sets (client and sequence number), so the
// command that sets it must take one command index, the same on every node
// and in every replay after a restart: the ledger remembers, for every
// value a Put or a compare-and-set sets, the index it was first applied
// at, and a second index for it is a duplicate application, the failure
// exactly-once sessions exist to prevent.
type applyLedger struct {
	mu         sync.Mutex
	first      map[string]uint64 // value → command index
	reported   map[string]bool   // value and second index, reported once for all nodes
	duplicates []string
}

func newApplyLedger() *applyLedger {
	return &applyLedger{first: map[string]uint64{}, reported: map[string]bool{}}
}

// record notes that command applied at index.
func (l *applyLedger) record(index uint64, command []byte) {
	var c kvstore.Command
	if proto.Unmarshal(command, &c) != nil {
		return
	}
	var key, value []byte
	switch {
	case c.GetPut() != nil:
		key, value = c.GetPut().GetKey(), c.GetPut().GetValue()
	case c.GetCompareAndSet() != nil:
		key, value = c.GetCompareAndSet().GetKey(), c.GetCompareAndSet().GetNewValue()
	default:
		// A delete names only its key: two of them are the same bytes.
		return
	}
	id := string(key) + "=" + string(value)
	l.mu.Lock()
	defer l.mu.Unlock()
	at, seen := l.first[id]
	switch {
	case !seen:
		l.first[id] = index
	case at != index && !l.reported[fmt.Sprint(id, "@", index)]:
		l.reported[fmt.Sprint(id, "@", index)] = true
		l.duplicates = append(l.duplicates, fmt.Sprintf("%s applied at index %d and again at %d", id, at, index))
	}
}

// found returns the duplicate applications seen so far.
func (l *applyLedger) found() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.duplicates...)
}

// ledgered is a state machine that tells a ledger what it applies.
type ledgered struct {
	raftactor.StateMachine
	ledger *applyLedger
}

// Apply implements raftactor.StateMachine.
func (s ledgered) Apply(index uint64, command []byte) []byte {
	s.ledger.record(index, command)
	return s.StateMachine.Apply(index, command)
}

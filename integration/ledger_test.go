package integration

import (
	"strings"
	"testing"

	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// The ledger flags a write applied at a second index, and nothing else: a
// replay at the same index (a restart) and deletes (the same bytes for
// every delete of a key) are not duplicates.
func TestApplyLedgerFindsAWriteAppliedTwice(t *testing.T) {
	l := newApplyLedger()
	l.record(5, kvstore.Put("k", []byte("c1.1")))
	l.record(5, kvstore.Put("k", []byte("c1.1"))) // replayed after a restart
	l.record(6, kvstore.Delete("k"))
	l.record(9, kvstore.Delete("k"))
	l.record(7, kvstore.CompareAndSet("k", []byte("c1.1"), []byte("c2.1")))
	if d := l.found(); len(d) != 0 {
		t.Fatalf("duplicates without a second application: %v", d)
	}
	l.record(8, kvstore.PutIfAbsent("k", []byte("c2.1"))) // c2.1 again, at another index
	l.record(8, kvstore.PutIfAbsent("k", []byte("c2.1"))) // the same, on another node
	d := l.found()
	if len(d) != 1 || !strings.Contains(d[0], "k=c2.1 applied at index 7 and again at 8") {
		t.Fatalf("found %v, want the second application of c2.1", d)
	}
}

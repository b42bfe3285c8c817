package raftactor_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// Concurrent linearizable reads share leadership confirmations (batched
// ReadIndex). Sharing must never hand a read an index noted before it
// arrived: every read must see every write acknowledged before it was sent.
func TestConcurrentLinearizableReadsSeeAcknowledgedWrites(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	c.put("k", "0")

	var acked atomic.Int64 // the highest value acknowledged so far
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var reads atomic.Int64
	for range 16 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				before := acked.Load()
				res, err := c.ask(leader, &actors.ReadRequest{Meta: meta(5 * time.Second), Query: kvstore.Get("k"), Consistency: actors.Consistency_LINEARIZABLE})
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				rr := res.(*actors.ReadResponse)
				switch actors.CodeOf(rr.Error) {
				case actors.Code_OK:
				case actors.Code_NOT_LEADER, actors.Code_UNAVAILABLE, actors.Code_DEADLINE_EXCEEDED:
					// An election on a loaded machine: no answer, nothing to check.
					continue
				default:
					t.Errorf("read: %v", rr.Error)
					return
				}
				qr, err := kvstore.DecodeQueryResult(rr.Result)
				if err != nil {
					t.Errorf("decode: %v", err)
					return
				}
				got, _ := strconv.ParseInt(string(qr.Value), 10, 64)
				if got < before {
					t.Errorf("read sent after write %d was acknowledged returned %d", before, got)
					return
				}
				reads.Add(1)
			}
		})
	}
	for i := int64(1); i <= 200 && !t.Failed(); i++ {
		c.put("k", strconv.FormatInt(i, 10))
		acked.Store(i)
	}
	close(stop)
	readers.Wait()
	if reads.Load() == 0 {
		t.Fatal("no read completed")
	}
}

package raftactor

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
)

// discardSM applies nothing: the benchmarks measure protoraft's own cost.
type discardSM struct{}

func (discardSM) Apply(uint64, []byte) []byte  { return nil }
func (discardSM) Query([]byte) ([]byte, error) { return nil, nil }
func (discardSM) Snapshot() (Snapshot, error)  { return indexLogSnapshot(nil), nil }
func (discardSM) Restore(io.Reader) error      { return nil }

func benchWrites(n int, seq uint64) []pendingWrite {
	writes := make([]pendingWrite, n)
	for i := range writes {
		m := &actors.RequestMeta{ClientId: fmt.Sprintf("client-%d", i), Sequence: seq, AckedBelow: seq}
		writes[i] = pendingWrite{req: &actors.WriteRequest{Meta: m, Command: make([]byte, 16)}}
	}
	return writes
}

// BenchmarkWriteBatching is the leader's and every follower's work for 64
// session writes of 16 bytes: encoding the log entry and applying it
// through the session table, as one batch entry or as 64 entries. Each op
// is all 64 writes.
func BenchmarkWriteBatching(b *testing.B) {
	const writes = 64
	for _, batched := range []bool{true, false} {
		name := "entries=64"
		if batched {
			name = "entries=1"
		}
		b.Run(name, func(b *testing.B) {
			f := newFSM(discardSM{}, time.Hour)
			now := time.Now().UnixNano()
			index := uint64(0)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				ws := benchWrites(writes, uint64(i+1))
				var logs []*raft.Log
				if batched {
					l, err := logEntry(ws, now)
					if err != nil {
						b.Fatal(err)
					}
					logs = append(logs, &l)
				} else {
					for j := range ws {
						l, err := logEntry(ws[j:j+1], now)
						if err != nil {
							b.Fatal(err)
						}
						logs = append(logs, &l)
					}
				}
				for _, l := range logs {
					index++
					l.Index, l.Type = index, raft.LogCommand
				}
				f.ApplyBatch(logs)
			}
		})
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/testutil"
)

// TestSingletonFollowsLeaderWithFencing moves leadership twice while a job
// writes: the job runs on the leader only, stops when leadership moves, and
// the ledger shows the runs strictly one after another, each under a larger
// token; a write with an old token is refused.
func TestSingletonFollowsLeaderWithFencing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	testutil.VerifyNoLeaks(t)
	system := testutil.NewSystem(t)
	groups, err := startGroups(system, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, g := range groups {
			_ = g.Stop()
		}
	}()
	client := cluster.NewClient(system, "jobs", peersOf(groups))

	var mu sync.Mutex
	started := map[uint64]string{}
	stopped := map[uint64]bool{}
	var singletons []*Singleton
	for _, g := range groups {
		node := g.Self().ID
		job := tickJob(client, node)
		singletons = append(singletons, StartSingleton(system, g, func(ctx context.Context, token uint64) {
			mu.Lock()
			started[token] = node
			mu.Unlock()
			job(ctx, token)
			mu.Lock()
			stopped[token] = true
			mu.Unlock()
		}))
	}
	defer func() {
		for _, s := range singletons {
			s.Stop()
		}
	}()

	waitEntries := func(n int) {
		t.Helper()
		testutil.Eventually(t, fmt.Sprintf("%d ledger entries", n), func() bool {
			return len(readLedger(t, ctx, client).Entries) >= n
		})
	}
	waitEntries(3)
	for i := 0; i < 2; i++ {
		if _, err := client.TransferLeadership(ctx, ""); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		waitEntries(len(readLedger(t, ctx, client).Entries) + 3)
	}

	resp, err := client.Write(ctx, encodeCommand(1, "stale"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := decodeResult(resp.Result); err != nil || r.OK {
		t.Fatalf("write with a stale token accepted: %+v %v", r, err)
	}

	l := readLedger(t, ctx, client)
	tokens := map[uint64]bool{}
	for i, e := range l.Entries {
		if i > 0 && e.Token < l.Entries[i-1].Token {
			t.Fatalf("entry %d token %d after token %d: two jobs interleaved", i, e.Token, l.Entries[i-1].Token)
		}
		tokens[e.Token] = true
	}
	if len(tokens) < 3 {
		t.Fatalf("the job ran under %d leaderships, want 3: %+v", len(tokens), l.Entries)
	}
	// Every job but the current leader's has stopped.
	lr, err := client.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for token, node := range started {
		if token != lr.Term && !stopped[token] {
			t.Errorf("job of term %d on %s still runs after leadership moved to %s (term %d)", token, node, lr.Leader.GetId(), lr.Term)
		}
	}
}

type ledgerView struct {
	Fence   uint64        `json:"fence"`
	Entries []ledgerEntry `json:"entries"`
}

func readLedger(t *testing.T, ctx context.Context, c *cluster.Client) ledgerView {
	t.Helper()
	rr, err := c.Read(ctx, nil, cluster.WithConsistency(actors.Consistency_LINEARIZABLE))
	if err != nil {
		t.Fatalf("read ledger: %v", err)
	}
	var l ledgerView
	if err := json.Unmarshal(rr.Result, &l); err != nil {
		t.Fatal(fmt.Errorf("decode ledger: %w", err))
	}
	return l
}

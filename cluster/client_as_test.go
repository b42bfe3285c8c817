package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// A Client made by As presents its own credentials on every request, the
// Client it came from keeps presenting its own, and both share one write
// session and one view of the group.
func TestClientAsPresentsItsCredentials(t *testing.T) {
	h := newClientHarness(t, 1)
	c := h.client(cluster.WithCredentials("own-token-0123456789"))
	v := c.As("other-token-0123456789")
	if v.ClientID() != c.ClientID() {
		t.Fatalf("As has client ID %s, want the shared %s", v.ClientID(), c.ClientID())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, cl := range []struct {
		name   string
		client *cluster.Client
		want   string
	}{{"c", c, "own-token-0123456789"}, {"As", v, "other-token-0123456789"}} {
		client := cl.client
		do := func(what string, f func() error) {
			t.Helper()
			if err := f(); err != nil {
				t.Fatalf("%s: %s: %v", cl.name, what, err)
			}
		}
		h.requests()
		do("write", func() error { _, err := client.Write(ctx, kvstore.Put("k-"+cl.name, []byte("v"))); return err })
		for _, consistency := range []actors.Consistency{actors.Consistency_LINEARIZABLE, actors.Consistency_LEASE, actors.Consistency_STALE} {
			do("read", func() error {
				_, err := client.Read(ctx, kvstore.Get("k"), cluster.WithConsistency(consistency))
				return err
			})
		}
		do("leader", func() error { _, err := client.Leader(ctx); return err })
		do("status", func() error { _, err := client.Status(ctx); return err })
		do("members", func() error { _, err := client.Members(ctx); return err })
		seen := h.requests()
		if len(seen) < 7 {
			t.Fatalf("%s: the door saw %d requests, want at least 7", cl.name, len(seen))
		}
		for _, s := range seen {
			if got := s.req.GetMeta().GetCredentials(); got != cl.want {
				t.Errorf("%s: %s carried credentials %q, want %q", cl.name, actors.Op(s.req), got, cl.want)
			}
			if w, ok := s.req.(*actors.WriteRequest); ok && w.GetMeta().GetClientId() != c.ClientID() {
				t.Errorf("%s: write in session %s, want the shared %s", cl.name, w.GetMeta().GetClientId(), c.ClientID())
			}
		}
	}

	// One session: a write through either takes the next sequence.
	h.requests()
	var seqs []uint64
	for _, cl := range []*cluster.Client{c, v, c} {
		if _, err := cl.Write(ctx, kvstore.Put("seq", []byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range h.requests() {
		if w, ok := s.req.(*actors.WriteRequest); ok {
			seqs = append(seqs, w.GetMeta().GetSequence())
		}
	}
	if len(seqs) != 3 || seqs[1] != seqs[0]+1 || seqs[2] != seqs[1]+1 {
		t.Errorf("sequences %v through c, As, c: want consecutive ones of one session", seqs)
	}
}

// Reads that wait together batch only with reads that present the same
// credentials: no request carries another caller's query.
func TestClientAsBatchesReadsByCredentials(t *testing.T) {
	h := newClientHarness(t, 1)
	c := h.client()
	views := map[string]*cluster.Client{"alice-token-0123456789": c.As("alice-token-0123456789"), "bob-token-0123456789": c.As("bob-token-0123456789")}
	for tok := range views {
		for i := range 4 {
			clientMustPut(t, c, fmt.Sprintf("%s/%d", tok, i), tok)
		}
	}
	h.requests()
	// The first read of each view is held at the door, so the reads made
	// meanwhile wait in their batchers.
	hr := &heldReads{limit: 2, arrived: make(chan struct{}, 2)}
	h.setHook(hr.hook)
	defer h.setHook(nil)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, 16)
	read := func(tok string, i int) {
		resp, err := views[tok].Read(ctx, kvstore.Get(fmt.Sprintf("%s/%d", tok, i)))
		if err == nil {
			var q *kvstore.QueryResult
			if q, err = kvstore.DecodeQueryResult(resp.Result); err == nil && string(q.Value) != tok {
				err = fmt.Errorf("%s read %q", tok, q.Value)
			}
		}
		errs <- err
	}
	n := 0
	for tok := range views {
		go read(tok, 0)
		n++
	}
	for range 2 {
		select {
		case <-hr.arrived:
		case <-ctx.Done():
			t.Fatal("the first reads never reached the door")
		}
	}
	var started sync.WaitGroup
	for tok := range views {
		for i := 1; i < 4; i++ {
			started.Add(1)
			n++
			go func() { started.Done(); read(tok, i) }()
		}
	}
	started.Wait()
	hr.release(h.System, h.Node("n1").PID)
	for range n {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("reads never answered")
		}
	}
	for _, s := range h.requests() {
		r, ok := s.req.(*actors.ReadRequest)
		if !ok {
			continue
		}
		tok := r.GetMeta().GetCredentials()
		for _, q := range append([][]byte{r.GetQuery()}, r.GetQueries()...) {
			if len(q) > 0 && !strings.Contains(string(q), tok+"/") {
				t.Errorf("a read presenting %q carried the query %q", tok, q)
			}
		}
	}
}

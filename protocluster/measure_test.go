package protocluster_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clustering "github.com/asynkron/protoactor-go/cluster"

	"github.com/protoraft/protoraft/internal/testutil"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// measure reports, for one world of four members: activation latency (the
// first call to a new identity), call latency to an active grain, lookups
// per second (IdentityLookup.Get of active identities, past the PID
// cache, 4 goroutines), and how long after a member crashed the caller's
// topology lacks it and all its identities answer from other members.
func measure(t *testing.T, w *world) string {
	ms := w.fixture.GetMembers()
	waitTopology(t, ms, 4)
	caller := ms[0]
	var act, hot []time.Duration
	ids := identities(200)
	for _, id := range ids {
		start := time.Now()
		if _, err := call(caller, id, 5*time.Second); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		act = append(act, time.Since(start))
	}
	for i := range 2000 {
		start := time.Now()
		if _, err := call(caller, ids[i%len(ids)], 5*time.Second); err != nil {
			t.Fatal(err)
		}
		hot = append(hot, time.Since(start))
	}
	var lookups atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(2 * time.Second)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; time.Now().Before(end); i++ {
				if caller.Get(ids[i%len(ids)], grainKind) != nil {
					lookups.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	// Crash the fourth member (no voter), then call each of its
	// identities until another member answers.
	victim := ms[3]
	addr := victim.ActorSystem.Address()
	var moved []string
	for _, id := range ids {
		got, err := call(caller, id, 5*time.Second)
		if err == nil && strings.HasPrefix(got, addr+"#") {
			moved = append(moved, id)
		}
	}
	killed := time.Now()
	deadline := killed.Add(30 * time.Second)
	// left reports when the caller's topology first lacks the victim
	// (the provider's part of the failover), or -1 past the deadline.
	left := make(chan time.Duration, 1)
	go func() {
		for {
			if !inTopology(caller, addr) {
				left <- time.Since(killed)
				return
			}
			if time.Now().After(deadline) {
				left <- -1
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	w.kill(victim)
	for _, id := range moved {
		for {
			got, err := call(caller, id, time.Second)
			if err == nil && !strings.HasPrefix(got, addr+"#") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not back within 30s", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	back := time.Since(killed)
	gone := "more than 30s"
	if d := <-left; d >= 0 {
		gone = d.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("activation p50 %v p99 %v; call to an active grain p50 %v p99 %v; lookups %d/s; crash → out of the caller's topology in %s, %d identities back elsewhere in %v",
		percentile(act, .5).Round(time.Microsecond), percentile(act, .99).Round(time.Microsecond),
		percentile(hot, .5).Round(time.Microsecond), percentile(hot, .99).Round(time.Microsecond),
		lookups.Load()/2, gone, len(moved), back.Round(time.Millisecond))
}

// inTopology reports whether the member at address addr is in c's
// current topology. It goes by address: the etcd provider's member IDs
// are not the ActorSystem's ID ("<cluster>@<ID>").
func inTopology(c *clustering.Cluster, addr string) bool {
	for _, m := range c.MemberList.Members().Members() {
		if m.Address() == addr {
			return true
		}
	}
	return false
}

// TestMeasureAgainstProtoactorProviders prints the measurements, in one
// run, for this package and for two of protoactor's own: its in-memory
// test provider with disthash, and its etcd provider with disthash on a
// real etcd server the test starts itself (PROTOCLUSTER_ETCD, else
// /usr/bin/etcd or etcd on PATH; without one that world is skipped).
// PROTOCLUSTER_COMPARE=1 runs it.
func TestMeasureAgainstProtoactorProviders(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("several protoactor remotes in one process race inside protoactor")
	}
	if testing.Short() || !compare() {
		t.Skip("comparison run: set PROTOCLUSTER_COMPARE=1")
	}
	var raft, dist, etcd string
	t.Run("protocluster", func(t *testing.T) { raft = measure(t, newWorld(t, 4, true)) })
	t.Run("testprovider", func(t *testing.T) { dist = measure(t, newWorld(t, 4, false)) })
	t.Run("etcd", func(t *testing.T) {
		addr := startEtcd(t)
		if addr == "" {
			t.Skip("no etcd server binary (set PROTOCLUSTER_ETCD, or install Debian's etcd-server): the etcd world is not measured")
		}
		etcd = measure(t, newEtcdWorld(t, 4, addr))
	})
	t.Logf("protocluster:    %s", raft)
	t.Logf("test + disthash: %s", dist)
	if etcd != "" {
		t.Logf("etcd + disthash: %s", etcd)
	} else {
		t.Logf("etcd + disthash: not measured (no etcd server binary)")
	}
}

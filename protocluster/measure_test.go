package protocluster_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
// cache, 4 goroutines), and how long after a member crashed all its
// identities answer from other members.
func measure(t *testing.T, raft bool) string {
	w := newWorld(t, 4, raft)
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
	w.kill(victim)
	deadline := killed.Add(30 * time.Second)
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
	return fmt.Sprintf("activation p50 %v p99 %v; call to an active grain p50 %v p99 %v; lookups %d/s; crash → %d identities back elsewhere in %v",
		percentile(act, .5).Round(time.Microsecond), percentile(act, .99).Round(time.Microsecond),
		percentile(hot, .5).Round(time.Microsecond), percentile(hot, .99).Round(time.Microsecond),
		lookups.Load()/2, len(moved), back.Round(time.Millisecond))
}

// TestMeasureAgainstDisthash prints the measurements for this package and
// for protoactor's test provider with disthash, in one run.
// PROTOCLUSTER_COMPARE=1 runs it.
func TestMeasureAgainstDisthash(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("several protoactor remotes in one process race inside protoactor")
	}
	if testing.Short() || !compare() {
		t.Skip("comparison run: set PROTOCLUSTER_COMPARE=1")
	}
	var raft, dist string
	t.Run("protocluster", func(t *testing.T) { raft = measure(t, true) })
	t.Run("disthash", func(t *testing.T) { dist = measure(t, false) })
	t.Logf("protocluster: %s", raft)
	t.Logf("disthash:     %s", dist)
}

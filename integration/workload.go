package integration

import (
	"context"
	"sort"
	"sync"
	"time"
)

// recorder collects the history of a run. Times come from one monotonic
// start, so call and return times of different clients are comparable.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
	// refused are requests the group refused as malformed: the workload
	// never sends one, so each is a violation.
	refused []string
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

// now is the time since the run started, in nanoseconds.
func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) add(op Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// refuse records a request the group refused as one the workload should
// never have sent.
func (r *recorder) refuse(violation string) {
	r.mu.Lock()
	r.refused = append(r.refused, violation)
	r.mu.Unlock()
}

func (r *recorder) refusals() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.refused...)
}

// history returns the operations sorted by call time.
func (r *recorder) history() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]Op(nil), r.ops...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}

// client is one sequential client of the workload. Its carrier makes it,
// because what an operation is (a cluster.Client call, HTTP requests with
// retries) and which operations there are depends on how the group is
// reached; every client draws its operations from a random source of its
// own, derived from the run's seed, and records each one.
type client interface {
	// one runs one random operation and records it.
	one()
	// pause is how long the client waits before its next operation.
	// Pacing bounds the history (porcupine's work grows with it) however
	// fast the group is, and a few milliseconds per client still keep
	// every key contended.
	pause() time.Duration
}

// runWorkload runs every client until ctx ends and waits for their last
// operations to finish. An operation is bounded by its own deadline, not
// by ctx, so the last ones end as they would have.
func runWorkload(ctx context.Context, clients []client) {
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c.one()
				sleepCtx(ctx, c.pause())
			}
		}()
	}
	wg.Wait()
}

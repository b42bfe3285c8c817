package main

import (
	"context"
	"slices"
	"sync"
	"time"
)

// system is one of the systems under comparison. Write and Read go to the
// current leader and are safe for concurrent use; Crash and Planned take the
// leader away, return the time from the fault to the first write committed
// by a new leader, and restore the group before they return.
type system interface {
	Name() string
	Write(ctx context.Context, key string, value []byte) error
	Read(ctx context.Context, key string) error
	Crash(ctx context.Context) (time.Duration, error)
	Planned(ctx context.Context) (time.Duration, error)
	Close()
}

// measurement is one row of the result table before it is printed.
type measurement struct {
	section string // what was measured, e.g. "write 16 B"
	param   string // the setting, e.g. "64 clients"
	system  string
	clients int
	ops     int
	errs    int
	elapsed time.Duration
	samples []time.Duration // sorted once finished
}

func (m *measurement) rate() float64 {
	if m.elapsed <= 0 {
		return 0
	}
	return float64(m.ops) / m.elapsed.Seconds()
}

// percentile of the sorted samples, nearest rank.
func (m *measurement) percentile(q float64) time.Duration {
	if len(m.samples) == 0 {
		return 0
	}
	return m.samples[int(q*float64(len(m.samples)-1)+0.5)]
}

// runLoad runs clients closed-loop for d: each calls op back to back. Only
// successful operations count and are timed; a failed one (an election under
// load) is counted and followed by a short pause, as a real client would
// back off, so an error storm does not pass for throughput.
func runLoad(ctx context.Context, clients int, d time.Duration, op func(ctx context.Context, client, seq int) error) measurement {
	var (
		mu      sync.Mutex
		samples []time.Duration
		errs    int
		wg      sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for c := range clients {
		wg.Go(func() {
			mine := make([]time.Duration, 0, 4096)
			failed := 0
			for seq := 0; ctx.Err() == nil; seq++ {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				if err := op(ctx, c, seq); err != nil {
					failed++
					time.Sleep(10 * time.Millisecond)
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			samples = append(samples, mine...)
			errs += failed
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(samples)
	return measurement{clients: clients, ops: len(samples), errs: errs, elapsed: time.Since(start), samples: samples}
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

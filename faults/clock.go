package faults

import (
	"sync/atomic"
	"time"
)

// Clock is a node's clock as a test can move it, for
// raftactor.Config.Clock. It has two readings:
//
//   - Now, the wall clock: the real clock plus an offset. Jump moves it, as
//     a node whose clock is set wrong, runs hours ahead or is stepped by
//     NTP looks. A node never lets its wall clock into replicated state, so
//     a Jump must change no result; tests jump it to show that.
//   - Monotonic, the time elapsed as the node measures it: the real
//     monotonic clock plus what Advance added. Advance models time passing
//     on the node (an idle hour, or a process paused and resumed) without a
//     test waiting for it: a leader stamps the replicated clock, which
//     expires sessions, from this reading. Leases keep reading the real
//     monotonic clock, so Advance does not make a leader's lease run out.
//
// A nil Clock reads the real clocks.
type Clock struct {
	offset  atomic.Int64 // wall offset, nanoseconds
	advance atomic.Int64 // monotonic offset, nanoseconds
}

// monoBase anchors Monotonic readings.
var monoBase = time.Now()

// NewClock returns a Clock that reads the real clock until it is moved.
func NewClock() *Clock { return &Clock{} }

// Now is the clock's wall time.
func (c *Clock) Now() time.Time {
	if c == nil {
		return time.Now()
	}
	return time.Now().Add(time.Duration(c.offset.Load()))
}

// Jump moves the wall clock by d: forward for a positive d, back for a
// negative one. Jumps add up. The monotonic reading does not move.
func (c *Clock) Jump(d time.Duration) { c.offset.Add(int64(d)) }

// Monotonic is the time elapsed since an arbitrary fixed point of the
// process, as the node measures it. It never goes back.
func (c *Clock) Monotonic() time.Duration {
	d := time.Since(monoBase)
	if c != nil {
		d += time.Duration(c.advance.Load())
	}
	return d
}

// Advance lets d of time pass for the node at once: the monotonic reading
// and the wall clock both move forward by d. A non-positive d does
// nothing, since monotonic time never goes back.
func (c *Clock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.advance.Add(int64(d))
	c.offset.Add(int64(d))
}

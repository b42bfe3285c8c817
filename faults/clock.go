package faults

import (
	"sync/atomic"
	"time"
)

// Clock is a wall clock a test can move: it reads the real clock plus an
// offset the test sets, for a node's raftactor.Config.Clock. Moving it is
// what a node whose clock jumps, or runs hours ahead, looks like; a test
// moves it instead of sleeping until real time has passed. A nil Clock
// reads the real clock.
type Clock struct {
	offset atomic.Int64 // nanoseconds
}

// NewClock returns a Clock that reads the real clock until it is moved.
func NewClock() *Clock { return &Clock{} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	if c == nil {
		return time.Now()
	}
	return time.Now().Add(time.Duration(c.offset.Load()))
}

// Jump moves the clock by d: forward for a positive d, back for a negative
// one. Jumps add up.
func (c *Clock) Jump(d time.Duration) { c.offset.Add(int64(d)) }

package faults

import (
	"testing"
	"time"
)

func TestClockJumpsByWhatItIsTold(t *testing.T) {
	c := NewClock()
	c.Jump(2 * time.Hour)
	c.Jump(-30 * time.Minute)
	if ahead := time.Until(c.Now()); ahead < 90*time.Minute-time.Second || ahead > 90*time.Minute+time.Second {
		t.Fatalf("clock %v ahead after +2h and -30m, want 1h30m", ahead)
	}
	var real *Clock
	if d := time.Until(real.Now()); d < -time.Second || d > time.Second {
		t.Fatalf("a nil clock is %v off the real one", d)
	}
}

func TestClockAdvanceMovesBothReadingsAndJumpOnlyTheWall(t *testing.T) {
	c := NewClock()
	mono := c.Monotonic()
	c.Jump(-3 * time.Hour)
	if back := c.Monotonic() - mono; back < 0 || back > time.Second {
		t.Fatalf("a wall jump moved the monotonic reading by %v", back)
	}
	c.Advance(time.Hour)
	c.Advance(-time.Hour) // ignored: monotonic time never goes back
	if got := c.Monotonic() - mono; got < time.Hour || got > time.Hour+time.Second {
		t.Fatalf("monotonic reading moved %v after Advance(1h), want 1h", got)
	}
	if behind := time.Until(c.Now()); behind < -2*time.Hour-time.Second || behind > -2*time.Hour+time.Second {
		t.Fatalf("wall clock %v off after -3h and Advance(1h), want -2h", behind)
	}
}

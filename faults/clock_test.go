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

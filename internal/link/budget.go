package link

import (
	"sync"
	"time"
)

// budget bounds the bytes of the frames a link's accepted connections are
// reading at once, across all of them: a reader takes budget before it
// grows a frame's buffer and gives it back once the frame is decoded. A
// reader that cannot get its bytes waits up to linkBudgetWait for others to
// give theirs back, then its connection closes.
type budget struct {
	limit int

	mu     sync.Mutex
	used   int
	peak   int           // the most ever in use: a test hook
	wake   chan struct{} // closed, and replaced, when bytes come back while waited for
	waited bool          // a reader waits on wake
}

func newBudget(limit int) *budget {
	return &budget{limit: limit, wake: make(chan struct{})}
}

// take takes n bytes, waiting at most wait, or until done closes, for
// them; false means it got nothing.
func (b *budget) take(n int, wait time.Duration, done <-chan struct{}) bool {
	var timer *time.Timer
	for {
		b.mu.Lock()
		if b.used+n <= b.limit {
			b.used += n
			b.peak = max(b.peak, b.used)
			b.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return true
		}
		wake := b.wake
		b.waited = true
		b.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(wait)
		}
		select {
		case <-wake:
		case <-timer.C:
			return false
		case <-done:
			timer.Stop()
			return false
		}
	}
}

// give gives back n bytes taken; a nil budget (a dialed connection's) has
// none.
func (b *budget) give(n int) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if b.waited {
		close(b.wake)
		b.wake, b.waited = make(chan struct{}), false
	}
	b.mu.Unlock()
}

// inUse returns the bytes taken now and the most ever taken.
func (b *budget) inUse() (used, peak int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.peak
}

package scheduler

import (
	"slices"
	"sync"
	"time"
)

// Clock is the scheduler's time: Now for decisions, After for waiting.
// Tests inject a FakeClock so that "every 4 h for 48 h" runs in
// milliseconds (STYLE.md §5).
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
	// At fires once the time is t or later (at once if it already is).
	// Waiting for an absolute time, rather than for a duration computed
	// from an earlier Now, cannot miss a fake clock's Advance.
	At(t time.Time) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

func (RealClock) Now() time.Time                         { return time.Now() }
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (RealClock) At(t time.Time) <-chan time.Time        { return time.After(time.Until(t)) }

// FakeClock is a manual clock for tests: time moves only with Advance.
type FakeClock struct {
	mu      sync.Mutex // guards now and waiters
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

// NewFakeClock starts at t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *FakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := c.now.Add(d)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at, ch})
	return ch
}

// At fires when the clock reaches t.
func (c *FakeClock) At(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !t.After(c.now) {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{t, ch})
	return ch
}

// Advance moves time forward and fires the waiters that are due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	slices.SortFunc(c.waiters, func(a, b fakeWaiter) int { return a.at.Compare(b.at) })
	kept := c.waiters[:0]
	var fire []chan time.Time
	for _, w := range c.waiters {
		if !w.at.After(now) {
			fire = append(fire, w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
	c.mu.Unlock()
	for _, ch := range fire {
		ch <- now
	}
}

// Waiters reports how many After calls are pending (tests use it to know
// the scheduler has gone back to sleep).
func (c *FakeClock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

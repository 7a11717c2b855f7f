// Package clock is facteur's one notion of time, injected into every part
// that decides or waits by it (scheduler, webhooks, pickup, admin,
// resolver cache, submission, MTA-STS, TLS policy): Real in production,
// Fake in tests, so that "every 4 h for 48 h" runs in milliseconds
// (STYLE.md §5) and no decision reads the wall clock behind the test's back.
package clock

import (
	"slices"
	"sync"
	"time"
)

// Clock is time: Now for decisions, After and At for waiting. It is safe
// for concurrent use.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
	// At fires once the time is t or later (at once if it already is).
	// Waiting for an absolute time, rather than for a duration computed
	// from an earlier Now, cannot miss a fake clock's Advance.
	At(t time.Time) <-chan time.Time
}

// Real is the wall clock.
type Real struct{}

func (Real) Now() time.Time                         { return time.Now() }
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (Real) At(t time.Time) <-chan time.Time        { return time.After(time.Until(t)) }

// Fake is a manual clock for tests: time moves only with Advance. Every
// wait it is asked for is also reported on Waits, so that a test knows the
// code under test is waiting, and for how long, without sleeping.
type Fake struct {
	mu      sync.Mutex // guards now and waiters
	now     time.Time
	waiters []fakeWaiter
	waits   chan time.Duration
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

// NewFake starts at t.
func NewFake(t time.Time) *Fake { return &Fake{now: t, waits: make(chan time.Duration, 10000)} }

// Waits reports the duration of each After and At call, in order (At's
// from the time of the call). Past 10000 unread reports, more are dropped.
func (c *Fake) Waits() <-chan time.Duration { return c.waits }

// report is called with c.mu held.
func (c *Fake) report(d time.Duration) {
	select {
	case c.waits <- d:
	default:
	}
}

func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *Fake) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := c.now.Add(d)
	c.report(d)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at, ch})
	return ch
}

// At fires when the clock reaches t.
func (c *Fake) At(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.report(t.Sub(c.now))
	if !t.After(c.now) {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{t, ch})
	return ch
}

// Advance moves time forward and fires the waiters that are due.
func (c *Fake) Advance(d time.Duration) {
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

// Waiters reports how many After and At calls are pending (tests use it to
// know the code under test has gone back to sleep).
func (c *Fake) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// Package guard is the submission side's abuse guard (issue 8 §3): rate
// limits per client IP, per envelope sender and per authenticated user
// (golang.org/x/time/rate), a queue-size limit and a free-disk floor. Past a
// rate the client gets 451 4.7.1; past the queue or disk floor, 452 4.3.1.
// Nothing already accepted is touched. It owns the limiters.
package guard

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"

	"facteur/policy"
)

// Options configure the guard; a zero rate is no limit.
type Options struct {
	PerClientIP, PerSender, PerUser policy.Rate
	MaxQueue                        int   // 0: no limit
	MinFreeDisk                     int64 // bytes; 0: no floor
	DataDir                         string
	// QueueSize returns the number of queued messages (cheap: a counter).
	QueueSize func(ctx context.Context) (int, error)
}

// Guard answers the submission server's Admit.
type Guard struct {
	opts Options

	mu       sync.Mutex // guards limiters, sweeps and the storage cache
	limiters map[string]*entry
	sweeps   int
	// The storage verdict is cached for a second: MAIL is the hot path and
	// the queue count and statfs do not change meaningfully faster.
	checkedAt time.Time
	verdict   *smtp.SMTPError
}

type entry struct {
	lim  *rate.Limiter
	seen time.Time
	full time.Duration // how long an idle bucket takes to refill
}

// New returns a guard.
func New(opts Options) *Guard {
	return &Guard{opts: opts, limiters: map[string]*entry{}}
}

var (
	// ErrRate is the reply past a rate limit (issue 8 §3: 451 4.7.1).
	ErrRate = func(what string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Rate limit exceeded for " + what + ", try again later"}
	}
	// ErrStorage is the reply past the queue or disk floor.
	ErrStorage = func(why string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage (" + why + "), try again later"}
	}
)

// Admit is asked at MAIL FROM. It takes one token of each applicable rate
// only when all allow, so that a refused message costs nothing.
func (g *Guard) Admit(clientIP, sender, user string, now time.Time) *smtp.SMTPError {
	if err := g.cachedStorage(now); err != nil {
		return err
	}
	type check struct {
		key  string
		r    policy.Rate
		what string
	}
	var checks []check
	if !g.opts.PerClientIP.Unlimited() && clientIP != "" {
		checks = append(checks, check{"ip:" + clientIP, g.opts.PerClientIP, "client " + clientIP})
	}
	if !g.opts.PerSender.Unlimited() {
		s := strings.ToLower(sender)
		if s == "" {
			s = "<>"
		}
		checks = append(checks, check{"from:" + s, g.opts.PerSender, "sender <" + sender + ">"})
	}
	if !g.opts.PerUser.Unlimited() && user != "" {
		checks = append(checks, check{"user:" + user, g.opts.PerUser, "user " + user})
	}
	if len(checks) == 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweep(now)
	var rs []*rate.Reservation
	for _, c := range checks {
		e := g.limiters[c.key]
		if e == nil {
			// A bucket as deep as the rate's count: a page that sends a
			// burst of N then stops is fine; a flood is not.
			burst := max(c.r.N, 1)
			e = &entry{lim: rate.NewLimiter(c.r.Limit(), burst), full: time.Duration(float64(burst) / float64(c.r.Limit()) * float64(time.Second))}
			g.limiters[c.key] = e
		}
		e.seen = now
		r := e.lim.ReserveN(now, 1)
		if !r.OK() || r.DelayFrom(now) > 0 {
			r.CancelAt(now)
			for _, prev := range rs {
				prev.CancelAt(now)
			}
			return ErrRate(c.what)
		}
		rs = append(rs, r)
	}
	return nil
}

// sweep forgets, now and then, limiters idle long enough to be full again
// (forgetting one earlier would hand a slow rate's sender a fresh burst),
// so that a stream of distinct senders cannot grow the map without bound.
func (g *Guard) sweep(now time.Time) {
	g.sweeps++
	if g.sweeps < 10000 {
		return
	}
	g.sweeps = 0
	for k, e := range g.limiters {
		if now.Sub(e.seen) >= e.full {
			delete(g.limiters, k)
		}
	}
}

func (g *Guard) cachedStorage(now time.Time) *smtp.SMTPError {
	if g.opts.MaxQueue <= 0 && g.opts.MinFreeDisk <= 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if d := now.Sub(g.checkedAt); d >= 0 && d < time.Second && !g.checkedAt.IsZero() {
		return g.verdict
	}
	g.verdict, g.checkedAt = g.storage(), now
	return g.verdict
}

func (g *Guard) storage() *smtp.SMTPError {
	if g.opts.MaxQueue > 0 && g.opts.QueueSize != nil {
		n, err := g.opts.QueueSize(context.Background())
		if err == nil && n >= g.opts.MaxQueue {
			return ErrStorage(fmt.Sprintf("queue holds %d messages", n))
		}
	}
	if g.opts.MinFreeDisk > 0 && g.opts.DataDir != "" {
		if free, err := FreeBytes(g.opts.DataDir); err == nil && free < g.opts.MinFreeDisk {
			return ErrStorage(fmt.Sprintf("%d bytes free under the queue", free))
		}
	}
	return nil
}

// FreeBytes is the space available to an unprivileged user under dir.
func FreeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

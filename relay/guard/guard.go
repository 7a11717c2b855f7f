// Package guard is the submission side's abuse guard (issue 8 §3, issue 11
// §2): rate limits per client IP (untrusted clients only, unless asked), per
// envelope sender (messages) and per user, AUTH or local (recipients)
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
	PerClientIPTrusted              bool  // per_client_ip applies to trusted clients too
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
	lim  *bucket
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
	// ErrOverBudget: one message has more recipients than the budget.
	ErrOverBudget = func(what string, n int, limit string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: fmt.Sprintf("%d recipients exceed the limit of %s for %s", n, limit, what)}
	}
	// ErrStorage is the reply past the queue or disk floor.
	ErrStorage = func(why string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage (" + why + "), try again later"}
	}
)

// Client is who submits a message.
type Client struct {
	IP string
	// Trusted: in trusted_networks, on loopback or on the local socket.
	// per_client_ip does not apply to it unless PerClientIPTrusted: all the
	// sites of a web server share 127.0.0.1 (issue 11 §2).
	Trusted bool
}

// Admit is asked at MAIL FROM: the queue and disk floors, the client IP's
// and the sender's rates, one message each. It takes one token of each
// applicable rate only when all allow, so that a refused message costs
// nothing.
func (g *Guard) Admit(c Client, sender string, now time.Time) *smtp.SMTPError {
	if err := g.cachedStorage(now); err != nil {
		return err
	}
	var checks []check
	if !g.opts.PerClientIP.Unlimited() && c.IP != "" && (!c.Trusted || g.opts.PerClientIPTrusted) {
		checks = append(checks, check{"ip:" + c.IP, g.opts.PerClientIP, "client " + c.IP, 1})
	}
	return g.takeWithSender(checks, sender, now)
}

// Spend takes n recipients from user's per_user budget (issue 11 §2: a
// message to 1000 recipients spends 1000), all or nothing. user is the
// AUTH user or the local account; "" (unknown) is not limited. The
// returned Spent gives the tokens back when the transaction is abandoned.
func (g *Guard) Spend(user string, n int, now time.Time) (*Spent, *smtp.SMTPError) {
	if g.opts.PerUser.Unlimited() || user == "" || n <= 0 {
		return nil, nil
	}
	return g.take([]check{{"user:" + user, g.opts.PerUser, "user " + user, n}}, now)
}

// Local is pickup's check for a maildrop file: the floors, the user's
// recipient budget and the sender's rate, all or nothing. Over any of them
// the file waits in the maildrop.
func (g *Guard) Local(user, sender string, nrcpt int, now time.Time) *smtp.SMTPError {
	if err := g.cachedStorage(now); err != nil {
		return err
	}
	var checks []check
	if !g.opts.PerUser.Unlimited() && user != "" {
		checks = append(checks, check{"user:" + user, g.opts.PerUser, "user " + user, nrcpt})
	}
	return g.takeWithSender(checks, sender, now)
}

// takeWithSender adds the sender's rate to checks and takes them all. Admit
// and Local both end here, so that a sender spends the one per_sender
// budget (one key, one message each) whether it came by SMTP or the maildrop.
func (g *Guard) takeWithSender(checks []check, sender string, now time.Time) *smtp.SMTPError {
	if !g.opts.PerSender.Unlimited() {
		s := strings.ToLower(sender)
		if s == "" {
			s = "<>"
		}
		checks = append(checks, check{"from:" + s, g.opts.PerSender, "sender <" + sender + ">", 1})
	}
	_, err := g.take(checks, now)
	return err
}

// Storage is the queue and disk floors alone.
func (g *Guard) Storage(now time.Time) *smtp.SMTPError { return g.cachedStorage(now) }

// Spent is a set of tokens taken by Spend.
type Spent struct {
	g     *Guard
	takes []take
}

type take struct {
	b *bucket
	n int
}

// Refund gives the tokens back (the message was not queued). A nil Spent
// is fine.
func (s *Spent) Refund(now time.Time) {
	if s == nil {
		return
	}
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	for _, t := range s.takes {
		t.b.give(now, t.n)
	}
	s.takes = nil
}

type check struct {
	key  string
	r    policy.Rate
	what string
	n    int
}

func (g *Guard) take(checks []check, now time.Time) (*Spent, *smtp.SMTPError) {
	if len(checks) == 0 {
		return nil, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweep(now)
	var takes []take
	undo := func() {
		for _, t := range takes {
			t.b.give(now, t.n)
		}
	}
	for _, c := range checks {
		e := g.limiters[c.key]
		if e == nil {
			// A bucket as deep as the rate's count: a page that sends a
			// burst of N then stops is fine; a flood is not.
			burst := max(c.r.N, 1)
			e = &entry{lim: newBucket(c.r.Limit(), burst, now), full: time.Duration(float64(burst) / float64(c.r.Limit()) * float64(time.Second))}
			g.limiters[c.key] = e
		}
		e.seen = now
		if c.n > e.lim.burst {
			// Never possible, however long the wait: say so for good
			// rather than let a maildrop file wait forever.
			undo()
			return nil, ErrOverBudget(c.what, c.n, c.r.String())
		}
		if !e.lim.takeN(now, c.n) {
			undo()
			return nil, ErrRate(c.what)
		}
		takes = append(takes, take{e.lim, c.n})
	}
	return &Spent{g: g, takes: takes}, nil
}

// bucket is a token bucket that can take tokens back (x/time/rate cannot
// once a reservation's time has passed, and an abandoned transaction must
// not cost its recipients). The guard's mutex guards it.
type bucket struct {
	rate   float64 // tokens per second
	burst  int
	tokens float64
	last   time.Time
}

func newBucket(r rate.Limit, burst int, now time.Time) *bucket {
	return &bucket{rate: float64(r), burst: burst, tokens: float64(burst), last: now}
}

func (b *bucket) advance(now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(b.burst), b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
}

func (b *bucket) takeN(now time.Time, n int) bool {
	b.advance(now)
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

func (b *bucket) give(now time.Time, n int) {
	b.advance(now)
	b.tokens = min(float64(b.burst), b.tokens+float64(n))
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

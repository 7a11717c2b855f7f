// Package pickup is Postfix's pickup role: it ingests the messages the
// sendmail shim left in DATA_DIR/maildrop when the daemon could not be
// reached, at start and then every interval. The SMTP path's limits apply
// (issue 11 §2): a file over them waits, nothing is lost. A file is
// removed only after its message is committed to the queue; a file that
// cleanup refuses for good (a loop, smuggling) or that is corrupt is moved
// to maildrop/corrupt and logged, never silently dropped.
package pickup

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue/maildrop"
	"facteur/relay/breaker"
	"facteur/relay/cleanup"
	"facteur/relay/clock"
	"facteur/relay/maillog"
	"facteur/relay/unixsock"
)

// Pickup scans one maildrop directory.
type Pickup struct {
	Dir      string
	Cleanup  *cleanup.Cleanup
	Log      *slog.Logger
	Clock    clock.Clock   // default clock.Real
	Interval time.Duration // between scans; default 1s
	// Filter drops suppressed recipients (the shim could not learn it at
	// RCPT time); nil keeps all. It returns the recipients kept and those
	// dropped, with why.
	Filter func(ctx context.Context, rcpts []string) (keep []string, dropped []Dropped)
	// Breaker is told of each recipient Filter dropped, once the file
	// leaves the maildrop (queued, or removed with no recipient left): it
	// counts as failed against the sender (issue 21), as at RCPT. nil: no
	// breaker.
	Breaker Breaker
	// Guard applies the limits of the SMTP path to a maildrop file (issue
	// 11 §2: the maildrop is no way around them): the user's recipient
	// budget, the sender's rate, max_queue_messages, min_free_disk. A 4xx
	// leaves the file waiting in the maildrop; a 5xx quarantines it. nil
	// allows everything.
	Guard Guard
	// SenderCheck applies sender_login to a local user's envelope sender;
	// nil allows every sender.
	SenderCheck func(user, sender string) *smtp.SMTPError

	// names gives a file's uid its account name.
	names unixsock.Names

	// done names the files queued whose removal failed: they must not be
	// queued again (only Scan, from one goroutine, touches it).
	done map[string]bool
	// lastSweep is when stale temporary files were last removed.
	lastSweep time.Time
	// waiting names the files held back by the guard (logged once each)
	// with when to read them again (waitRetry).
	waiting map[string]time.Time
}

// Dropped is a recipient Filter dropped, and why (the suppression).
type Dropped struct {
	Rcpt, Why string
}

// Breaker is the per-sender circuit breaker, as relay/submission's.
type Breaker interface {
	Suppressed(s breaker.Sender, rcpt, why string, now time.Time)
}

// waitRetry is how long a file the guard held back waits before it is read
// again. Every scan (one a second) would otherwise read and hash it anew:
// a user over its budget with its whole maildrop quota (100 MiB) waiting
// would cost that every second for the hour its budget takes to refill.
// A per_user budget of 200/h earns a recipient every 18 s.
const waitRetry = 30 * time.Second

// Guard is the part of guard.Guard pickup needs.
type Guard interface {
	Local(user, sender string, nrcpt int, now time.Time) *smtp.SMTPError
}

// Run scans at once, then every Interval, until ctx is done.
func (p *Pickup) Run(ctx context.Context) error {
	interval := p.Interval
	if interval <= 0 {
		interval = time.Second
	}
	clk := p.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	for {
		if _, err := p.Scan(ctx); err != nil {
			p.Log.Error(maillog.PickupScan, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-clk.After(interval):
		}
	}
}

// Scan ingests every complete file now and returns how many were queued.
func (p *Pickup) Scan(ctx context.Context) (int, error) {
	if now := p.now(); now.Sub(p.lastSweep) > time.Hour {
		// A shim killed mid-write leaves a dot file; a day is far longer
		// than any write.
		if _, err := maildrop.RemoveStale(p.Dir, now.Add(-24*time.Hour)); err != nil {
			p.Log.Error(maillog.MaildropSweep, "err", err)
		}
		p.lastSweep = now
	}
	paths, err := maildrop.List(p.Dir)
	if err != nil {
		return 0, err
	}
	n := 0
	now := p.now()
	listed := make(map[string]bool, len(paths))
	for _, path := range paths {
		listed[path] = true
		if ctx.Err() != nil {
			return n, nil
		}
		if next, ok := p.waiting[path]; ok && now.Before(next) {
			continue // held back by the guard: not read again yet
		}
		if p.done[path] {
			if maildrop.Remove(path) == nil {
				delete(p.done, path)
			}
			continue
		}
		ok, err := p.ingest(ctx, path)
		if err != nil {
			// This file could not be read (an I/O error, a permission a
			// shim installed without its setgid group left): said once,
			// tried again later, and the files behind it, other users'
			// and cron's mail, still go.
			if _, said := p.waiting[path]; !said {
				p.Log.Error(maillog.PickupScan, "file", path, "err", err)
			}
			if p.waiting == nil {
				p.waiting = map[string]time.Time{}
			}
			p.waiting[path] = now.Add(waitRetry)
			continue
		}
		if ok {
			n++
		}
	}
	for path := range p.waiting {
		if !listed[path] {
			delete(p.waiting, path) // gone (quarantined, removed)
		}
	}
	// The shim's per-user ledgers follow what is really left.
	if err := maildrop.Recount(p.Dir); err != nil {
		p.Log.Error(maillog.MaildropRecount, "err", err)
	}
	return n, nil
}

func (p *Pickup) ingest(ctx context.Context, path string) (bool, error) {
	env, body, err := maildrop.Read(path)
	if err != nil {
		if errors.Is(err, maildrop.ErrCorrupt) {
			p.Log.Error(maillog.MaildropQuarantined, "file", path, "err", err)
			return false, maildrop.Quarantine(path, err.Error())
		}
		return false, err
	}
	rcpts := env.Recipients
	var dropped []Dropped
	if p.Filter != nil {
		rcpts, dropped = p.Filter(ctx, rcpts)
	}
	// The account is named from the uid, which Read checked against the
	// file's owner, never from the file's own user line: the file is the
	// submitter's writing, and www-data claiming "root" (or a name with no
	// limit spent yet) would take another account's per-user budget and be
	// logged and counted as it.
	user := p.names.Lookup(env.UID)
	now := p.now()
	// Counted only when the file leaves the maildrop: a file that waits
	// (a limit) is filtered again at the next scan and must not count
	// twice.
	report := func() {
		if p.Breaker == nil {
			return
		}
		bs := breaker.Sender{User: user, Address: p.Cleanup.RewriteSender(env.Sender)}
		for _, d := range dropped {
			p.Breaker.Suppressed(bs, d.Rcpt, d.Why, now)
		}
	}
	if len(rcpts) == 0 {
		if err := maildrop.Remove(path); err != nil {
			return false, err
		}
		report()
		return false, nil
	}
	refused := func(se *smtp.SMTPError) (bool, error) {
		if se.Code/100 == 5 {
			p.Log.Error(maillog.MaildropRefused, "file", path, "uid", env.UID, "user", user, "resp", cleanup.ReplyLine(se))
			delete(p.waiting, path)
			return false, maildrop.Quarantine(path, cleanup.ReplyLine(se))
		}
		// Temporary (a limit, the store full): the file waits for a
		// later scan; said once.
		if _, said := p.waiting[path]; !said {
			p.Log.Warn(maillog.MaildropWaits, "file", path, "uid", env.UID, "user", user, "resp", cleanup.ReplyLine(se))
		}
		if p.waiting == nil {
			p.waiting = map[string]time.Time{}
		}
		p.waiting[path] = now.Add(waitRetry)
		return false, nil
	}
	if p.SenderCheck != nil {
		if se := p.SenderCheck(user, env.Sender); se != nil {
			return refused(se)
		}
	}
	if p.Guard != nil {
		if se := p.Guard.Local(user, env.Sender, len(rcpts), now); se != nil {
			return refused(se)
		}
	}
	id, err := p.Cleanup.Process(ctx, cleanup.Message{
		Sender:     env.Sender,
		Recipients: rcpts,
		ClientIP:   "127.0.0.1",
		Helo:       user,
		User:       user,
		UID:        env.UID,
		Protocol:   "local",
		SMTPUTF8:   env.SMTPUTF8,
		Data:       body,
	}, now)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return refused(se)
		}
		return false, nil
	}
	delete(p.waiting, path)
	report()
	if err := maildrop.Remove(path); err != nil {
		// Queued already: never queue it twice; retry the removal only.
		p.Log.Error(maillog.MaildropRemove, "qid", string(id), "file", path, "err", err)
		if p.done == nil {
			p.done = map[string]bool{}
		}
		p.done[path] = true
	}
	return true, nil
}

// now is the pickup's clock: what it stamps and when it sweeps.
func (p *Pickup) now() time.Time {
	if p.Clock == nil {
		return clock.Real{}.Now()
	}
	return p.Clock.Now()
}

// Package pickup is Postfix's pickup role: it ingests the messages the
// sendmail shim left in DATA_DIR/maildrop when the daemon was down or
// refused it for a while, at start and then every interval. A file is
// removed only after its message is committed to the queue; a file that
// cleanup refuses for good (a loop, smuggling) or that is corrupt is moved
// to maildrop/corrupt and logged, never silently dropped.
package pickup

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue/maildrop"
	"facteur/relay/cleanup"
)

// Pickup scans one maildrop directory.
type Pickup struct {
	Dir      string
	Cleanup  *cleanup.Cleanup
	Log      *slog.Logger
	Now      func() time.Time
	Interval time.Duration // between scans; default 1s
	// Filter drops suppressed recipients (the shim could not learn it at
	// RCPT time); nil keeps all.
	Filter func(ctx context.Context, rcpts []string) []string

	// done names the files queued whose removal failed: they must not be
	// queued again (only Scan, from one goroutine, touches it).
	done map[string]bool
	// lastSweep is when stale temporary files were last removed.
	lastSweep time.Time
}

// Run scans at once, then every Interval, until ctx is done.
func (p *Pickup) Run(ctx context.Context) error {
	interval := p.Interval
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := p.Scan(ctx); err != nil {
			p.Log.Error("pickup scan", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Scan ingests every complete file now and returns how many were queued.
func (p *Pickup) Scan(ctx context.Context) (int, error) {
	if now := time.Now(); now.Sub(p.lastSweep) > time.Hour {
		// A shim killed mid-write leaves a dot file; a day is far longer
		// than any write.
		if _, err := maildrop.RemoveStale(p.Dir, now.Add(-24*time.Hour)); err != nil {
			p.Log.Error("maildrop sweep", "err", err)
		}
		p.lastSweep = now
	}
	paths, err := maildrop.List(p.Dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, path := range paths {
		if ctx.Err() != nil {
			return n, nil
		}
		if p.done[path] {
			if maildrop.Remove(path) == nil {
				delete(p.done, path)
			}
			continue
		}
		ok, err := p.ingest(ctx, path)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

func (p *Pickup) ingest(ctx context.Context, path string) (bool, error) {
	env, body, err := maildrop.Read(path)
	if err != nil {
		if errors.Is(err, maildrop.ErrCorrupt) {
			p.Log.Error("maildrop file quarantined", "file", path, "err", err)
			return false, maildrop.Quarantine(path, err.Error())
		}
		return false, err
	}
	rcpts := env.Recipients
	if p.Filter != nil {
		rcpts = p.Filter(ctx, rcpts)
	}
	if len(rcpts) == 0 {
		return false, maildrop.Remove(path)
	}
	user := env.User
	if user == "" {
		user = strconv.Itoa(env.UID)
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
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
		if errors.As(err, &se) && se.Code/100 == 5 {
			p.Log.Error("maildrop message refused", "file", path, "resp", se.Error())
			return false, maildrop.Quarantine(path, se.Error())
		}
		// Temporary (store full, database error): leave the file for the
		// next scan.
		return false, nil
	}
	if err := maildrop.Remove(path); err != nil {
		// Queued already: never queue it twice; retry the removal only.
		p.Log.Error("maildrop remove", "qid", string(id), "file", path, "err", err)
		if p.done == nil {
			p.done = map[string]bool{}
		}
		p.done[path] = true
	}
	return true, nil
}

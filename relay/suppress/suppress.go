// Package suppress is the suppression list's logic above the queue's
// storage (issue 7 §4): storing entries and cancelling the queued mail to
// the addresses they name, the import/export formats of `facteur suppress`,
// and the daemon's /suppressions endpoints. The CLI and the daemon both
// call it; with the daemon down, the CLI applies entries to the database
// with the scheduler's own cancelling code (Local).
package suppress

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"facteur/queue"
	"facteur/relay/config"
	"facteur/relay/maillog"
	"facteur/relay/scheduler"
)

// ManualReason is the reason of `suppress add` without --reason, and of
// any entry given without one.
const ManualReason = "manual"

// Result answers POST /suppressions and, inside bounces.Result, POST
// /bounces.
type Result struct {
	Suppressed []queue.Suppression `json:"suppressed"`
	// Cancelled counts the queued recipients moved to status suppressed.
	Cancelled int `json:"cancelled"`
}

// Canceller cancels the queued mail to a newly suppressed address and says
// how many recipients it cancelled: the running scheduler's
// CancelSuppressed, or the one Local.Apply makes.
type Canceller func(ctx context.Context, addr, why string, now time.Time) (int, error)

// Apply stores list and then cancels the queued mail to each entry active
// at now. replace stores each entry as given (import); else each is merged
// into the existing one (Store.Suppress: first_seen kept, count
// incremented). Missing times default to now, a missing source to manual
// and a missing reason to "manual". added, when not nil, sees each entry
// once stored. The stored entries come back.
func Apply(ctx context.Context, store *queue.Store, list []queue.Suppression, replace bool, now time.Time, added func(queue.Suppression), cancel Canceller) (Result, error) {
	res := Result{Suppressed: []queue.Suppression{}}
	for _, s := range list {
		if s.Source == "" {
			s.Source = queue.SourceManual
		}
		if s.Reason == "" {
			s.Reason = ManualReason
		}
		if s.LastSeen.IsZero() {
			s.LastSeen = now
		}
		if replace {
			if s.FirstSeen.IsZero() {
				s.FirstSeen = s.LastSeen
			}
			if err := store.PutSuppression(ctx, s); err != nil {
				return res, err
			}
			s.Address = strings.ToLower(strings.TrimSpace(s.Address))
		} else {
			stored, err := store.Suppress(ctx, s)
			if err != nil {
				return res, err
			}
			s = stored
		}
		res.Suppressed = append(res.Suppressed, s)
		if added != nil {
			added(s)
		}
	}
	for _, s := range res.Suppressed {
		if !s.Active(now) {
			continue
		}
		n, err := cancel(ctx, s.Address, cancelReason(s), now)
		if err != nil {
			return res, err
		}
		res.Cancelled += n
	}
	return res, nil
}

// cancelReason is the text the cancelled recipients' DSNs give.
func cancelReason(s queue.Suppression) string {
	if s.Response != "" {
		return s.Reason + ": " + s.Response
	}
	return s.Reason
}

// Local is the list in the queue database, for the CLI while the daemon
// is down: the same changes the daemon makes, with the scheduler's own
// cancelling code (it needs no running scheduler): the queued recipients
// become suppressed and each sender gets one DSN, queued for the next
// start.
type Local struct {
	Config *config.Config
	// Open opens the database; create makes it when missing, else a
	// missing database is (nil, nil).
	Open func(create bool) (*queue.Store, error)
	// LogTo gets the event lines, in Config's log format.
	LogTo io.Writer
}

// List returns the whole list, expired entries included.
func (l Local) List(ctx context.Context) ([]queue.Suppression, error) {
	store, err := l.Open(false)
	if err != nil || store == nil {
		return []queue.Suppression{}, err
	}
	defer store.Close()
	return store.Suppressions(ctx)
}

// Add adds (merging with existing entries) or imports (replace: times and
// counts as given) list.
func (l Local) Add(ctx context.Context, list []queue.Suppression, replace bool, now time.Time) (Result, error) {
	store, err := l.Open(true)
	if err != nil {
		return Result{}, err
	}
	defer store.Close()
	return l.Apply(ctx, store, list, replace, now)
}

// Apply is Apply on store, already open, with the scheduler's cancelling
// code.
func (l Local) Apply(ctx context.Context, store *queue.Store, list []queue.Suppression, replace bool, now time.Time) (Result, error) {
	s := scheduler.New(scheduler.Options{Hostname: l.Config.Hostname, Postmaster: l.Config.PostmasterAddress()},
		store, nil, scheduler.EngineShaper{}, nil, maillog.New(l.LogTo, l.Config.LogFormat))
	return Apply(ctx, store, list, replace, now, nil, s.CancelSuppressed)
}

// Remove takes addr off the list.
func (l Local) Remove(ctx context.Context, addr string) error {
	store, err := l.Open(false)
	if err != nil {
		return err
	}
	found := false
	if store != nil {
		defer store.Close()
		if found, err = store.Unsuppress(ctx, addr); err != nil {
			return err
		}
	}
	if !found {
		return notSuppressed(addr)
	}
	return nil
}

// Active returns the entries of list active at now, in place.
func Active(list []queue.Suppression, now time.Time) []queue.Suppression {
	active := list[:0]
	for _, s := range list {
		if s.Active(now) {
			active = append(active, s)
		}
	}
	return active
}

// OwnAddress reports whether addr is one of this host's: a bare name, or
// one at hostname, local_domain or localhost. Such an address is never
// suppressed (issue 13 §5: root@vm went on the list for 30 days).
func OwnAddress(cfg *config.Config, addr string) bool {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return true
	}
	d := strings.TrimSuffix(addr[i+1:], ".")
	return strings.EqualFold(d, cfg.Hostname) || strings.EqualFold(d, "localhost") || (cfg.LocalDomain != "" && strings.EqualFold(d, cfg.LocalDomain))
}

// DropOwn leaves this host's own addresses out of suppressions a bounce
// asks for.
func DropOwn(cfg *config.Config, sups []queue.Suppression) []queue.Suppression {
	out := sups[:0:0]
	for _, s := range sups {
		if !OwnAddress(cfg, s.Address) {
			out = append(out, s)
		}
	}
	return out
}

// notSuppressed is the error of removing an address the list lacks.
func notSuppressed(addr string) error {
	return fmt.Errorf("%s is not suppressed", strings.ToLower(addr))
}

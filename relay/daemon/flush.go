package daemon

import (
	"context"
	"errors"
	"time"

	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/maillog"
)

// Flush makes the recipients of the messages f selects due now (the whole
// queue for the empty filter) and reports those a provider suspension still
// holds (issue 3 §6, issue 5 §6). Nothing outside f is touched.
func (d *daemon) Flush(ctx context.Context, f queue.Filter) (admin.FlushReport, error) {
	now := d.clock.Now()
	// As Postfix's flush, it revives dead destinations: try them now. It
	// comes before anything is made due: a scheduling cycle between the two
	// (flushLoop wakes the scheduler after its first batch) would find the
	// flushed recipients due and their destination still dead, and defer
	// them again in bulk without a connection, to the end of the dead
	// period; and a flush moves a recipient only once.
	d.sched.Revive()
	var rep admin.FlushReport
	if !f.Empty() {
		// Only what f selects moves (issue 13: a filtered flush must not
		// retry the rest early nor push its schedule out).
		n, err := d.store.FlushMatching(ctx, f, now)
		if err != nil {
			return admin.FlushReport{}, err
		}
		rep.Flushed = n
	} else {
		// The whole queue is moved by flushLoop, a batch per transaction,
		// while the scheduler sends what each batch made due: a flush of a
		// million messages answers at once (issue 19 §2), as Postfix's
		// postqueue -f only signals qmgr. The count is of the recipients
		// waiting, from the counters.
		st, err := d.store.Stats(ctx)
		if err != nil {
			return admin.FlushReport{}, err
		}
		rep.Flushed = st.Recipients[queue.Queued] + st.Recipients[queue.Deferred]
		select {
		case d.flushReq <- now:
		default: // one is pending already; it flushes everything
		}
	}
	skip := func(m queue.Message) error {
		for _, r := range m.Recipients {
			if r.Status.Final() || r.Status == queue.Held || r.Provider == "" {
				continue
			}
			if until, why := d.engine.SuspendedUntil(r.Provider, domainOf(r.Address), now); !until.IsZero() {
				if len(rep.Skipped) == maxSkippedReport {
					return errSkippedFull
				}
				rep.Skipped = append(rep.Skipped, admin.SkippedEntry{ID: m.ID, Rcpt: r.Address, Provider: r.Provider, Until: until, Reason: why})
			}
		}
		return nil
	}
	if d.suspendedWaiting(ctx, now) {
		// Only a suspension can hold a recipient back, and the counters say
		// whether one holds any: without, there is nothing to walk. The walk
		// reads a page at a time (or only the IDs given) and the report is
		// bounded.
		if err := d.store.Each(ctx, f, skip); err != nil && !errors.Is(err, errSkippedFull) {
			return admin.FlushReport{}, err
		}
	}
	return rep, nil
}

// maxSkippedReport bounds the recipients a flush lists as held back by a
// suspension; the log and `facteur providers` say the rest.
const maxSkippedReport = 1000

var errSkippedFull = errors.New("skipped report full")

// suspendedWaiting reports whether a suspended provider or destination has
// recipients waiting, from the queue's counters.
func (d *daemon) suspendedWaiting(ctx context.Context, now time.Time) bool {
	cs, err := d.store.Counts(ctx)
	if err != nil {
		return true // walk, rather than leave out what a flush skips
	}
	for _, c := range cs {
		if c.Provider == "" || !(c.Status == queue.Queued || c.Status == queue.Deferred) {
			continue
		}
		if until, _ := d.engine.SuspendedUntil(c.Provider, c.Domain, now); !until.IsZero() {
			return true
		}
	}
	return false
}

// flushLoop runs the whole-queue flushes `queue flush` asks for, one batch
// per transaction, waking the scheduler after each so that delivery starts
// with the first batch.
func (d *daemon) flushLoop(ctx context.Context) error {
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return nil
		case now = <-d.flushReq:
		}
		total := 0
		var c queue.FlushCursor
		for !c.Done() {
			n, err := d.store.FlushBatch(ctx, now, &c)
			total += n
			if err != nil {
				if ctx.Err() == nil {
					d.log.Error(maillog.QueueFlush, "err", err)
				}
				break
			}
			d.sched.Wake()
		}
		d.log.Info(maillog.QueueFlushed, "messages", total)
	}
}

package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// errIDTaken: the ID drawn outside the transaction is already stored (two processes, or
// a clock stepped back across a restart). Enqueue draws another.
var errIDTaken = errors.New("id already in use")

// Enqueue stores a message for every recipient in env, all queued and due at now, and
// returns its ID once the commit is on disk: only then may the SMTP server answer 250.
// A storage failure comes back as an error (ErrFull when the disk or MaxSize is the
// cause), never as a lost message.
func (s *Store) Enqueue(ctx context.Context, env Envelope, body []byte, now time.Time) (ID, error) {
	if err := checkAddr("sender", env.Sender, true); err != nil {
		return "", fmt.Errorf("enqueue: %w", err)
	}
	if len(env.Recipients) == 0 {
		return "", fmt.Errorf("enqueue: no recipients: %w", ErrInvalid)
	}
	if now.IsZero() {
		return "", fmt.Errorf("enqueue: zero time: %w", ErrInvalid)
	}
	if ms := floorMilli(now); ms < 0 || ms > idMaxMillis-idAhead.Milliseconds() {
		// An ID tells 1970 to 5188: a time outside could not be kept within idAhead
		// of its ID (a clock gone mad; refused rather than listed wrongly).
		return "", fmt.Errorf("enqueue: time %v outside what a queue ID can tell: %w", now, ErrInvalid)
	}
	now = norm(now)
	r := &record{
		Sender: env.Sender, Size: int64(len(body)), Created: now, ClientIP: env.ClientIP,
		Helo: env.Helo, AuthUser: env.AuthUser, User: env.User, UID: env.UID,
		SMTPUTF8: env.SMTPUTF8, EightBit: env.EightBit,
		IsDSN: env.IsDSN, Expires: norm(env.Expires), HoldReason: env.Hold,
	}
	first, next := Queued, now
	if env.Hold != "" {
		first, next = Held, time.Time{}
	}
	seen := make(map[string]bool, len(env.Recipients))
	for _, a := range env.Recipients {
		if err := checkAddr("recipient", a, false); err != nil {
			return "", fmt.Errorf("enqueue: %w", err)
		}
		if seen[a] {
			continue
		}
		seen[a] = true
		r.Rcpts = append(r.Rcpts, rcptSlot{Address: a, Status: first, NextAttempt: next})
	}
	const draws = 5
	for i := range draws {
		id := env.ID
		if i > 0 || id == "" {
			id = NewID(now)
		} else if _, err := ParseID(string(id)); err != nil {
			return "", fmt.Errorf("enqueue: %w: %v", ErrInvalid, err)
		} else if !idFits(id, now) {
			// A caller's ID whose time is not within idAhead after now (drawn long
			// before, or by a clock that has moved since) is replaced, as a taken one
			// is: a stored message's ID must tell its Created within idAhead, or the
			// time-bounded listings (idRangeOf) would miss it.
			id = NewID(now)
		}
		err := s.write(ctx, func(w *wtx) error {
			if w.msgs.Get([]byte(id)) != nil {
				return reject(errIDTaken)
			}
			return w.putNew(id, r, body)
		})
		if errors.Is(err, errIDTaken) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("enqueue: %w", err)
		}
		return id, nil
	}
	return "", fmt.Errorf("enqueue: %d drawn IDs were all in use: %w", draws, errIDTaken)
}

// Record applies delivery outcomes to message id atomically and moves the due-index
// entries. Updates for a recipient already final are skipped without error, so that a
// delivered recipient is never sent again whatever a late caller says. A held recipient
// takes a final outcome (it was sent or refused) but stays held on a non-final one, with
// the attempt and response recorded. When every
// recipient is final, the message and its body are deleted. An unknown message or
// recipient is ErrNotFound and changes nothing.
func (s *Store) Record(ctx context.Context, id ID, updates []Update) error {
	for _, u := range updates {
		if err := u.validate(); err != nil {
			return fmt.Errorf("record %s %s: %w", id, u.Rcpt, err)
		}
	}
	err := s.write(ctx, func(w *wtx) error {
		r, err := w.load(id)
		if err != nil {
			return reject(err)
		}
		idx := make([]int, len(updates))
		for j, u := range updates {
			idx[j] = r.find(u.Rcpt)
			if idx[j] < 0 {
				return reject(fmt.Errorf("recipient %s: %w", u.Rcpt, ErrNotFound))
			}
		}
		for j, u := range updates {
			i := idx[j]
			slot := &r.Rcpts[i]
			if slot.Status.Final() {
				continue
			}
			if u.Attempted {
				slot.Attempts++
				slot.LastAttempt = norm(u.At)
				slot.History = append(slot.History, Attempt{At: norm(u.At), MX: u.MX, Response: u.Response})
				if n := len(slot.History); n > MaxHistory {
					slot.History = append([]Attempt(nil), slot.History[n-MaxHistory:]...)
				}
			}
			if u.Response != "" {
				slot.LastResponse = u.Response
			}
			if u.Class != "" {
				slot.Class = u.Class
			}
			if u.TLS != "" {
				slot.TLS, slot.TLSCipher, slot.TLSDN = u.TLS, u.TLSCipher, u.TLSDN
			}
			if u.Provider != "" {
				slot.Provider = u.Provider
			}
			if slot.Status == Held && !u.Status.Final() {
				// An operator held the message while this attempt was in flight: the
				// attempt is recorded, the hold stands until Release.
				continue
			}
			if u.Status == Held && u.HoldReason != "" {
				r.HoldReason = u.HoldReason
			}
			if err := w.setRcpt(id, r, i, u.Status, u.NextAttempt); err != nil {
				return err
			}
		}
		return w.saveOrRemove(id, r)
	})
	if err != nil {
		return fmt.Errorf("record %s: %w", id, err)
	}
	return nil
}

func (u Update) validate() error {
	switch {
	case !u.Status.Valid():
		return fmt.Errorf("status %q: %w", u.Status, ErrInvalid)
	case u.Status.scheduled() && u.NextAttempt.IsZero():
		return fmt.Errorf("status %s without a next attempt time: %w", u.Status, ErrInvalid)
	case u.Attempted && u.At.IsZero():
		return fmt.Errorf("attempt without a time: %w", ErrInvalid)
	}
	return nil
}

func (r *record) find(addr string) int {
	for i, s := range r.Rcpts {
		if s.Address == addr {
			return i
		}
	}
	return -1
}

// Get returns a copy of message id.
func (s *Store) Get(ctx context.Context, id ID) (Message, error) {
	var m Message
	err := s.view(ctx, func(w *wtx) error {
		r, err := w.load(id)
		if err != nil {
			return err
		}
		m = r.message(id)
		return nil
	})
	if err != nil {
		return Message{}, fmt.Errorf("get: %w", err)
	}
	return m, nil
}

// Body returns a copy of the bytes of message id, as accepted.
func (s *Store) Body(ctx context.Context, id ID) ([]byte, error) {
	var body []byte
	err := s.viewSome(ctx, func(w *wtx) error {
		b, ok, err := w.body(id)
		if !ok {
			return fmt.Errorf("message %s: %w", id, ErrNotFound)
		}
		body = b
		return err
	}, bucketBodies, bucketZBodies)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	return body, nil
}

// List returns copies of the messages f selects, in ID (arrival) order. It reads the
// records Each reads (every one unless the filter's sender or times allow an index):
// it is for the admin CLI, not for the delivery path.
func (s *Store) List(ctx context.Context, f Filter) ([]Message, error) {
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	var out []Message
	// Paged (Each), so that a long listing never holds one read transaction.
	err := s.Each(ctx, f, func(m Message) error {
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Due returns up to max due-index entries with At <= now, earliest first, leaving out
// those skip rejects (the scheduler's in-flight set; skip may be nil). It seeks the
// index from its start and stops at the first entry after now or at max: it never walks
// the queue, only what is due plus what skip rejects.
func (s *Store) Due(ctx context.Context, now time.Time, max int, skip func(ID, string) bool) ([]Due, error) {
	if max <= 0 {
		return nil, nil
	}
	end := dueNanos(now)
	var out []Due
	err := s.viewSome(ctx, func(w *wtx) error {
		c := w.due.Cursor()
		for k, _ := c.First(); k != nil && len(out) < max; k, _ = c.Next() {
			d, err := parseDueKey(k)
			if err != nil {
				return err
			}
			if dueNanos(d.At) > end {
				break
			}
			if skip != nil && skip(d.ID, d.Rcpt) {
				continue
			}
			out = append(out, d)
		}
		return nil
	}, bucketDue)
	if err != nil {
		return nil, fmt.Errorf("due: %w", err)
	}
	return out, nil
}

// NextDue returns the earliest due time in the index; false if nothing is scheduled.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var at time.Time
	var ok bool
	err := s.viewSome(ctx, func(w *wtx) error {
		k, _ := w.due.Cursor().First()
		if k == nil {
			return nil
		}
		d, err := parseDueKey(k)
		if err != nil {
			return err
		}
		at, ok = d.At, true
		return nil
	}, bucketDue)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due: %w", err)
	}
	return at, ok, nil
}

// Delete removes message id whatever its recipients' state.
func (s *Store) Delete(ctx context.Context, id ID) error {
	return s.onMessage(ctx, id, "delete", func(w *wtx, r *record) error {
		return w.remove(id, r)
	})
}

// onMessage runs fn on message id's record in one write transaction (an
// unknown id is ErrNotFound and changes nothing) and prefixes an error with
// what. It is the frame the operator's commands on one message share
// (Delete, Hold, Release), so that they fail the same way.
func (s *Store) onMessage(ctx context.Context, id ID, what string, fn func(w *wtx, r *record) error) error {
	err := s.write(ctx, func(w *wtx) error {
		r, err := w.load(id)
		if err != nil {
			return reject(err)
		}
		return fn(w, r)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Hold parks every non-final recipient of id: status held, no due entry, until Release.
func (s *Store) Hold(ctx context.Context, id ID) error {
	return s.onMessage(ctx, id, "hold", func(w *wtx, r *record) error {
		return w.hold(id, r)
	})
}

// hold reports nothing about whether r changed: holding a held message is no error.
func (w *wtx) hold(id ID, r *record) error {
	for i, s := range r.Rcpts {
		if !s.Status.Final() && s.Status != Held {
			if err := w.setRcpt(id, r, i, Held, time.Time{}); err != nil {
				return err
			}
		}
	}
	return w.save(id, r)
}

// Release makes every held recipient of id due at now: deferred if it was tried before,
// queued otherwise.
func (s *Store) Release(ctx context.Context, id ID, now time.Time) error {
	return s.onMessage(ctx, id, "release "+string(id), func(w *wtx, r *record) error {
		_, err := w.release(id, r, norm(now))
		return err
	})
}

// release makes the held recipients of r due at now and says whether there was one.
func (w *wtx) release(id ID, r *record, now time.Time) (bool, error) {
	changed := false
	for i, slot := range r.Rcpts {
		if slot.Status != Held {
			continue
		}
		st := Queued
		if slot.Attempts > 0 {
			st = Deferred
		}
		if err := w.setRcpt(id, r, i, st, now); err != nil {
			return false, err
		}
		changed = true
	}
	if !changed {
		return false, nil
	}
	r.HoldReason = ""
	return true, w.save(id, r)
}

// HoldIDs holds the queued and deferred recipients of the messages ids with
// reason recorded as their HoldReason, in transactions of bulkBatch, and
// returns the messages that had a recipient to hold (so that the caller
// logs each hold once). Messages gone since are skipped. The breaker
// (issue 21) holds a stopped sender's mail with it.
func (s *Store) HoldIDs(ctx context.Context, ids []ID, reason string) ([]ID, error) {
	var held []ID
	for len(ids) > 0 {
		chunk := ids[:min(bulkBatch, len(ids))]
		ids = ids[len(chunk):]
		var got []ID
		err := s.write(ctx, func(w *wtx) error {
			got = got[:0] // the write may run again: start over
			for _, id := range chunk {
				r, err := w.load(id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				for _, slot := range r.Rcpts {
					if slot.Status.scheduled() {
						r.HoldReason = reason
						if err := w.hold(id, r); err != nil {
							return err
						}
						got = append(got, id)
						break
					}
				}
			}
			return nil
		})
		if err != nil {
			return held, fmt.Errorf("hold: %w", err)
		}
		held = append(held, got...)
	}
	return held, nil
}

// Flush makes every queued or deferred recipient due later than now due at now, for
// message id or, with id "", for the whole queue. It returns how many messages had a
// recipient moved. Held recipients stay held.
func (s *Store) Flush(ctx context.Context, id ID, now time.Time) (int, error) {
	now = norm(now)
	if id != "" {
		var n int
		err := s.write(ctx, func(w *wtx) error {
			n = 0
			r, err := w.load(id)
			if err != nil {
				return reject(err)
			}
			moved, err := w.flushRecord(id, r, now)
			if moved {
				n = 1
			}
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("flush %s: %w", id, err)
		}
		return n, nil
	}
	total := 0
	var c FlushCursor
	for !c.Done() {
		n, err := s.FlushBatch(ctx, now, &c)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// FlushCursor is where a whole-queue flush resumes; its zero value starts one.
type FlushCursor struct {
	after []byte // the last due key looked at; nil: from now on
	done  bool
}

// Done reports whether the flush has looked at the whole due index.
func (c *FlushCursor) Done() bool { return c.done }

// FlushBatch is one step of a whole-queue flush as of now: in one transaction it makes
// due at now the recipients of the next bulkBatch messages found in the due index
// after now (or after c), and returns how many messages it moved. A recipient tried
// since now (the scheduler deferred it again meanwhile, say to a dead destination's
// next probe) is left alone: the flush moves what was waiting when it was asked, once.
// What it moves goes before the cursor, so nothing is collected (a flush of a million
// messages holds one batch in memory), and the group commit is never held by one huge
// transaction. The daemon calls it in a loop of its own, so that `queue flush` answers
// at once and the scheduler sends what each batch made due while the rest moves.
func (s *Store) FlushBatch(ctx context.Context, now time.Time, c *FlushCursor) (int, error) {
	if c.done {
		return 0, nil
	}
	now = norm(now)
	seek := c.after
	if seek == nil {
		seek = putU64(int64(dueNanos(now)) + 1)
	}
	var n int
	var last []byte
	err := s.write(ctx, func(w *wtx) error {
		n, last = 0, nil
		var ids []ID
		seen := map[ID]bool{}
		cur := w.due.Cursor()
		for k, _ := cur.Seek(seek); k != nil && len(ids) < bulkBatch; k, _ = cur.Next() {
			if c.after != nil && bytes.Equal(k, c.after) {
				continue
			}
			d, err := parseDueKey(k)
			if err != nil {
				return err
			}
			last = bytes.Clone(k)
			if !seen[d.ID] {
				seen[d.ID] = true
				ids = append(ids, d.ID)
			}
		}
		for _, id := range ids {
			r, err := w.load(id)
			if err != nil {
				return fmt.Errorf("due index names %s: %w", id, err)
			}
			moved, err := w.flushRecord(id, r, now)
			if err != nil {
				return err
			}
			if moved {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("flush: %w", err)
	}
	if last == nil {
		c.done = true
	}
	c.after = last
	return n, nil
}

func (w *wtx) flushRecord(id ID, r *record, now time.Time) (bool, error) {
	moved := false
	for i, slot := range r.Rcpts {
		// A recipient tried after now was deferred again since the flush began.
		if slot.Status.scheduled() && slot.NextAttempt.After(now) && !slot.LastAttempt.After(now) {
			if err := w.setRcpt(id, r, i, slot.Status, now); err != nil {
				return false, err
			}
			moved = true
		}
	}
	if !moved {
		return false, nil
	}
	return true, w.save(id, r)
}

// bulkBatch is how many messages one bulk admin transaction rewrites: enough to be
// quick, few enough that Enqueue callers behind it wait milliseconds, not seconds.
const bulkBatch = 256

// eachBatch applies fn to the messages ids in transactions of bulkBatch. Messages gone
// since the ids were collected are skipped. It returns how many fn reported changed.
func (s *Store) eachBatch(ctx context.Context, ids []ID, fn func(*wtx, ID, *record) (bool, error)) (int, error) {
	total := 0
	for len(ids) > 0 {
		chunk := ids[:min(bulkBatch, len(ids))]
		ids = ids[len(chunk):]
		var n int
		err := s.write(ctx, func(w *wtx) error {
			n = 0
			for _, id := range chunk {
				r, err := w.load(id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				changed, err := fn(w, id, r)
				if err != nil {
					return err
				}
				if changed {
					n++
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// matching collects the IDs of the messages f selects.
func (s *Store) matching(ctx context.Context, f Filter) ([]ID, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	if f.empty() && !f.All {
		return nil, fmt.Errorf("filter selects every message but All is not set: %w", ErrInvalid)
	}
	if len(f.IDs) > 0 {
		// Matched again, in its transaction, by each operation.
		return uniqueIDs(f.IDs), nil
	}
	// A page per read transaction (Each): one long reader would stop bbolt from
	// growing the file, and so hold every Enqueue, for as long as the walk takes.
	var ids []ID
	err := s.Each(ctx, f, func(m Message) error {
		ids = append(ids, m.ID)
		return nil
	})
	return ids, err
}

func uniqueIDs(ids []ID) []ID {
	seen := make(map[ID]bool, len(ids))
	out := make([]ID, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// Missing returns those of ids that are not in the queue, so that an operator's
// mistyped or already delivered ID is refused rather than silently skipped.
func (s *Store) Missing(ctx context.Context, ids []ID) ([]ID, error) {
	var out []ID
	err := s.view(ctx, func(w *wtx) error {
		for _, id := range uniqueIDs(ids) {
			if w.msgs.Get([]byte(id)) == nil {
				out = append(out, id)
			}
		}
		return nil
	})
	return out, err
}

// DeleteMatching deletes the messages f selects and returns how many it deleted. Each
// message is matched again in the transaction that deletes it.
func (s *Store) DeleteMatching(ctx context.Context, f Filter) (int, error) {
	return s.eachMatching(ctx, f, "delete", func(w *wtx, id ID, r *record) (bool, error) {
		return true, w.remove(id, r)
	})
}

// HoldMatching holds the messages f selects and returns how many had a recipient to hold.
func (s *Store) HoldMatching(ctx context.Context, f Filter) (int, error) {
	return s.eachMatching(ctx, f, "hold", func(w *wtx, id ID, r *record) (bool, error) {
		for _, slot := range r.Rcpts {
			if slot.Status.scheduled() {
				return true, w.hold(id, r)
			}
		}
		return false, nil
	})
}

// ReleaseMatching releases the messages f selects (see Release) and returns how many
// had a held recipient.
func (s *Store) ReleaseMatching(ctx context.Context, f Filter, now time.Time) (int, error) {
	now = norm(now)
	return s.eachMatching(ctx, f, "release", func(w *wtx, id ID, r *record) (bool, error) {
		return w.release(id, r, now)
	})
}

// FlushMatching makes the queued or deferred recipients of the messages f selects due
// at now, and returns how many messages had a recipient moved. The empty filter is
// the whole queue (postqueue -f); nothing outside f is touched, so that flushing a
// flood never retries legitimate mail early nor pushes its schedule out.
func (s *Store) FlushMatching(ctx context.Context, f Filter, now time.Time) (int, error) {
	if f.empty() {
		return s.Flush(ctx, "", now)
	}
	f.All = true
	now = norm(now)
	return s.eachMatching(ctx, f, "flush", func(w *wtx, id ID, r *record) (bool, error) {
		return w.flushRecord(id, r, now)
	})
}

// eachMatching applies fn, in batched transactions, to each message f
// selects, matched again in the transaction that changes it, and returns how
// many fn changed; op names the operation in errors.
func (s *Store) eachMatching(ctx context.Context, f Filter, op string, fn func(w *wtx, id ID, r *record) (bool, error)) (int, error) {
	ids, err := s.matching(ctx, f)
	if err != nil {
		return 0, fmt.Errorf("%s matching: %w", op, err)
	}
	n, err := s.eachBatch(ctx, ids, func(w *wtx, id ID, r *record) (bool, error) {
		if !f.match(id, r) {
			return false, nil
		}
		return fn(w, id, r)
	})
	if err != nil {
		return n, fmt.Errorf("%s matching: %w", op, err)
	}
	return n, nil
}

// Stats reads the counters and the oldest message; it costs two key lookups per status.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	st := Stats{Recipients: map[Status]int{}}
	err := s.viewSome(ctx, func(w *wtx) error {
		st.Messages = int(getU64(w.meta.Get(metaMessages)))
		for _, s := range Statuses() {
			st.Recipients[s] = int(getU64(w.meta.Get(metaStatusKey(s))))
		}
		k, v := w.msgs.Cursor().First()
		if k == nil {
			return nil
		}
		r, err := decodeRecord(ID(k), v)
		if err != nil {
			return err
		}
		st.Oldest = r.Created
		return nil
	}, bucketMeta, bucketMsgs)
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}

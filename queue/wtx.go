package queue

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// wtx wraps a bolt transaction with the buckets and the helpers that keep the indexes
// and counters consistent with the records. Every change to a recipient's status or
// next attempt goes through setRcpt; every message is added by putNew and removed by
// remove.
type wtx struct {
	tx                                                           *bolt.Tx
	msgs, bodies, zbodies, due, addrs, supp, state, meta, counts *bolt.Bucket
	senders                                                      *bolt.Bucket
	// delta holds counter changes, written once per transaction by flushCounters.
	delta map[string]int64
	// dest holds the counts bucket's changes, orig what each record loaded or saved in
	// this transaction counts there (counts.go).
	dest map[countKey]int64
	orig map[ID]map[countKey]int64
}

func newWtx(tx *bolt.Tx) *wtx {
	w := &wtx{
		tx:     tx,
		msgs:   tx.Bucket(bucketMsgs),
		bodies: tx.Bucket(bucketBodies),
		due:    tx.Bucket(bucketDue),
		addrs:  tx.Bucket(bucketAddrs),
		supp:   tx.Bucket(bucketSupp),
		state:  tx.Bucket(bucketState),
		meta:   tx.Bucket(bucketMeta),
		counts: tx.Bucket(bucketCounts),
		// nil in a read-only view of a database made before the index.
		senders: tx.Bucket(bucketSenders),
		// delta, dest and orig are made by the first write that needs them: most
		// transactions are reads (a lookup per RCPT, per delivery), and three maps
		// each showed in the submission path's profile.
	}
	w.zbodies = tx.Bucket(bucketZBodies)
	if w.msgs != nil {
		w.msgs.FillPercent = recordFill
	}
	for _, b := range []*bolt.Bucket{w.bodies, w.zbodies} {
		if b != nil {
			b.FillPercent = appendFill
		}
	}
	// The indexes grow mostly at their end too: due keys start with the next
	// attempt's time, addrs and senders keys end with the ID, which grows with
	// arrival. Their keys are small, so a page keeps room for a few inserts
	// between older keys.
	for _, b := range []*bolt.Bucket{w.due, w.addrs, w.senders} {
		if b != nil {
			b.FillPercent = indexFill
		}
	}
	return w
}

func (w *wtx) count(key []byte, d int64) {
	if w.delta == nil {
		w.delta = map[string]int64{}
	}
	w.delta[string(key)] += d
}

func (w *wtx) flushCounters() error {
	if err := w.flushDestCounts(); err != nil {
		return err
	}
	for k, d := range w.delta {
		if d == 0 {
			continue
		}
		v := getU64(w.meta.Get([]byte(k))) + d
		if err := w.meta.Put([]byte(k), putU64(v)); err != nil {
			return fmt.Errorf("update counter %s: %w", k, err)
		}
	}
	return nil
}

// load returns the record of id, or ErrNotFound.
func (w *wtx) load(id ID) (*record, error) {
	b := w.msgs.Get([]byte(id))
	if b == nil {
		return nil, fmt.Errorf("message %s: %w", id, ErrNotFound)
	}
	r, err := decodeRecord(id, b)
	if err != nil {
		return nil, err
	}
	w.track(id, r)
	return r, nil
}

func (w *wtx) save(id ID, r *record) error {
	b, err := encodeRecord(r)
	if err != nil {
		return fmt.Errorf("message %s: encode: %w", id, err)
	}
	if err := w.msgs.Put([]byte(id), b); err != nil {
		return fmt.Errorf("message %s: %w", id, err)
	}
	w.recount(id, r)
	return nil
}

// putNew stores a new message whose recipients are all scheduled at their NextAttempt.
func (w *wtx) putNew(id ID, r *record, body []byte) error {
	if err := w.save(id, r); err != nil {
		return err
	}
	if err := w.putBody(id, body); err != nil {
		return err
	}
	// Written whether or not the index is complete yet (BuildIndexes), so that it is
	// once BuildIndexes has passed the older messages. One small Put: this is every
	// SMTP acceptance's transaction.
	if err := w.senders.Put(senderKey(r.Sender, id), nil); err != nil {
		return fmt.Errorf("message %s: sender index: %w", id, err)
	}
	for _, s := range r.Rcpts {
		if s.Status.scheduled() {
			if err := w.due.Put(dueKey(s.NextAttempt, id, s.Address), nil); err != nil {
				return fmt.Errorf("message %s: due index: %w", id, err)
			}
		}
		if err := w.addrs.Put(addrKey(s.Address, id), nil); err != nil {
			return fmt.Errorf("message %s: address index: %w", id, err)
		}
		w.count(metaStatusKey(s.Status), 1)
	}
	w.count(metaMessages, 1)
	return nil
}

// setRcpt moves recipient i of r to status st, due at next when st is queued or
// deferred (NextAttempt becomes zero otherwise), keeping the due index and the counters
// in step. The caller saves r.
func (w *wtx) setRcpt(id ID, r *record, i int, st Status, next time.Time) error {
	s := &r.Rcpts[i]
	if s.Status.scheduled() {
		if err := w.due.Delete(dueKey(s.NextAttempt, id, s.Address)); err != nil {
			return fmt.Errorf("message %s: due index: %w", id, err)
		}
	}
	w.count(metaStatusKey(s.Status), -1)
	w.count(metaStatusKey(st), 1)
	s.Status = st
	s.NextAttempt = time.Time{}
	if st.scheduled() {
		s.NextAttempt = norm(next)
		if err := w.due.Put(dueKey(s.NextAttempt, id, s.Address), nil); err != nil {
			return fmt.Errorf("message %s: due index: %w", id, err)
		}
	}
	return nil
}

// remove deletes message id (record r) with its body and index entries.
func (w *wtx) remove(id ID, r *record) error {
	for _, s := range r.Rcpts {
		if s.Status.scheduled() {
			if err := w.due.Delete(dueKey(s.NextAttempt, id, s.Address)); err != nil {
				return fmt.Errorf("message %s: due index: %w", id, err)
			}
		}
		if err := w.addrs.Delete(addrKey(s.Address, id)); err != nil {
			return fmt.Errorf("message %s: address index: %w", id, err)
		}
		w.count(metaStatusKey(s.Status), -1)
	}
	w.count(metaMessages, -1)
	if err := w.deleteBody(id); err != nil {
		return err
	}
	if err := w.senders.Delete(senderKey(r.Sender, id)); err != nil {
		return fmt.Errorf("message %s: sender index: %w", id, err)
	}
	if err := w.msgs.Delete([]byte(id)); err != nil {
		return fmt.Errorf("message %s: %w", id, err)
	}
	w.recount(id, nil)
	return nil
}

// saveOrRemove saves r, or removes the message once every recipient is final: the
// caller has logged the outcomes, and nothing is left to send.
func (w *wtx) saveOrRemove(id ID, r *record) error {
	if r.allFinal() {
		return w.remove(id, r)
	}
	return w.save(id, r)
}

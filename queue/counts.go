package queue

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// bucketCounts: provider | 0x00 | lower-cased domain | 0x00 | status -> 8-byte
// big-endian count of the non-final recipients so placed. Provider is the one stored
// on the recipient ("" until its first attempt names it). A key whose count falls to
// zero is deleted, so the bucket holds one key per destination with mail waiting and
// `status`, `providers` and the metrics read it whole in milliseconds (issue 19 §3).
var bucketCounts = []byte("counts")

// DestCount is the number of non-final recipients with one provider, domain and
// status. Provider is "" for recipients not tried yet: the caller names it.
type DestCount struct {
	Provider string `json:"provider"`
	Domain   string `json:"domain"`
	Status   Status `json:"status"`
	Count    int    `json:"count"`
}

type countKey struct {
	provider, domain string
	status           Status
}

func (k countKey) bytes() []byte {
	b := make([]byte, 0, len(k.provider)+len(k.domain)+len(k.status)+2)
	b = append(b, k.provider...)
	b = append(b, 0)
	b = append(b, k.domain...)
	b = append(b, 0)
	return append(b, k.status...)
}

func parseCountKey(b []byte) (countKey, bool) {
	parts := bytes.SplitN(b, []byte{0}, 3)
	if len(parts) != 3 {
		return countKey{}, false
	}
	return countKey{provider: string(parts[0]), domain: string(parts[1]), status: Status(parts[2])}, true
}

// destCounts is what one record adds to the counts bucket.
func destCounts(r *record) map[countKey]int64 {
	m := map[countKey]int64{}
	if r == nil {
		return m
	}
	for _, s := range r.Rcpts {
		if s.Status.Final() {
			continue
		}
		m[countKey{s.Provider, strings.ToLower(domainOf(s.Address)), s.Status}]++
	}
	return m
}

// track records, at load, what a stored record counts, so that save and remove can
// apply the difference whatever the caller changed in between (status, provider):
// the counts follow every write without each write path saying what it moved.
func (w *wtx) track(id ID, r *record) {
	if !w.tx.Writable() {
		return // a read changes no count
	}
	if w.orig == nil {
		w.orig = map[ID]map[countKey]int64{}
	}
	if _, ok := w.orig[id]; !ok {
		w.orig[id] = destCounts(r)
	}
}

// recount applies the difference between what id counted when loaded (or last saved)
// and what r counts now (r nil: the message is gone).
func (w *wtx) recount(id ID, r *record) {
	if w.dest == nil {
		w.dest = map[countKey]int64{}
	}
	if w.orig == nil {
		w.orig = map[ID]map[countKey]int64{}
	}
	now := destCounts(r)
	for k, n := range w.orig[id] {
		w.dest[k] -= n
	}
	for k, n := range now {
		w.dest[k] += n
	}
	if r == nil {
		delete(w.orig, id)
		return
	}
	w.orig[id] = now
}

func (w *wtx) flushDestCounts() error {
	for k, d := range w.dest {
		if d == 0 {
			continue
		}
		key := k.bytes()
		v := getU64(w.counts.Get(key)) + d
		var err error
		if v <= 0 {
			err = w.counts.Delete(key)
		} else {
			err = w.counts.Put(key, putU64(v))
		}
		if err != nil {
			return fmt.Errorf("update count %q: %w", key, err)
		}
	}
	return nil
}

// buildCounts fills an empty counts bucket from the records: once, when a database
// written before the bucket existed is opened.
func buildCounts(tx *bolt.Tx) error {
	b := tx.Bucket(bucketCounts)
	total := map[countKey]int64{}
	err := tx.Bucket(bucketMsgs).ForEach(func(k, v []byte) error {
		r, err := decodeRecord(ID(k), v)
		if err != nil {
			return err
		}
		for ck, n := range destCounts(r) {
			total[ck] += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("build counts: %w", err)
	}
	for k, n := range total {
		if err := b.Put(k.bytes(), putU64(n)); err != nil {
			return fmt.Errorf("build counts: %w", err)
		}
	}
	return nil
}

// Counts returns the non-final recipients by provider, domain and status, from the
// counters kept in the same transactions as the records: no scan of the queue.
func (s *Store) Counts(ctx context.Context) ([]DestCount, error) {
	var out []DestCount
	err := s.view(ctx, func(w *wtx) error {
		return w.counts.ForEach(func(k, v []byte) error {
			ck, ok := parseCountKey(k)
			if !ok {
				return fmt.Errorf("malformed count key %q", k)
			}
			out = append(out, DestCount{Provider: ck.provider, Domain: ck.domain, Status: ck.status, Count: int(getU64(v))})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("counts: %w", err)
	}
	return out, nil
}

// checkCounts compares the counts bucket with a scan's totals (for Check).
func checkCounts(w *wtx, want map[countKey]int64, report func(string, ...any)) error {
	n := 0
	err := w.counts.ForEach(func(k, v []byte) error {
		n++
		ck, ok := parseCountKey(k)
		if !ok {
			report("count key %q malformed", k)
			return nil
		}
		if got := getU64(v); got != want[ck] {
			report("count %q = %d, scan finds %d", k, got, want[ck])
		}
		return nil
	})
	if n != len(want) {
		report("counts: %d keys, scan finds %d destinations", n, len(want))
	}
	return err
}

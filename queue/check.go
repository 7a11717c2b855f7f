package queue

import (
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// maxCheckErrors bounds Check's report: past that, more lines add nothing.
const maxCheckErrors = 20

// Check verifies the store's invariants and bbolt's own page consistency, and returns
// every violation found (up to 20) joined in one error. It reads the whole database in
// one transaction that blocks writers: for tests (every test's cleanup) and `facteur queue check`.
//
// Invariants: every message has a body of its Size and at least one non-final
// recipient, no duplicate recipients, valid statuses; a queued or deferred recipient
// has exactly one due-index entry, at its NextAttempt; held and final ones have none
// and a zero NextAttempt; the address index holds exactly one key per distinct
// lower-cased recipient per message; the sender index exactly one key per message
// once complete, and none that names no message before; an ID's time is within
// idAhead after its message's Created; the counters equal what a scan counts; every
// suppression is stored under its own address.
func (s *Store) Check() error {
	var errs []error
	report := func(format string, args ...any) {
		if len(errs) < maxCheckErrors {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	// A writable transaction, rolled back at the end: bbolt's page check reads the
	// freelist, which is only safe while no writer commits.
	tx, err := s.db.Begin(true)
	if err != nil {
		return fmt.Errorf("queue check %s: %w", s.path, err)
	}
	defer tx.Rollback()
	err = func() error {
		for err := range tx.Check() {
			report("bbolt: %w", err)
		}
		w := newWtx(tx)
		due := map[string]bool{}
		addrs := map[string]bool{}
		senders := map[string]bool{}
		counts := map[Status]int64{}
		dests := map[countKey]int64{}
		var messages int64
		err := w.msgs.ForEach(func(k, v []byte) error {
			id := ID(k)
			messages++
			if _, err := ParseID(string(id)); err != nil {
				report("message key: %w", err)
			}
			r, err := decodeRecord(id, v)
			if err != nil {
				report("%w", err)
				return nil
			}
			if !idFits(id, r.Created) {
				report("message %s: ID time %v is not within %v after its creation %v", id, id.Time(), idAhead, r.Created)
			}
			senders[string(senderKey(r.Sender, id))] = true
			body, ok, err := w.body(id)
			switch {
			case err != nil:
				report("%w", err)
			case stored(w.bodies, k) != nil && stored(w.zbodies, k) != nil:
				report("message %s: body stored twice, raw and compressed", id)
			case !ok:
				report("message %s: no body", id)
			case int64(len(body)) != r.Size:
				report("message %s: body of %d bytes, record says %d", id, len(body), r.Size)
			}
			if len(r.Rcpts) == 0 {
				report("message %s: no recipients", id)
			} else if r.allFinal() {
				report("message %s: every recipient is final but the message is still stored", id)
			}
			for k, n := range destCounts(r) {
				dests[k] += n
			}
			seen := map[string]bool{}
			for _, slot := range r.Rcpts {
				if seen[slot.Address] {
					report("message %s: recipient %s twice", id, slot.Address)
				}
				seen[slot.Address] = true
				if !slot.Status.Valid() {
					report("message %s: recipient %s: unknown status %q", id, slot.Address, slot.Status)
				}
				counts[slot.Status]++
				addrs[string(addrKey(slot.Address, id))] = true
				if slot.Status.scheduled() {
					k := string(dueKey(slot.NextAttempt, id, slot.Address))
					if due[k] {
						report("message %s: recipient %s: due key twice", id, slot.Address)
					}
					due[k] = true
				} else if !slot.NextAttempt.IsZero() {
					report("message %s: recipient %s is %s but has a next attempt", id, slot.Address, slot.Status)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		checkIndex := func(name string, b *bolt.Bucket, want map[string]bool) error {
			n := 0
			err := b.ForEach(func(k, _ []byte) error {
				if !want[string(k)] {
					report("%s index: key %q matches no recipient", name, k)
				}
				n++
				return nil
			})
			if n != len(want) {
				report("%s index: %d keys, recipients want %d", name, n, len(want))
			}
			return err
		}
		if err := checkIndex("due", w.due, due); err != nil {
			return err
		}
		if err := checkIndex("address", w.addrs, addrs); err != nil {
			return err
		}
		if sendersComplete(w.meta) {
			if err := checkIndex("sender", w.senders, senders); err != nil {
				return err
			}
		} else if w.senders != nil {
			// Still being built (BuildIndexes): what it holds must be right.
			err := w.senders.ForEach(func(k, _ []byte) error {
				if !senders[string(k)] {
					report("sender index (incomplete): key %q matches no message", k)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		for _, b := range []*bolt.Bucket{w.bodies, w.zbodies} {
			err = b.ForEach(func(k, _ []byte) error {
				if w.msgs.Get(k) == nil {
					report("body %s: no message", k)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if got := getU64(w.meta.Get(metaMessages)); got != messages {
			report("counter messages = %d, scan finds %d", got, messages)
		}
		for _, st := range Statuses() {
			if got := getU64(w.meta.Get(metaStatusKey(st))); got != counts[st] {
				report("counter %s = %d, scan finds %d", st, got, counts[st])
			}
		}
		if err := checkCounts(w, dests, report); err != nil {
			return err
		}
		return w.supp.ForEach(func(k, v []byte) error {
			var sup Suppression
			if err := json.Unmarshal(v, &sup); err != nil {
				report("suppression %s: %w", k, err)
			} else if sup.Address != string(k) {
				report("suppression under %q names %q", k, sup.Address)
			}
			return nil
		})
	}()
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("queue check %s: %w", s.path, errors.Join(errs...))
}

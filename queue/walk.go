package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
)

// walkPage is how many records one read transaction of Each decodes. A read
// transaction held for a whole listing of a million messages would stop bbolt from
// growing the file (its remap waits for readers) and so hold Enqueue; short ones never
// do, and the first page reaches the client at once.
const walkPage = 512

// Each calls fn with a copy of every message f selects, in ID (arrival) order, reading
// the queue a page at a time so that memory stays bounded and no write waits for it.
// f.OlderThan and f.YoungerThan bound the pages read by ID, and a Sender the sender
// index can answer (an address, "<>", "*@domain") reads only its messages, once that
// index is complete (BuildIndexes); the result is the walk's either way.
// Each page is a consistent snapshot; a message queued or removed during the walk may
// be seen or not. An error from fn stops the walk and is returned.
func (s *Store) Each(ctx context.Context, f Filter, fn func(Message) error) error {
	return s.EachAfter(ctx, f, "", fn)
}

// EachAfter is Each starting after message from (from the first when ""):
// a search continued page by page (the dashboard's queue page) reads each
// message once.
func (s *Store) EachAfter(ctx context.Context, f Filter, from ID, fn func(Message) error) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if s.noQueue {
		return nil // nothing was ever queued in this file
	}
	if len(f.IDs) > 0 {
		// A list of IDs (an operator's few) is read by key, not by walking
		// the queue.
		var msgs []Message
		err := s.view(ctx, func(w *wtx) error {
			for _, id := range uniqueIDs(f.IDs) {
				r, err := w.load(id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if f.match(id, r) {
					msgs = append(msgs, r.message(id))
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		for _, m := range msgs {
			if err := fn(m); err != nil {
				return err
			}
		}
		return nil
	}
	return s.eachAfter(ctx, f, from, fn, true)
}

// eachAfter is EachAfter; with useIndex false it walks every record, which the
// tests compare the indexed listings with.
func (s *Store) eachAfter(ctx context.Context, f Filter, from ID, fn func(Message) error, useIndex bool) error {
	rng := idRange{}
	if useIndex {
		rng = idRangeOf(f)
	}
	if rng.empty {
		return nil
	}
	if prefix, ok := senderIndexPrefix(f.Sender); ok && useIndex {
		ids, complete, err := s.senderIDs(ctx, prefix, rng, from)
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		if complete {
			return s.eachOf(ctx, f, ids, fn)
		}
		// A database made before the index, still being indexed: walk.
	}
	after := rng.lo
	inclusive := after != nil
	if from != "" && (after == nil || bytes.Compare([]byte(from), after) >= 0) {
		after, inclusive = []byte(from), false
	}
	for {
		var page []Message
		var last []byte
		end := false
		err := s.view(ctx, func(w *wtx) error {
			c := w.msgs.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && !inclusive && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for n := 0; k != nil && n < walkPage; k, v = c.Next() {
				if rng.hi != nil && bytes.Compare(k, rng.hi) > 0 {
					end = true
					return nil
				}
				n++
				last = bytes.Clone(k)
				r, err := decodeRecord(ID(k), v)
				if err != nil {
					return err
				}
				if f.match(ID(k), r) {
					page = append(page, r.message(ID(k)))
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		for _, m := range page {
			if err := fn(m); err != nil {
				return err
			}
		}
		if last == nil || end {
			return nil
		}
		after, inclusive = last, false
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// indexPage is how many sender-index keys one read transaction of senderIDs reads:
// short transactions, for the reason given at walkPage. A variable so that tests page
// with few messages.
var indexPage = 4096

// senderIDs returns, sorted, the IDs in the sender index under prefix that are in rng
// and after from, and whether the index is complete (if not, the IDs are not
// returned: the caller walks). The keys are sorted by sender first, so the IDs are
// collected (12 bytes each: 12 MB for a million) and sorted, to list in ID order as
// the walk does.
func (s *Store) senderIDs(ctx context.Context, prefix []byte, rng idRange, from ID) ([][idLen]byte, bool, error) {
	var ids [][idLen]byte
	after := prefix
	inclusive := true
	for {
		complete, more := true, false
		err := s.viewSome(ctx, func(w *wtx) error {
			if !sendersComplete(w.meta) {
				complete = false
				return nil
			}
			c := w.senders.Cursor()
			k, _ := c.Seek(after)
			if k != nil && !inclusive && bytes.Equal(k, after) {
				k, _ = c.Next()
			}
			for n := 0; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				if n == indexPage {
					after, inclusive, more = bytes.Clone(k), true, true
					return nil
				}
				n++
				if len(k) < idLen+1 || k[len(k)-idLen-1] != 0 {
					return fmt.Errorf("malformed sender index key %q", k)
				}
				id := k[len(k)-idLen:]
				if !rng.contains(id) || (from != "" && string(id) <= string(from)) {
					continue
				}
				ids = append(ids, [idLen]byte(id))
			}
			return nil
		}, bucketMeta, bucketSenders)
		if err != nil || !complete {
			return nil, false, err
		}
		if !more {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
	}
	slices.SortFunc(ids, func(a, b [idLen]byte) int { return bytes.Compare(a[:], b[:]) })
	return ids, true, nil
}

// eachOf calls fn with each of the messages ids (sorted) that f selects, reading
// them a page per read transaction; those removed since are skipped.
func (s *Store) eachOf(ctx context.Context, f Filter, ids [][idLen]byte, fn func(Message) error) error {
	for len(ids) > 0 {
		chunk := ids[:min(walkPage, len(ids))]
		ids = ids[len(chunk):]
		var page []Message
		err := s.viewSome(ctx, func(w *wtx) error {
			for _, k := range chunk {
				v := w.msgs.Get(k[:])
				if v == nil {
					continue
				}
				id := ID(k[:])
				r, err := decodeRecord(id, v)
				if err != nil {
					return err
				}
				if f.match(id, r) {
					page = append(page, r.message(id))
				}
			}
			return nil
		}, bucketMsgs)
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		for _, m := range page {
			if err := fn(m); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// GetMany returns copies of the messages ids that are stored, in one read
// transaction, in the order asked; those gone are left out. The scheduler reads its
// window with it: one transaction per fetch instead of one per message.
func (s *Store) GetMany(ctx context.Context, ids []ID) ([]Message, error) {
	out := make([]Message, 0, len(ids))
	err := s.viewSome(ctx, func(w *wtx) error {
		for _, id := range ids {
			b := w.msgs.Get([]byte(id))
			if b == nil {
				continue
			}
			r, err := decodeRecord(id, b)
			if err != nil {
				return err
			}
			out = append(out, r.message(id))
		}
		return nil
	}, bucketMsgs)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	return out, nil
}

package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// walkPage is how many records one read transaction of Each decodes. A read
// transaction held for a whole listing of a million messages would stop bbolt from
// growing the file (its remap waits for readers) and so hold Enqueue; short ones never
// do, and the first page reaches the client at once.
const walkPage = 512

// Each calls fn with a copy of every message f selects, in ID (arrival) order, reading
// the queue a page at a time so that memory stays bounded and no write waits for it.
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
	var after []byte
	if from != "" {
		after = []byte(from)
	}
	for {
		var page []Message
		var last []byte
		err := s.view(ctx, func(w *wtx) error {
			c := w.msgs.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for n := 0; k != nil && n < walkPage; k, v = c.Next() {
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
		if last == nil {
			return nil
		}
		after = last
		if err := ctx.Err(); err != nil {
			return err
		}
	}
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

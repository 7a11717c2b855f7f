package queue

import (
	"bytes"
	"context"
	"fmt"
)

// maxStateKey keeps keys far below bbolt's MaxKeySize.
const maxStateKey = 1024

// PutState stores val under key for another package (policy suspensions, backoff levels,
// an outbox); a nil val deletes key. The bytes are the caller's format.
func (s *Store) PutState(ctx context.Context, key string, val []byte) error {
	if key == "" || len(key) > maxStateKey {
		return fmt.Errorf("put state: key of %d bytes, want 1..%d: %w", len(key), maxStateKey, ErrInvalid)
	}
	val = bytes.Clone(val) // the caller may reuse its slice before the commit
	err := s.write(ctx, func(w *wtx) error {
		if val == nil {
			return w.state.Delete([]byte(key))
		}
		return w.state.Put([]byte(key), val)
	})
	if err != nil {
		return fmt.Errorf("put state %s: %w", key, err)
	}
	return nil
}

// State returns a copy of the value under key, or ErrNotFound.
func (s *Store) State(ctx context.Context, key string) ([]byte, error) {
	var out []byte
	err := s.view(ctx, func(w *wtx) error {
		v := w.state.Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", key, err)
	}
	return out, nil
}

// States returns copies of every key starting with prefix ("" for all).
func (s *Store) States(ctx context.Context, prefix string) (map[string][]byte, error) {
	out := map[string][]byte{}
	p := []byte(prefix)
	err := s.view(ctx, func(w *wtx) error {
		c := w.state.Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			out[string(k)] = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("states %q: %w", prefix, err)
	}
	return out, nil
}

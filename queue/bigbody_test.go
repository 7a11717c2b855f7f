package queue

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// Large bodies live in a bucket of their own (issue 11 §3), small ones as
// plain values; both read back byte for byte, and both go away with their
// message (the cleanup Check finds no orphan).
func TestBodyLayouts(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		size int
	}{
		{"small", 100},
		{"just under", bigBody - 1},
		{"large", bigBody},
		{"10 MB", 10 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("x"), tc.size)
			id, err := s.Enqueue(t.Context(), Envelope{Sender: "a@example.com", Recipients: []string{"b@example.org", "c@example.org"}}, body, now)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Body(t.Context(), id)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("Body: %d bytes, %v; want %d", len(got), err, len(body))
			}
			if err := s.Check(); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(t.Context(), id); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Body(t.Context(), id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Body after Delete: %v", err)
			}
		})
	}
}

package queue

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Large bodies live in a bucket of their own (issue 11 §3), small ones as
// plain values; both read back byte for byte, and both go away with their
// message (the cleanup Check finds no orphan).
func TestBodyLayouts(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		size   int
		random bool // incompressible: stored raw in bodies
		own    bool // in a bucket of its own
	}{
		{"small", 100, true, false},
		{"just under", bigBody - 1, true, false},
		{"large", bigBody, true, true},
		{"10 MB", 10 << 20, true, true},
		{"10 MB compressible", 10 << 20, false, true},
		{"compresses below the threshold", 2 * bigBody, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("x"), tc.size)
			if tc.random {
				rand.Read(body)
			} else {
				for i := range body {
					body[i] = "abcdefghij"[i*7%10] + byte(i/100000%5)
				}
			}
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
			var own bool
			s.db.View(func(tx *bolt.Tx) error {
				own = tx.Bucket(bucketBodies).Bucket([]byte(id)) != nil || tx.Bucket(bucketZBodies).Bucket([]byte(id)) != nil
				return nil
			})
			if own != tc.own {
				t.Errorf("own bucket = %v, want %v", own, tc.own)
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

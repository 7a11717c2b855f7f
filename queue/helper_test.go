package queue

import (
	"path/filepath"
	"testing"
	"time"
)

// t0 is the tests' fixed clock origin.
var t0 = time.Date(2026, 11, 22, 14, 3, 8, 0, time.UTC)

// openTest opens a store in a fresh directory and checks its invariants at cleanup, as
// bbolt's own tests do. Durability is off unless sync is asked: the kill -9 test and the
// benchmarks measure it; unit tests check logic.
func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "queue.db"), opts)
}

func openAt(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Cleanup(func() {
		if err := s.Check(); err != nil {
			t.Errorf("Check: %v", err)
		}
	})
	return s
}

func enqueue(t testing.TB, s *Store, now time.Time, rcpts ...string) ID {
	t.Helper()
	id, err := s.Enqueue(t.Context(), Envelope{Sender: "app@example.org", Recipients: rcpts}, []byte("Subject: hi\r\n\r\nbody\r\n"), now)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return id
}

func get(t testing.TB, s *Store, id ID) Message {
	t.Helper()
	m, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return m
}

func rcpt(t testing.TB, m Message, addr string) Recipient {
	t.Helper()
	for _, r := range m.Recipients {
		if r.Address == addr {
			return r
		}
	}
	t.Fatalf("message %s has no recipient %s", m.ID, addr)
	return Recipient{}
}

func dueAll(t testing.TB, s *Store) []Due {
	t.Helper()
	d, err := s.Due(t.Context(), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), 1<<30, nil)
	if err != nil {
		t.Fatalf("Due: %v", err)
	}
	return d
}

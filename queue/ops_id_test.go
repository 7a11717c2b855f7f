package queue

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// An ID chosen by the caller (cleanup writes it in Received) is kept; a
// taken one is replaced; a malformed one is refused.
func TestEnqueueWithChosenID(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "q.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	want := NewID(now)
	got, err := s.Enqueue(t.Context(), Envelope{ID: want, Recipients: []string{"a@example.org"}}, []byte("x"), now)
	if err != nil || got != want {
		t.Fatalf("Enqueue = %s, %v; want %s", got, err, want)
	}
	again, err := s.Enqueue(t.Context(), Envelope{ID: want, Recipients: []string{"b@example.org"}}, []byte("y"), now)
	if err != nil || again == want {
		t.Fatalf("taken ID: %s, %v", again, err)
	}
	if _, err := s.Enqueue(t.Context(), Envelope{ID: "bad id", Recipients: []string{"c@example.org"}}, []byte("z"), now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("malformed ID: %v", err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

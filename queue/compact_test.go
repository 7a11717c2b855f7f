package queue

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// After a big queue drained, Compact gives the space back and keeps what is still
// queued, intact; with the database open elsewhere it refuses with ErrLocked.
func TestCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 4096)
	var ids []ID
	for i := range 2000 {
		id, err := s.Enqueue(t.Context(), Envelope{Sender: "a@example.org", Recipients: []string{fmt.Sprintf("u%d@example.com", i)}}, body, t0.Add(time.Duration(i)*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids[10:] {
		if err := s.Delete(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := Compact(path, Options{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Compact of an open queue = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before, after, err := Compact(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if after >= before/4 {
		t.Errorf("compacted %d -> %d bytes, want a quarter at most", before, after)
	}
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("copy left behind: %v", err)
	}
	s = openAt(t, path, Options{NoSync: true})
	st, err := s.Stats(t.Context())
	if err != nil || st.Messages != 10 {
		t.Fatalf("after compaction: %+v %v", st, err)
	}
	for _, id := range ids[:10] {
		get(t, s, id)
	}
	enqueue(t, s, t0.Add(time.Hour), "new@example.com")
}

// Sparse says when a stop should compact: a file mostly free pages, not a full one.
func TestSparse(t *testing.T) {
	s := openTest(t, Options{NoSync: true, sparseMin: 1 << 20})
	rng := mrand.NewChaCha8([32]byte{5})
	var ids []ID
	for i := range 600 {
		body := make([]byte, 4096)
		rng.Read(body)
		id, err := s.Enqueue(t.Context(), Envelope{Sender: "a@example.org", Recipients: []string{fmt.Sprintf("u%d@example.com", i)}}, body, t0.Add(time.Duration(i)*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if s.Sparse() {
		t.Fatal("a full queue is not sparse")
	}
	for _, id := range ids[20:] {
		if err := s.Delete(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Sparse() {
		t.Fatal("a drained queue is sparse")
	}
}

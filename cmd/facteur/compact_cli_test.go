package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"facteur/queue"
)

// `facteur queue compact` gives back the space a drained queue left, keeps what is
// still queued, and refuses while the daemon holds the database.
func TestQueueCompactCLI(t *testing.T) {
	e := newCLIEnv(t, "")
	if err := os.MkdirAll(e.dataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(e.dataDir, "queue.db")
	st, err := queue.Open(db, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{19})
	var ids []queue.ID
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	for i := range 400 {
		body := make([]byte, 8192) // random: Snappy leaves it as it is
		rng.Read(body)
		id, err := st.Enqueue(t.Context(), queue.Envelope{Sender: "app@example.org", Recipients: []string{fmt.Sprintf("u%d@example.com", i)}}, body, t0.Add(time.Duration(i)*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids[10:] {
		if err := st.Delete(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(db)

	out := e.ok("", "queue", "compact")
	if !strings.Contains(out, "queue.db: ") || !strings.Contains(out, " -> ") {
		t.Fatalf("queue compact said %q", out)
	}
	after, _ := os.Stat(db)
	if after.Size() >= before.Size()/2 {
		t.Errorf("queue.db %d -> %d bytes", before.Size(), after.Size())
	}
	var msgs []queue.Message
	if err := json.Unmarshal([]byte(e.ok("", "queue", "list", "--json")), &msgs); err != nil || len(msgs) != 10 {
		t.Fatalf("after compaction: %d messages, %v", len(msgs), err)
	}

	e.startDaemon()
	r := e.run("", "queue", "compact")
	if r.code == 0 || !strings.Contains(r.stderr, "stop the daemon") {
		t.Fatalf("compact with the daemon running: exit %d, %q", r.code, r.stderr)
	}
}

package cleanup

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"facteur/queue"
)

// discardStore takes every message and keeps nothing: Process alone is
// measured, not bbolt.
type discardStore struct{}

func (discardStore) Enqueue(_ context.Context, env queue.Envelope, _ []byte, _ time.Time) (queue.ID, error) {
	return env.ID, nil
}

// BenchmarkProcess is the work and the allocations of one 4 KiB relay-bench
// message through cleanup (normalise, header, Received, the log line).
func BenchmarkProcess(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := New(Options{Hostname: "relay.test", MaxHops: 50}, discardStore{}, nil, log)
	data := benchMessage(4 << 10)
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	m := Message{Sender: "bench@example.org", Recipients: []string{"r1@example.com"},
		ClientIP: "127.0.0.1", Helo: "client.example.org", Protocol: "ESMTP", Data: data}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := c.Process(context.Background(), m, now); err != nil {
			b.Fatal(err)
		}
	}
}

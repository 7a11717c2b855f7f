package maillog

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// The lines a delivery writes under relay-bench: received at acceptance,
// delivered by the scheduler; both with a queue ID, so the log book's tap
// gets them too, as in the daemon.
func benchLines(b *testing.B, h slog.Handler) {
	log := slog.New(h)
	created := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		log.Info(Received, "qid", "0G3ZK4R2Q8M1", "from", "<app@shop.example>", "size", 4096, "nrcpt", 1, "client", "127.0.0.1", "user", "www-data")
		log.Info(Delivered, "qid", "0G3ZK4R2Q8M1", "rcpt", "<bob@example.org>", "provider", "default", "mx", "127.0.0.2", "ip", "127.0.0.2", "tls", "none",
			"attempt", 1, "delay", time.Since(created), "resp", "250 2.0.0 Ok: queued as 4XyzAbC")
	}
}

func BenchmarkHandleText(b *testing.B) {
	benchLines(b, New(io.Discard, "text").Handler().(*Handler).WithTap(func(qid, line string) {}))
}

// BenchmarkHandleRef is the handler as it was before, for comparison.
func BenchmarkHandleRef(b *testing.B) {
	benchLines(b, &refHandler{w: io.Discard, tap: func(qid, line string) {}, mu: new(sync.Mutex)})
}

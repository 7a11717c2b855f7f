package dashboard

import (
	"fmt"
	"testing"
	"time"

	"facteur/queue"
)

// BenchmarkTallyRecord is the tally's cost per delivery event in steady
// state under relay-bench: a few providers whose reply lists are full, a
// fresh queue ID per event with the origins map at its bound.
func BenchmarkTallyRecord(b *testing.B) {
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	providers := []string{"google", "yahoo", "microsoft", "default"}
	const nIDs = originsKept * 2
	ids := make([]queue.ID, nIDs)
	for i := range ids {
		ids[i] = queue.ID(fmt.Sprintf("0G3ZK4R2Q%06d", i))
	}
	tl := NewTally()
	ev := func(i int) Event {
		return Event{Kind: "delivered", ID: ids[i%nIDs], Sender: "app@shop.example", User: "www-data",
			Rcpt: "bob@example.org", Provider: providers[i%len(providers)], Response: "250 2.0.0 Ok: queued as 4Xyz",
			At: t0.Add(time.Duration(i) * time.Millisecond)}
	}
	// Warm up past every bound: full reply lists, full origins.
	for i := range originsKept + 1000 {
		tl.Record(ev(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := originsKept + 1000
	for b.Loop() {
		tl.Record(ev(i))
		i++
	}
}

// BenchmarkLogBookAdd is the log book's cost per log line with a queue ID
// in steady state: two lines per message (received, delivered), the book
// at its bound of messages.
func BenchmarkLogBookAdd(b *testing.B) {
	const nIDs = logbookMessages * 4
	ids := make([]queue.ID, nIDs)
	for i := range ids {
		ids[i] = queue.ID(fmt.Sprintf("0G3ZK4R2Q%06d", i))
	}
	line := "2026-11-22T14:03:08.020Z 0G3ZK4R2Q8M1 delivered rcpt=<bob@example.org> provider=default mx=127.0.0.2 ip=127.0.0.2 tls=none attempt=1 delay=3ms resp=\"250 2.0.0 Ok\""
	l := NewLogBook()
	for i := range 2 * (logbookMessages + 1000) {
		l.add(ids[(i/2)%nIDs], line)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 2 * (logbookMessages + 1000)
	for b.Loop() {
		l.add(ids[(i/2)%nIDs], line)
		i++
	}
}

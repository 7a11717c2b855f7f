package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/clock"
	"facteur/relay/delivery"
	"facteur/relay/maillog"
	"facteur/relay/relaytest"
)

// benchScheduler is a scheduler as the daemon builds it for relay-bench:
// the builtin policy, the text log (to nowhere) with a tap that keeps each
// line as the dashboard's log book does, and an OnEvent.
func benchScheduler(b *testing.B) *Scheduler {
	b.Helper()
	st, err := queue.Open(filepath.Join(b.TempDir(), "q.db"), queue.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	pol, err := policy.Builtin()
	if err != nil {
		b.Fatal(err)
	}
	book := map[string][]string{}
	h := maillog.New(io.Discard, "text").Handler().(*maillog.Handler).WithTap(func(qid, line string) {
		book[qid] = append(book[qid][:0], line)
	})
	opts := Options{Hostname: "relay.test", MaxLifetime: 5 * 24 * time.Hour, OnEvent: func(DeliveryEvent) {}}
	return New(opts, st, nil, EngineShaper{E: policy.NewEngine(pol)}, clock.NewFake(t0), slog.New(h))
}

// BenchmarkOutcomeDelivered is what the scheduler builds for one delivered
// recipient once the remote said 250 (the store's write excluded): the
// queue update, the log line, the event, the breaker's outcome.
func BenchmarkOutcomeDelivered(b *testing.B) {
	sink := relaytest.NewSink(b, "127.0.0.2:0", relaytest.SinkOptions{})
	c, err := delivery.Dial(b.Context(), "mx.example.org", netip.MustParseAddr("127.0.0.2"),
		delivery.Options{Hostname: "relay.test", Port: sink.Port(), Timeouts: delivery.DefaultTimeouts()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s := benchScheduler(b)
	now := s.clock.Now()
	it := &item{msg: queue.Message{ID: "0G3ZK4R2Q8M1", Sender: "app@shop.example", User: "www-data", Created: now.Add(-3 * time.Millisecond),
		Recipients: []queue.Recipient{{Address: "bob@example.org", Status: queue.Queued}}}, rcpts: []string{"bob@example.org"}}
	res := delivery.Result{Mail: policy.Reply{Code: 250}, Rcpts: []delivery.RcptResult{{Addr: "bob@example.org", Accepted: true,
		Reply: policy.Reply{Code: 250, Enhanced: "2.0.0", Text: "Ok: queued as 4XyzAbC"}}}, Data: policy.Reply{Code: 250, Enhanced: "2.0.0", Text: "Ok: queued as 4XyzAbC"}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		out := s.outcomeOf(it, "default", "example.org", c, res, nil, now)
		if len(out.ups) != 1 || out.ups[0].Status != queue.Delivered {
			b.Fatalf("%+v", out.ups)
		}
	}
}

// BenchmarkFill is one scheduling cycle's intake of 100 due messages of
// one recipient each into their lanes (the store's Due and GetMany
// included: the scheduler's part is what the profile shows apart).
func BenchmarkFill(b *testing.B) {
	s := benchScheduler(b)
	ctx := b.Context()
	now := s.clock.Now()
	const n = 100
	for i := range n {
		if _, err := s.store.Enqueue(ctx, queue.Envelope{Sender: "app@shop.example", Recipients: []string{fmt.Sprintf("u%d@example.org", i)}},
			[]byte("Subject: x\r\n\r\nx\r\n"), now.Add(-time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.fill(ctx, now); err != nil {
			b.Fatal(err)
		}
		if len(s.inflight) != n {
			b.Fatalf("%d in flight, want %d", len(s.inflight), n)
		}
		// The next cycle finds them due again.
		clear(s.inflight)
		clear(s.lanes)
	}
}

// BenchmarkRelay delivers b.N queued messages of one recipient through
// the running scheduler to a relayhost (a relaytest sink), as relay-bench
// does: for the profile of the scheduler's whole path per message (go test
// -bench Relay -memprofile). Enqueueing is outside the timer.
func BenchmarkRelay(b *testing.B) {
	sink := relaytest.NewSink(b, "127.0.0.2:0", relaytest.SinkOptions{})
	st, err := queue.Open(filepath.Join(b.TempDir(), "q.db"), queue.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	pol, err := policy.Builtin()
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	for i := range b.N {
		if _, err := st.Enqueue(ctx, queue.Envelope{Sender: "app@shop.example", Recipients: []string{fmt.Sprintf("u%d@example.org", i)}},
			[]byte("Subject: x\r\n\r\nx\r\n"), time.Now().Add(-time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	delivered := make(chan struct{}, b.N)
	opts := Options{Hostname: "relay.test", MaxLifetime: 5 * 24 * time.Hour, Relayhost: fmt.Sprintf("127.0.0.2:%d", sink.Port()),
		RelayhostDial: delivery.Options{Hostname: "relay.test", Timeouts: delivery.DefaultTimeouts()}, ConnectionCache: time.Second,
		OnEvent: func(e DeliveryEvent) {
			if e.Event == "delivered" {
				delivered <- struct{}{}
			}
		}}
	h := maillog.New(io.Discard, "text").Handler().(*maillog.Handler).WithTap(func(qid, line string) {})
	s := New(opts, st, nil, EngineShaper{E: policy.NewEngine(pol)}, clock.Real{}, slog.New(h))
	b.ReportAllocs()
	b.ResetTimer()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	timeout := time.After(time.Minute)
	for range b.N {
		select {
		case <-delivered:
		case <-timeout:
			b.Fatal("not delivered in a minute")
		}
	}
	b.StopTimer()
	cancel()
	<-done
}

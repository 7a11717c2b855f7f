package queue

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkList measures the operator's filtered listings on a queue of
// -queue.prefill messages (1 KiB, one recipient, one a millisecond from t0): one
// message in a hundred from a hacked site (`--sender '*@hacked.example'`), one sender
// address (`--sender 'wp-0@hacked.example'`), and the oldest 1 % (`--older`). Each
// iteration lists the whole selection, as `facteur queue list` does.
func BenchmarkList(b *testing.B) {
	path := filepath.Join(b.TempDir(), "queue.db")
	n := *prefill
	fillSenders(b, path, n)
	s := openAt(b, path, Options{})
	for _, bc := range []struct {
		name string
		f    Filter
		want int
	}{
		{"sender=*@hacked.example", Filter{Sender: "*@hacked.example"}, (n + 99) / 100},
		{"sender=wp-0@hacked.example", Filter{Sender: "wp-0@hacked.example"}, (n + 9999) / 10000},
		{"older=1%", Filter{OlderThan: t0.Add(time.Duration(n/100) * time.Millisecond)}, n / 100},
	} {
		b.Run(fmt.Sprintf("%s/queued=%d", bc.name, n), func(b *testing.B) {
			for b.Loop() {
				got := 0
				if err := s.Each(b.Context(), bc.f, func(Message) error { got++; return nil }); err != nil {
					b.Fatal(err)
				}
				if got != bc.want {
					b.Fatalf("listed %d messages, want %d", got, bc.want)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/list")
		})
	}
}

// fillSenders queues n messages of 1 KiB, one every millisecond from t0: message i
// comes from wp-(i/100 mod 100)@hacked.example when i is a multiple of 100, from
// app<i>@site<i mod 1000>.example otherwise. Large unsynced transactions: the fill is
// setup, not what is measured.
func fillSenders(b *testing.B, path string, n int) {
	b.Helper()
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 1024)
	const per = 5000
	for start := 0; start < n; start += per {
		err := s.db.Update(func(tx *bolt.Tx) error {
			w := newWtx(tx)
			for i := start; i < min(start+per, n); i++ {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				sender := fmt.Sprintf("app%d@site%d.example", i, i%1000)
				if i%100 == 0 {
					sender = fmt.Sprintf("wp-%d@hacked.example", i/100%100)
				}
				r := &record{Sender: sender, Size: int64(len(body)), Created: now,
					Rcpts: []rcptSlot{{Address: fmt.Sprintf("u%d@gmail.example", i), Status: Deferred, NextAttempt: now.Add(time.Hour)}}}
				if err := w.putNew(NewID(now), r, body); err != nil {
					return err
				}
			}
			return w.flushCounters()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := s.db.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

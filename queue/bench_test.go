package queue

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var prefill = flag.Int("queue.prefill", 200_000, "messages already queued in BenchmarkCommitLatency")

// BenchmarkEnqueue measures what an SMTP server waits for before its 250: Enqueue of a
// 4 KiB message, fsync on, from 1 and 20 concurrent writers.
func BenchmarkEnqueue(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 256)
	for _, bc := range []struct {
		writers int
		noSync  bool
	}{{1, false}, {20, false}, {20, true}} {
		writers := bc.writers
		name := fmt.Sprintf("writers=%d", writers)
		if bc.noSync {
			name += "/nosync" // the CPU ceiling, for comparison only
		}
		b.Run(name, func(b *testing.B) {
			s := openTest(b, Options{NoSync: bc.noSync})
			work := make(chan struct{})
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					env := Envelope{Sender: "app@example.org", Recipients: []string{fmt.Sprintf("u%d@gmail.example", w)}}
					now := t0
					for range work {
						now = now.Add(time.Millisecond)
						if _, err := s.Enqueue(b.Context(), env, body, now); err != nil {
							b.Error(err)
						}
					}
				})
			}
			c0 := s.commits.Load()
			st0 := s.db.Stats()
			alloc0 := st0.TxStats.GetPageAlloc()
			n := 0
			for b.Loop() {
				work <- struct{}{}
				n++
			}
			close(work)
			wg.Wait()
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
			commits := float64(s.commits.Load() - c0)
			b.ReportMetric(float64(n)/commits, "msgs/commit")
			st := s.db.Stats()
			b.ReportMetric(float64(st.TxStats.GetPageAlloc()-alloc0)/1024/commits, "KiB-written/commit")
		})
	}
}

// BenchmarkCommitLatency measures one synced commit with a large queue behind it: a
// single writer enqueues a 4 KiB message and records it delivered (which deletes it),
// two commits per iteration. The queue is prefilled, then every other message deleted,
// so the file is fragmented the way a busy queue's is. freelist=map-nosync is what Open
// uses; freelist=array-sync is bbolt's default, which writes the whole freelist at
// every commit.
func BenchmarkCommitLatency(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 256)
	for _, v := range []struct {
		name  string
		array bool
	}{{"map-nosync", false}, {"array-sync", true}} {
		b.Run(fmt.Sprintf("freelist=%s/queued=%d", v.name, *prefill), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "queue.db")
			fillStore(b, path, *prefill, v.array)
			start := time.Now()
			s := openAt(b, path, Options{arrayFreelist: v.array})
			// With NoFreelistSync, Open rebuilds the freelist by walking the file: the
			// price paid at restart instead of at every commit.
			openTime := time.Since(start)
			st0 := s.db.Stats()
			alloc0 := st0.TxStats.GetPageAlloc()
			env := Envelope{Sender: "app@example.org", Recipients: []string{"u@gmail.example"}}
			now := t0.Add(time.Hour)
			n := 0
			for b.Loop() {
				now = now.Add(time.Millisecond)
				id, err := s.Enqueue(b.Context(), env, body, now)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Record(b.Context(), id, []Update{{Rcpt: "u@gmail.example", Status: Delivered, Attempted: true, At: now}}); err != nil {
					b.Fatal(err)
				}
				n += 2
			}
			b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(n), "ms/commit")
			st := s.db.Stats()
			b.ReportMetric(float64(st.TxStats.GetPageAlloc()-alloc0)/1024/float64(n), "KiB-written/commit")
			b.ReportMetric(float64(st.FreePageN), "free-pages")
			b.ReportMetric(float64(openTime.Microseconds())/1e3, "open-ms")
			if !v.array {
				// The Open after a crash: a copy of the file taken while it is open,
				// its freelist dropped by the commits since Open, is walked.
				crashed := filepath.Join(b.TempDir(), "crashed.db")
				raw, err := os.ReadFile(path)
				if err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(crashed, raw, 0o600); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				c, err := Open(crashed, Options{NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(start).Microseconds())/1e3, "open-after-crash-ms")
				c.Close()
			}
		})
	}
}

// fillStore queues n messages of 1 KiB with four recipients each, in large unsynced
// transactions (the fill is setup, not what is measured), then deletes every other one.
func fillStore(b *testing.B, path string, n int, array bool) {
	b.Helper()
	s, err := Open(path, Options{NoSync: true, arrayFreelist: array})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		// Write the fill back now, or the first measured fdatasync pays for it.
		if err := s.db.Sync(); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}()
	body := bytes.Repeat([]byte("x"), 1024)
	ids := make([]ID, n)
	const per = 5000
	for start := 0; start < n; start += per {
		err := s.db.Update(func(tx *bolt.Tx) error {
			w := newWtx(tx)
			for i := start; i < min(start+per, n); i++ {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				ids[i] = NewID(now)
				r := &record{Sender: "app@example.org", Size: int64(len(body)), Created: now}
				for j := range 4 {
					r.Rcpts = append(r.Rcpts, rcptSlot{Address: fmt.Sprintf("u%d-%d@gmail.example", i, j), Status: Deferred, NextAttempt: now.Add(time.Duration(i%1000) * time.Minute)})
				}
				if err := w.putNew(ids[i], r, body); err != nil {
					return err
				}
			}
			return w.flushCounters()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for start := 0; start < n; start += per {
		err := s.db.Update(func(tx *bolt.Tx) error {
			w := newWtx(tx)
			for i := start; i < min(start+per, n); i += 2 {
				r, err := w.load(ids[i])
				if err != nil {
					return err
				}
				if err := w.remove(ids[i], r); err != nil {
					return err
				}
			}
			return w.flushCounters()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlush measures `queue flush` of a whole queue of -queue.prefill messages
// (half of them deleted as in BenchmarkCommitLatency, four deferred recipients each),
// fsync on: the rate at which a flush makes deferred messages due.
func BenchmarkFlush(b *testing.B) {
	path := filepath.Join(b.TempDir(), "queue.db")
	fillStore(b, path, *prefill, false)
	s := openAt(b, path, Options{})
	now := t0
	var moved int
	for b.Loop() {
		// Each round flushes everything again: entries later than now move, and the
		// last round left them all at its now.
		now = now.Add(-time.Hour)
		n, err := s.Flush(b.Context(), "", now)
		if err != nil {
			b.Fatal(err)
		}
		moved += n
	}
	b.ReportMetric(float64(moved)/b.Elapsed().Seconds(), "msgs/s")
}

package queue

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// textBody is a 1 KiB message of English-like text from a small vocabulary, the way a
// web application's notification looks to a compressor (seeded: the same bytes at
// every run).
func textBody(r *rand.Rand) []byte {
	words := strings.Fields("the your order account password reset link click here to confirm has been shipped invoice total amount due please thank you for we team support customer number date regards")
	var b strings.Builder
	b.WriteString("From: shop@example.org\r\nTo: customer@example.com\r\nSubject: Your order\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	for n := 0; b.Len() < 1024; n++ {
		b.WriteString(words[r.IntN(len(words))])
		if n%12 == 11 {
			b.WriteString("\r\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return []byte(b.String()[:1024])
}

// usedBytes is the file's high-water mark less its free pages: what the queue takes,
// without the allocation slack bbolt adds when it grows the file.
func usedBytes(t *testing.T, s *Store) int64 {
	t.Helper()
	var used int64
	err := s.db.View(func(tx *bolt.Tx) error {
		used = tx.Size() - int64(s.db.Stats().FreePageN)*int64(s.db.Info().PageSize)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return used
}

// Issue 19 §5: a queue of 1 KiB text messages takes less than 1.5 times their bodies
// (the pages of the ID-keyed buckets filled, bodies compressed). Twenty writers share
// commits as SMTP sessions do.
func TestStorageUnderOneAndAHalfBodies(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	const writers, per = 20, 250
	bodies := make([][]byte, writers*per)
	r := rand.New(rand.NewPCG(1, 2))
	var total int64
	for i := range bodies {
		bodies[i] = textBody(r)
		total += int64(len(bodies[i]))
	}
	// Arrival times from one clock, as in the daemon: IDs grow with arrival.
	var clock atomic.Int64
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				k := g*per + i
				env := Envelope{Sender: "shop@example.org", Recipients: []string{fmt.Sprintf("customer%d@example.com", k)}, ClientIP: "127.0.0.1", Helo: "www.example.org"}
				if _, err := s.Enqueue(t.Context(), env, bodies[k], t0.Add(time.Duration(clock.Add(1))*time.Millisecond)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	used := usedBytes(t, s)
	ratio := float64(used) / float64(total)
	t.Logf("%d messages: %d bytes used, %.2f x the bodies", len(bodies), used, ratio)
	if ratio > 1.5 {
		t.Errorf("queue takes %.2f x its bodies, want at most 1.5", ratio)
	}
	// The relayhost is down: every message takes its first attempt's deferral
	// (response, attempt history), the state a million queued messages are
	// in; each record grows by half.
	resp := "451 4.4.1 delivery temporarily suspended: delivery 127.0.0.1[127.0.0.1]: connect: dial tcp 127.0.0.1:2699: connect: connection refused"
	ids, err := s.List(t.Context(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(ids)); i = next.Add(1) - 1 {
				m := ids[i]
				at := t0.Add(time.Hour + time.Duration(i)*time.Millisecond)
				u := Update{Rcpt: m.Recipients[0].Address, Status: Deferred, NextAttempt: at.Add(5 * time.Minute), Response: resp,
					Class: "other_temporary", Provider: "default", Attempted: true, At: at}
				if err := s.Record(t.Context(), m.ID, []Update{u}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	used = usedBytes(t, s)
	ratio = float64(used) / float64(total)
	t.Logf("deferred: %d bytes used, %.2f x the bodies", used, ratio)
	if ratio > 1.5 {
		t.Errorf("deferred queue takes %.2f x its bodies, want at most 1.5", ratio)
	}
	if testing.Verbose() {
		s.db.View(func(tx *bolt.Tx) error {
			for _, b := range allBuckets {
				st := tx.Bucket(b).Stats()
				t.Logf("%-12s keys %6d leaf pages %5d alloc %8d in use %8d", b, st.KeyN, st.LeafPageN, st.LeafAlloc, st.LeafInuse)
			}
			return nil
		})
	}
}

package queue

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func countsOf(t *testing.T, s *Store) map[countKey]int {
	t.Helper()
	cs, err := s.Counts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	m := map[countKey]int{}
	for _, c := range cs {
		m[countKey{c.Provider, c.Domain, c.Status}] = c.Count
	}
	return m
}

// The per-destination counts follow every write: enqueue, an attempt that names the
// provider, hold, release, delete, a final outcome; Check compares them with a scan at
// cleanup.
func TestCountsFollowWrites(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	a := enqueue(t, s, t0, "x@Gmail.example", "y@gmail.example", "z@yahoo.example")
	b := enqueue(t, s, t0, "w@gmail.example")
	steps := []struct {
		name string
		do   func() error
		want map[countKey]int
	}{
		{"enqueued", func() error { return nil }, map[countKey]int{
			{"", "gmail.example", Queued}: 3, {"", "yahoo.example", Queued}: 1}},
		{"attempt names the provider", func() error {
			return s.Record(ctx, a, []Update{{Rcpt: "x@Gmail.example", Status: Deferred, NextAttempt: t0.Add(time.Hour), Provider: "google", Attempted: true, At: t0}})
		}, map[countKey]int{
			{"", "gmail.example", Queued}: 2, {"google", "gmail.example", Deferred}: 1, {"", "yahoo.example", Queued}: 1}},
		{"hold", func() error { return s.Hold(ctx, b) }, map[countKey]int{
			{"", "gmail.example", Queued}: 1, {"", "gmail.example", Held}: 1, {"google", "gmail.example", Deferred}: 1, {"", "yahoo.example", Queued}: 1}},
		{"release", func() error { return s.Release(ctx, b, t0) }, map[countKey]int{
			{"", "gmail.example", Queued}: 2, {"google", "gmail.example", Deferred}: 1, {"", "yahoo.example", Queued}: 1}},
		{"delivered", func() error {
			return s.Record(ctx, a, []Update{{Rcpt: "z@yahoo.example", Status: Delivered, Provider: "yahoo", Attempted: true, At: t0}})
		}, map[countKey]int{
			{"", "gmail.example", Queued}: 2, {"google", "gmail.example", Deferred}: 1}},
		{"delete", func() error { return s.Delete(ctx, a) }, map[countKey]int{
			{"", "gmail.example", Queued}: 1}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := countsOf(t, s); !mapsEqual(got, st.want) {
			t.Fatalf("%s: counts %v, want %v", st.name, got, st.want)
		}
	}
}

func mapsEqual(a, b map[countKey]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A database written before the counts bucket existed gets it built at Open.
func TestCountsBuiltForOldDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, s, t0, "a@one.example", "b@two.example")
	enqueue(t, s, t0, "c@one.example")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketCounts) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = openAt(t, path, Options{NoSync: true})
	got := countsOf(t, s)
	want := map[countKey]int{{"", "one.example", Queued}: 2, {"", "two.example", Queued}: 1}
	if !mapsEqual(got, want) {
		t.Fatalf("rebuilt counts %v, want %v", got, want)
	}
}

// Each walks every selected message in arrival order across pages, and stops at fn's
// error.
func TestEachPages(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	var want []ID
	for i := range 2*walkPage + 7 {
		rc := "a@one.example"
		if i%3 == 0 {
			rc = "b@two.example"
		}
		id := enqueue(t, s, t0.Add(time.Duration(i)*time.Millisecond), rc)
		if i%3 == 0 {
			want = append(want, id)
		}
	}
	var got []ID
	err := s.Each(t.Context(), Filter{Domain: "two.example"}, func(m Message) error {
		got = append(got, m.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("message %d is %s, want %s", i, got[i], want[i])
		}
	}
	stop := errors.New("enough")
	n := 0
	err = s.Each(t.Context(), Filter{}, func(Message) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("Each after fn's error: %v, %d calls", err, n)
	}
}

// A whole-queue flush crosses batches: every deferred recipient of every message is due
// at now, whatever the number of messages, and a second flush finds nothing to move.
func TestFlushAllAcrossBatches(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	n := 2*bulkBatch + 3
	for i := range n {
		id := enqueue(t, s, t0, "a@one.example", "b@two.example")
		later := t0.Add(time.Duration(i+1) * time.Minute)
		err := s.Record(ctx, id, []Update{
			{Rcpt: "a@one.example", Status: Deferred, NextAttempt: later, Attempted: true, At: t0},
			{Rcpt: "b@two.example", Status: Deferred, NextAttempt: later.Add(time.Hour), Attempted: true, At: t0},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(time.Second)
	got, err := s.Flush(ctx, "", now)
	if err != nil || got != n {
		t.Fatalf("Flush = %d, %v; want %d", got, err, n)
	}
	due, err := s.Due(ctx, now, 10*n, nil)
	if err != nil || len(due) != 2*n {
		t.Fatalf("%d due after the flush, want %d (%v)", len(due), 2*n, err)
	}
	if got, err := s.Flush(ctx, "", now); err != nil || got != 0 {
		t.Fatalf("second Flush = %d, %v", got, err)
	}
}

// GetMany returns the stored messages asked for, in order, leaving out the missing.
func TestGetMany(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	a := enqueue(t, s, t0, "a@x.example")
	b := enqueue(t, s, t0, "b@x.example")
	if err := s.Delete(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	c := enqueue(t, s, t0, "c@x.example")
	got, err := s.GetMany(t.Context(), []ID{c, a, b})
	if err != nil || len(got) != 2 || got[0].ID != c || got[1].ID != b || got[1].Recipients[0].Address != "b@x.example" {
		t.Fatalf("GetMany = %+v, %v", got, err)
	}
}

// A flush moves what was waiting when it was asked, once: a recipient tried since
// (deferred again to a dead destination's next probe, say) stays where it was put, and
// the flush goes on past it to the entries after it.
func TestFlushLeavesWhatWasTriedSince(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	a := enqueue(t, s, t0, "a@x.example")
	b := enqueue(t, s, t0, "b@x.example")
	now := t0.Add(time.Second)
	for _, u := range []struct {
		id   ID
		rcpt string
		next time.Time
		at   time.Time
	}{
		{a, "a@x.example", t0.Add(2 * time.Hour), now.Add(time.Second)}, // tried after the flush's now
		{b, "b@x.example", t0.Add(3 * time.Hour), t0},
	} {
		if err := s.Record(ctx, u.id, []Update{{Rcpt: u.rcpt, Status: Deferred, NextAttempt: u.next, Attempted: true, At: u.at}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Flush(ctx, "", now); err != nil || n != 1 {
		t.Fatalf("Flush = %d, %v; want 1", n, err)
	}
	if got := get(t, s, a).Recipients[0].NextAttempt; !got.Equal(t0.Add(2 * time.Hour)) {
		t.Errorf("a moved to %v", got)
	}
	if got := get(t, s, b).Recipients[0].NextAttempt; !got.Equal(now) {
		t.Errorf("b at %v, want %v", got, now)
	}
}

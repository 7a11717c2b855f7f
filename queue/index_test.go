package queue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// idAt is the ID of millisecond ms with sequence seq (0 to 36³-1), as NewID writes it.
func idAt(t testing.TB, at time.Time, seq int) ID {
	t.Helper()
	k := idKeyAt(floorMilli(at), false)
	for i := idLen - 1; i >= idTimeLen; i-- {
		k[i] = idDigits[seq%36]
		seq /= 36
	}
	return ID(k)
}

func TestSenderIndexPrefix(t *testing.T) {
	for _, tt := range []struct {
		pattern string
		want    string // "" with ok false: the walk
		ok      bool
	}{
		{"*@hacked.example", "elpmaxe.dekcah@", true},
		{"*@Hacked.EXAMPLE", "elpmaxe.dekcah@", true},
		{"bob@x", "x@bob\x00", true},
		{"Bob@X", "x@bob\x00", true},
		{"<>", "\x00", true},
		{"*", "", false},
		{"**@x", "", false},
		{"wp-*", "", false},
		{"*@*.example", "", false},
		{"wp-*@x", "", false},
		{"*@x*", "", false},
		{"", "", false},
		{"*a\x00b", "", false},
	} {
		t.Run(tt.pattern, func(t *testing.T) {
			got, ok := senderIndexPrefix(tt.pattern)
			if ok != tt.ok || string(got) != tt.want {
				t.Errorf("senderIndexPrefix(%q) = %q, %v; want %q, %v", tt.pattern, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestEnqueueKeepsIDWithinWindow: a caller's ID is kept when its time is within
// idAhead after now (what NewID gives through a clock step back), replaced otherwise.
func TestEnqueueKeepsIDWithinWindow(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	now := t0.Add(500 * time.Microsecond) // mid-millisecond: the window starts at its floor
	for i, tt := range []struct {
		name string
		id   ID
		keep bool
	}{
		{"same millisecond", idAt(t, now, 1), true},
		{"floor of now's millisecond", idAt(t, t0, 2), true},
		{"one millisecond behind", idAt(t, now.Add(-time.Millisecond), 3), false},
		{"an hour behind (drawn long before)", idAt(t, now.Add(-time.Hour), 4), false},
		{"a clock step back of idMaxStepBack", idAt(t, now.Add(idMaxStepBack), 5), true},
		{"exactly idAhead ahead", idAt(t, t0.Add(idAhead), 6), true},
		{"one millisecond past idAhead", idAt(t, t0.Add(idAhead+time.Millisecond), 7), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Enqueue(t.Context(), Envelope{ID: tt.id, Sender: fmt.Sprintf("s%d@x.example", i), Recipients: []string{"r@y.example"}}, []byte("x"), now)
			if err != nil {
				t.Fatal(err)
			}
			if (got == tt.id) != tt.keep {
				t.Errorf("Enqueue with ID %s (time %v, now %v) stored %s; keep = %v", tt.id, tt.id.Time(), now, got, tt.keep)
			}
			if !idFits(got, now) {
				t.Errorf("stored ID %s (time %v) is outside the window of %v", got, got.Time(), now)
			}
		})
	}
	for _, bad := range []time.Time{time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(5200, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if _, err := s.Enqueue(t.Context(), Envelope{Recipients: []string{"r@y.example"}}, []byte("x"), bad); err == nil {
			t.Errorf("Enqueue at %v: no error, want ErrInvalid", bad)
		}
	}
}

// listIDs lists with the index and time bounds (indexed) or by walking every record.
func listIDs(t testing.TB, s *Store, f Filter, from ID, indexed bool) []ID {
	t.Helper()
	var ids []ID
	err := s.eachAfter(t.Context(), f, from, func(m Message) error {
		ids = append(ids, m.ID)
		return nil
	}, indexed)
	if err != nil {
		t.Fatalf("list %+v after %q (indexed %v): %v", f, from, indexed, err)
	}
	return ids
}

// TestTimeBoundEdges: a message whose ID is ahead of its Created by a clock step back,
// and messages exactly at the bounds, are listed as the walk lists them.
func TestTimeBoundEdges(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	T := t0.Add(time.Hour)
	type msg struct {
		created time.Time
		idAt    time.Time // the ID's time: created's, or ahead after a step back
	}
	msgs := map[string]msg{
		"exactly T":                  {T, T},
		"1ns before T":               {T.Add(-time.Nanosecond), T.Add(-time.Nanosecond)},
		"1ns after T":                {T.Add(time.Nanosecond), T.Add(time.Nanosecond)},
		"before T, ID 1s ahead":      {T.Add(-time.Millisecond), T.Add(idMaxStepBack - time.Millisecond)},
		"before T, ID idAhead ahead": {T.Add(-time.Nanosecond), T.Add(-time.Nanosecond).Add(idAhead)},
		"after T, ID ahead":          {T.Add(2 * time.Millisecond), T.Add(idAhead)},
		"long before":                {T.Add(-time.Hour), T.Add(-time.Hour)},
		"long after":                 {T.Add(time.Hour), T.Add(time.Hour)},
	}
	byID := map[ID]string{}
	seq := 0
	for name, m := range msgs {
		seq++
		id, err := s.Enqueue(t.Context(), Envelope{ID: idAt(t, m.idAt, seq), Sender: "a@x.example", Recipients: []string{"r@y.example"}}, []byte("x"), m.created)
		if err != nil {
			t.Fatal(err)
		}
		if id != idAt(t, m.idAt, seq) {
			t.Fatalf("%s: ID replaced", name)
		}
		byID[id] = name
	}
	names := func(ids []ID) []string {
		var out []string
		for _, id := range ids {
			out = append(out, byID[id])
		}
		slices.Sort(out)
		return out
	}
	for _, tt := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"older than T", Filter{OlderThan: T}, []string{"1ns before T", "before T, ID 1s ahead", "before T, ID idAhead ahead", "long before"}},
		{"younger than T", Filter{YoungerThan: T}, []string{"1ns after T", "after T, ID ahead", "long after"}},
		{"between T-1ns and T+1ns", Filter{YoungerThan: T.Add(-time.Nanosecond), OlderThan: T.Add(time.Nanosecond)}, []string{"exactly T"}},
		{"older than T+1ms, younger than T", Filter{YoungerThan: T, OlderThan: T.Add(time.Millisecond)}, []string{"1ns after T"}},
		{"empty range", Filter{YoungerThan: T, OlderThan: T}, nil},
		{"older than 1970", Filter{OlderThan: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}, nil},
		{"younger than 1960", Filter{YoungerThan: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}, names(listIDs(t, s, Filter{}, "", false))},
		{"older than year 6000", Filter{OlderThan: time.Date(6000, 1, 1, 0, 0, 0, 0, time.UTC)}, names(listIDs(t, s, Filter{}, "", false))},
		{"younger than year 6000", Filter{YoungerThan: time.Date(6000, 1, 1, 0, 0, 0, 0, time.UTC)}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			walked, indexed := listIDs(t, s, tt.f, "", false), listIDs(t, s, tt.f, "", true)
			if !slices.Equal(walked, indexed) {
				t.Errorf("indexed %v, walk %v", names(indexed), names(walked))
			}
			if got := names(indexed); !slices.Equal(got, tt.want) {
				t.Errorf("listed %q, want %q", got, tt.want)
			}
		})
	}
}

// randomQueue fills s with n messages from a few senders, at times that sometimes step
// back (with IDs ahead of Created, as NewID gives then), and removes about a third
// (delete, delivery). It returns every ID ever used, removed ones included.
func randomQueue(t *testing.T, s *Store, rng *rand.Rand, n int) []ID {
	senders := []string{"", "app@example.org", "wp-1@hacked.example", "WP-2@Hacked.Example",
		"x@sub.hacked.example", "a@nothacked.example", "bob@x", "Bob@X", "bob@xx", "@hacked.example"}
	var ids []ID
	now := t0
	seq := 0
	for range n {
		now = now.Add(time.Duration(rng.Int64N(int64(3*time.Second))) - time.Second)
		env := Envelope{Sender: senders[rng.IntN(len(senders))], Recipients: []string{"r@y.example", "s@z.example"}}
		if rng.IntN(3) == 0 {
			seq++
			env.ID = idAt(t, now.Add(time.Duration(rng.Int64N(int64(idAhead+time.Millisecond)))), seq)
		}
		id, err := s.Enqueue(t.Context(), env, []byte("x"), now)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		switch rng.IntN(6) {
		case 0:
			if err := s.Delete(t.Context(), id); err != nil {
				t.Fatal(err)
			}
		case 1:
			err := s.Record(t.Context(), id, []Update{
				{Rcpt: "r@y.example", Status: Delivered},
				{Rcpt: "s@z.example", Status: Bounced},
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return ids
}

// TestIndexedListingsEqualWalk compares, on random queues, what the sender index and
// the ID time bounds list with what walking every record lists: same messages, same
// order, and the same pages when a search is continued from an ID (EachAfter).
func TestIndexedListingsEqualWalk(t *testing.T) {
	defer func(p int) { indexPage = p }(indexPage)
	for _, tt := range []struct {
		name      string
		seed      uint64
		n         int
		indexPage int
	}{
		{"small", 1, 40, 4096},
		{"index read in pages of 3", 2, 200, 3},
		{"walk pages", 3, walkPage + 100, 17},
	} {
		t.Run(tt.name, func(t *testing.T) {
			indexPage = tt.indexPage
			s := openTest(t, Options{NoSync: true})
			rng := rand.New(rand.NewPCG(tt.seed, 19))
			ids := randomQueue(t, s, rng, tt.n)
			randTime := func() time.Time {
				if rng.IntN(3) == 0 {
					// Exactly some message's Created.
					m, err := s.Get(t.Context(), ids[rng.IntN(len(ids))])
					if err == nil {
						return m.Created
					}
				}
				// randomQueue's clock moves by -1 s to +2 s a message.
				return t0.Add(time.Duration(rng.Int64N(int64(3*tt.n)*int64(time.Second))) - time.Duration(tt.n)*time.Second)
			}
			filters := []Filter{
				{},
				{Sender: "*@hacked.example"},
				{Sender: "*@HACKED.example"},
				{Sender: "*hacked.example"},
				{Sender: "bob@x"},
				{Sender: "BOB@X"},
				{Sender: "<>"},
				{Sender: "*@nowhere.example"},
				{Sender: "wp-*"},
				{Sender: "*@*.example"},
				{Sender: "*@hacked.example", Domain: "y.example"},
				{Sender: "*@hacked.example", Status: Queued},
			}
			for range 12 {
				f := Filter{}
				switch rng.IntN(3) {
				case 0:
					f.OlderThan = randTime()
				case 1:
					f.YoungerThan = randTime()
				default:
					f.YoungerThan = randTime()
					f.OlderThan = f.YoungerThan.Add(time.Duration(rng.Int64N(int64(time.Minute))))
				}
				filters = append(filters, f)
				g := f
				g.Sender = []string{"*@hacked.example", "bob@x", "<>", "wp-*"}[rng.IntN(4)]
				filters = append(filters, g)
			}
			for _, f := range filters {
				walked := listIDs(t, s, f, "", false)
				if got := listIDs(t, s, f, "", true); !slices.Equal(got, walked) {
					t.Errorf("filter %+v: indexed %v, walk %v", f, got, walked)
				}
				// Continued from a stored, a removed and a random ID.
				for range 4 {
					from := ids[rng.IntN(len(ids))]
					if got, want := listIDs(t, s, f, from, true), listIDs(t, s, f, from, false); !slices.Equal(got, want) {
						t.Errorf("filter %+v after %s: indexed %v, walk %v", f, from, got, want)
					}
				}
				// The dashboard's paging: pages from the last ID shown.
				pageLen := max(5, tt.n/20)
				var paged []ID
				from := ID("")
				for {
					var page []ID
					err := s.EachAfter(t.Context(), f, from, func(m Message) error {
						page = append(page, m.ID)
						if len(page) == pageLen {
							return errPageFull
						}
						return nil
					})
					if err != nil && err != errPageFull {
						t.Fatal(err)
					}
					paged = append(paged, page...)
					if len(page) < pageLen {
						break
					}
					if len(paged) > len(walked) {
						t.Fatalf("filter %+v: paging goes on past the %d messages: %v", f, len(walked), paged)
					}
					from = page[len(page)-1]
				}
				if !slices.Equal(paged, walked) {
					t.Errorf("filter %+v: paged %v, walk %v", f, paged, walked)
				}
			}
		})
	}
}

var errPageFull = fmt.Errorf("page full")

// TestSenderIndexBuiltForOldDatabase: a queue.db made before the sender index has
// none; listings walk until BuildIndexes completed it, which resumes after a stop and
// indexes alongside new messages and removals.
func TestSenderIndexBuiltForOldDatabase(t *testing.T) {
	defer func(b int) { indexBatch = b }(indexBatch)
	indexBatch = 7
	path := filepath.Join(t.TempDir(), "queue.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 19))
	randomQueue(t, s, rng, 60)
	// What the current main's Open left: no senders bucket, no completion key.
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketSenders); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(metaSendersDone)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	f := Filter{Sender: "*@hacked.example"}
	want := listIDs(t, s, f, "", false)
	if len(want) == 0 {
		t.Fatal("the random queue has no hacked.example mail: change the seed")
	}
	check := func(when string) {
		t.Helper()
		if got := listIDs(t, s, f, "", true); !slices.Equal(got, want) {
			t.Errorf("%s: listed %v, walk %v", when, got, want)
		}
		if err := s.Check(); err != nil {
			t.Errorf("%s: %v", when, err)
		}
	}
	check("before the build (empty index, walk)")
	for i := range 3 {
		if n, done, err := s.indexSome(t.Context()); err != nil || done || n != indexBatch {
			t.Fatalf("batch %d: %d indexed, done %v, err %v", i, n, done, err)
		}
	}
	check("a partial index")
	// Meanwhile, a new message and a removal.
	id, err := s.Enqueue(t.Context(), Envelope{Sender: "new@hacked.example", Recipients: []string{"r@y.example"}}, []byte("x"), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(t.Context(), want[0]); err != nil {
		t.Fatal(err)
	}
	want = append(want[1:], id)
	check("a partial index, after an enqueue and a delete")
	// A stop and a restart, then the rest.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.BuildIndexes(ctx); err == nil {
		t.Error("BuildIndexes with a cancelled context: no error")
	}
	// 60 messages less the removed, plus one new, less the 21 of the three batches.
	if n, err := s.BuildIndexes(t.Context()); err != nil || n == 0 || n >= 60-21 {
		t.Fatalf("BuildIndexes = %d, %v", n, err)
	}
	if n, err := s.BuildIndexes(t.Context()); err != nil || n != 0 {
		t.Fatalf("BuildIndexes of a complete index = %d, %v; want 0", n, err)
	}
	if err := s.view(t.Context(), func(w *wtx) error {
		if !sendersComplete(w.meta) || w.meta.Get(metaSendersAt) != nil {
			t.Error("after BuildIndexes: index not marked complete, or its cursor left")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check("complete")
	// The index is now what listings read: emptied behind their back, they find nothing.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		tx.DeleteBucket(bucketSenders)
		_, err := tx.CreateBucket(bucketSenders)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := listIDs(t, s, f, "", true); len(got) != 0 {
		t.Errorf("listing with a complete (emptied) index: %v, want it read from the index", got)
	}
	if err := s.Check(); err == nil {
		t.Error("Check of an emptied complete index: no error")
	}
	// Rebuilt, it serves again.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(metaSendersDone) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BuildIndexes(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("rebuilt")
}

package queue

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestCheckDetects breaks one invariant at a time behind the store's back and expects
// Check to name it.
func TestCheckDetects(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(w *wtx, id ID) error
		want    string
	}{
		{"missing due entry", func(w *wtx, id ID) error { return w.due.Delete(dueKey(t0, id, "a@x.example")) }, "due index: 0 keys"},
		{"stray due entry", func(w *wtx, id ID) error { return w.due.Put(dueKey(t0, id, "zz@x.example"), nil) }, "matches no recipient"},
		{"due entry at the wrong time", func(w *wtx, id ID) error {
			if err := w.due.Delete(dueKey(t0, id, "a@x.example")); err != nil {
				return err
			}
			return w.due.Put(dueKey(t0.Add(time.Second), id, "a@x.example"), nil)
		}, "matches no recipient"},
		{"missing address entry", func(w *wtx, id ID) error { return w.addrs.Delete(addrKey("a@x.example", id)) }, "address index: 0 keys"},
		{"missing body", func(w *wtx, id ID) error { return w.bodies.Delete([]byte(id)) }, "no body"},
		{"orphan body", func(w *wtx, id ID) error { return w.bodies.Put([]byte(NewID(t0)), []byte("x")) }, "no message"},
		{"counter off", func(w *wtx, id ID) error { return w.meta.Put(metaStatusKey(Queued), putU64(5)) }, "counter queued = 5"},
		{"corrupt record", func(w *wtx, id ID) error { return w.msgs.Put([]byte(id), []byte("{")) }, "corrupt record"},
		{"final message left behind", func(w *wtx, id ID) error {
			r, err := w.load(id)
			if err != nil {
				return err
			}
			if err := w.setRcpt(id, r, 0, Delivered, time.Time{}); err != nil {
				return err
			}
			if err := w.save(id, r); err != nil {
				return err
			}
			return w.flushCounters()
		}, "every recipient is final"},
		{"suppression under another key", func(w *wtx, id ID) error {
			return w.supp.Put([]byte("b@x.example"), []byte(`{"address":"c@x.example"}`))
		}, "names"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "queue.db"), Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			id := enqueue(t, s, t0, "a@x.example")
			if err := s.Check(); err != nil {
				t.Fatalf("Check before corruption: %v", err)
			}
			if err := s.db.Update(func(tx *bolt.Tx) error { return tt.corrupt(newWtx(tx), id) }); err != nil {
				t.Fatal(err)
			}
			err = s.Check()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestDueOutOfRange keeps times the 8-byte key cannot hold in order at the ends.
func TestDueOutOfRange(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	early := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	late := time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC)
	a := enqueue(t, s, t0, "a@x.example")
	b := enqueue(t, s, t0, "b@x.example")
	for id, at := range map[ID]time.Time{a: late, b: early} {
		if err := s.Record(ctx, id, []Update{{Rcpt: map[ID]string{a: "a@x.example", b: "b@x.example"}[id], Status: Deferred, NextAttempt: at}}); err != nil {
			t.Fatal(err)
		}
	}
	due, err := s.Due(ctx, t0, 10, nil)
	if err != nil || len(due) != 1 || due[0].ID != b {
		t.Errorf("Due(now) = %v, %v; want only the 1900 one", due, err)
	}
	if got := rcpt(t, get(t, s, a), "a@x.example").NextAttempt; !got.Equal(late) {
		t.Errorf("record keeps %v, want %v", got, late)
	}
	all := dueAll(t, s)
	if len(all) != 2 || all[1].ID != a {
		t.Errorf("Due(far future) = %v", all)
	}
}

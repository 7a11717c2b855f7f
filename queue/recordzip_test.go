package queue

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Records are stored as JSON or, when that saves an eighth, compressed; a
// database written before compression (plain JSON records) reads the same.
func TestRecordEncoding(t *testing.T) {
	long := strings.Repeat("451 4.4.1 connection refused ", 10)
	for _, tc := range []struct {
		name   string
		r      record
		zipped bool
	}{
		{"small: JSON", record{Sender: "a@b.example", Rcpts: []rcptSlot{{Address: "c@d.example", Status: Queued}}}, false},
		{"deferred: compressed", record{Sender: "a@b.example", Rcpts: []rcptSlot{{Address: "c@d.example", Status: Deferred,
			LastResponse: long, History: []Attempt{{At: t0, Response: long}}}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := encodeRecord(&tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(b) > 0 && b[0] == recordSnappy; got != tc.zipped {
				t.Fatalf("compressed %v, want %v (%d bytes)", got, tc.zipped, len(b))
			}
			back, err := decodeRecord("0X", b)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(&tc.r)
			if got, _ := json.Marshal(back); string(got) != string(want) {
				t.Errorf("round trip:\n%s\nwant\n%s", got, want)
			}
		})
	}

	// A plain JSON record, as an older facteur wrote it, in a live store:
	// the stored record rewritten uncompressed reads the same.
	s := openTest(t, Options{NoSync: true})
	id, err := s.Enqueue(t.Context(), Envelope{Sender: "a@b.example", Recipients: []string{"c@d.example"}}, []byte("Subject: x\r\n\r\nx\r\n"), t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Record(t.Context(), id, []Update{{Rcpt: "c@d.example", Status: Deferred, NextAttempt: t0.Add(time.Hour), Response: long, Attempted: true, At: t0}}); err != nil {
		t.Fatal(err)
	}
	before, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsgs)
		stored := b.Get([]byte(id))
		if len(stored) == 0 || stored[0] != recordSnappy {
			t.Errorf("a deferred record with a long response is stored uncompressed")
		}
		plain, err := recordJSON(id, stored)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), append([]byte(nil), plain...))
	})
	if err != nil {
		t.Fatal(err)
	}
	after, err := s.Get(t.Context(), id)
	if err != nil || after.Recipients[0].LastResponse != long || after.Sender != before.Sender || len(after.Recipients[0].History) != 1 {
		t.Fatalf("old record: %+v, %v", after, err)
	}
}

// A read-only open of a file no daemon has made its buckets in (mailq before
// the first start) reads as empty: listings are empty and lookups are
// ErrNotFound, never a panic on a missing bucket.
func TestReadOnlyWithoutBuckets(t *testing.T) {
	path := t.TempDir() + "/q.db"
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if msgs, err := s.List(t.Context(), Filter{}); err != nil || len(msgs) != 0 {
		t.Fatalf("List: %v, %v", msgs, err)
	}
	if msgs, err := s.List(t.Context(), Filter{Sender: "*@x.example"}); err != nil || len(msgs) != 0 {
		t.Fatalf("List by sender: %v, %v", msgs, err)
	}
	if _, err := s.Get(t.Context(), "0MWRWPYMI001"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	if _, err := s.Body(t.Context(), "0MWRWPYMI001"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Body: %v", err)
	}
}

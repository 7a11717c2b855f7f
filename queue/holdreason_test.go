package queue

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The breaker's holds (issue 21): a message queued held with a reason, the
// reason on holding queued mail and on a held outcome, cleared by Release;
// records written before the field existed still read.
func TestHoldReason(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, Options{})
	body := []byte("Subject: x\r\n\r\nbody\r\n")

	held, err := s.Enqueue(ctx, Envelope{Sender: "a@shop.example", Recipients: []string{"x@example.org", "y@example.org"}, Hold: "breaker"}, body, t0)
	if err != nil {
		t.Fatal(err)
	}
	m := get(t, s, held)
	if m.HoldReason != "breaker" || m.Recipients[0].Status != Held || m.Recipients[1].Status != Held {
		t.Fatalf("enqueued held: %+v", m)
	}
	if due, _ := s.Due(ctx, t0.Add(time.Hour), 10, nil); len(due) != 0 {
		t.Fatalf("held recipients are due: %+v", due)
	}

	q1 := enqueue(t, s, t0, "a@example.org")
	q2 := enqueue(t, s, t0, "b@example.org")
	if err := s.Record(ctx, q2, []Update{{Rcpt: "b@example.org", Status: Delivered, At: t0}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.HoldIDs(ctx, []ID{q1, q2, held}, "breaker")
	if err != nil || len(got) != 1 || got[0] != q1 {
		t.Fatalf("HoldIDs = %v, %v; want [%s] (q2 is gone, the first was held already)", got, err, q1)
	}
	if m := get(t, s, q1); m.HoldReason != "breaker" || m.Recipients[0].Status != Held {
		t.Fatalf("q1 after HoldIDs: %+v", m)
	}

	// A held outcome with a reason (the scheduler found the sender stopped).
	q3 := enqueue(t, s, t0, "c@example.org")
	if err := s.Record(ctx, q3, []Update{{Rcpt: "c@example.org", Status: Held, HoldReason: "breaker", At: t0}}); err != nil {
		t.Fatal(err)
	}
	if m := get(t, s, q3); m.HoldReason != "breaker" || m.Recipients[0].Status != Held {
		t.Fatalf("q3: %+v", m)
	}

	if err := s.Release(ctx, held, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	m = get(t, s, held)
	if m.HoldReason != "" || m.Recipients[0].Status != Queued {
		t.Fatalf("released: %+v", m)
	}
	b, _ := json.Marshal(get(t, s, q1))
	if !strings.Contains(string(b), `"hold_reason":"breaker"`) {
		t.Errorf("JSON lacks hold_reason: %s", b)
	}
	b, _ = json.Marshal(m)
	if strings.Contains(string(b), "hold_reason") {
		t.Errorf("JSON of a released message has hold_reason: %s", b)
	}
}

func TestOldRecordWithoutHoldReason(t *testing.T) {
	s := openTest(t, Options{})
	id := enqueue(t, s, t0, "a@example.org")
	// Rewrite the record as an older facteur wrote it: no hold_reason key.
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsgs)
		v := strings.Replace(string(b.Get([]byte(id))), `"hold_reason":"",`, "", 1)
		return b.Put([]byte(id), []byte(v))
	})
	if err != nil {
		t.Fatal(err)
	}
	if m := get(t, s, id); m.HoldReason != "" || len(m.Recipients) != 1 {
		t.Fatalf("old record: %+v", m)
	}
}

package admin

import (
	"fmt"
	"testing"
	"time"

	"facteur/queue"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func arrivalMsg(i int, sender string) queue.Message {
	at := t0.Add(time.Duration(i) * time.Millisecond)
	return queue.Message{ID: queue.NewID(at), Created: at, Sender: sender, ClientIP: "127.0.0.1", User: "www-data",
		Recipients: []queue.Recipient{{Address: fmt.Sprintf("r%d@gmail.com", i), Status: queue.Queued}, {Address: fmt.Sprintf("r%d@yahoo.com", i)}}}
}

// Arrivals keeps entries in ID order although sessions finish out of
// order, finds them for Event, forgets those older than the hour and keeps
// at most maxArrivals.
func TestArrivals(t *testing.T) {
	var a Arrivals
	msgs := make([]queue.Message, 6)
	for i := range msgs {
		msgs[i] = arrivalMsg(i, "app@shop.example")
	}
	for _, i := range []int{0, 2, 1, 3, 5, 4} { // out of order by a place or two
		a.Add(msgs[i], "Order "+fmt.Sprint(i))
	}
	a.Event(msgs[1].ID, "r1@gmail.com", "delivered")
	a.Event(msgs[4].ID, "r4@yahoo.com", "bounced")
	a.Event("0NOTTHERE000", "r1@gmail.com", "delivered") // forgotten: ignored
	got := a.Since(t0)
	if len(got) != 6 {
		t.Fatalf("%d arrivals", len(got))
	}
	for i, ar := range got {
		if ar.ID != msgs[i].ID || ar.Subject != "Order "+fmt.Sprint(i) || ar.User != "www-data" {
			t.Fatalf("arrival %d: %+v", i, ar)
		}
	}
	if got[1].Rcpts[0] != (RcptState{"r1@gmail.com", "delivered"}) || got[1].Rcpts[1].Status != "queued" || got[4].Rcpts[1].Status != "bounced" {
		t.Errorf("states: %+v / %+v", got[1].Rcpts, got[4].Rcpts)
	}
	// The copies are the caller's.
	got[0].Rcpts[0].Status = "changed"
	if again := a.Since(t0); again[0].Rcpts[0].Status != "queued" {
		t.Error("Since handed out the stored recipients")
	}
	if later := a.Since(t0.Add(3 * time.Millisecond)); len(later) != 3 || later[0].ID != msgs[3].ID {
		t.Fatalf("since 3 ms: %d, first %v", len(later), later[0].ID)
	}
	if all := a.Since(t0); len(all) != 3 {
		t.Fatalf("the older ones were not forgotten: %d", len(all))
	}
}

func TestArrivalsBounded(t *testing.T) {
	var a Arrivals
	// Twice the bound, every message with its own sender and subject: the
	// strings of the dropped entries are let go, not kept interned.
	n := 2 * maxArrivals
	// Three strings of four unique per message: a rebuild of the table per
	// dropped entry (quadratic) would not finish here.
	for i := range n {
		m := arrivalMsg(i, fmt.Sprintf("app%d@site.example", i))
		m.ClientIP = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		a.Add(m, fmt.Sprintf("Order %d", i))
	}
	got := a.Since(t0)
	if len(got) != maxArrivals || !got[0].At.Equal(t0.Add(maxArrivals*time.Millisecond)) {
		t.Fatalf("%d kept, oldest at %v", len(got), got[0].At)
	}
	if live := 3*maxArrivals + 1; len(a.intern) > live+4*(maxArrivals/2+1024) {
		t.Errorf("intern table of %d strings for %d live ones", len(a.intern), live)
	}
}

// A report counts a message still queued once (not again as an arrival),
// a delivered arrival in the last hour, and keys past maxTopKeys together.
func TestTopTally(t *testing.T) {
	now := t0.Add(time.Minute)
	queued := arrivalMsg(1, "app@shop.example")
	gone := arrivalMsg(2, "app@shop.example")
	old := arrivalMsg(3, "old@shop.example")
	old.Created = now.Add(-2 * time.Hour)
	recent := []Arrival{
		{ID: queued.ID, At: queued.Created, Sender: queued.Sender, Rcpts: []RcptState{{"r1@gmail.com", "queued"}}},
		{ID: gone.ID, At: gone.Created, Sender: gone.Sender, User: "www-data", Rcpts: []RcptState{{"r2@gmail.com", "delivered"}, {"r2@yahoo.com", "bounced"}}},
		{ID: "0OLD00000000", At: now.Add(-2 * time.Hour), Sender: "old@shop.example"},
	}
	tt := newTopTally(now, recent)
	tt.queued(queued, "Hello")
	tt.queued(old, "Hello")
	rep := tt.report(10)
	if rep.Messages != 2 || rep.LastHour != 2 {
		t.Fatalf("messages %d, last hour %d", rep.Messages, rep.LastHour)
	}
	s := rep.Senders[0]
	if s.Key != "app@shop.example" || s.Queue.Messages != 1 || s.LastHour.Messages != 2 || s.LastHour.States["delivered"] != 1 || s.LastHour.States["bounced"] != 1 {
		t.Fatalf("sender entry %+v", s)
	}
	var gmail TopEntry
	for _, d := range rep.Domains {
		if d.Key == "gmail.com" {
			gmail = d
		}
	}
	if gmail.Queue.Messages != 2 || gmail.LastHour.Messages != 2 {
		t.Errorf("gmail.com %+v", gmail)
	}

	tt = newTopTally(now, nil)
	for i := range maxTopKeys + 10 {
		m := arrivalMsg(i, "app@shop.example")
		tt.queued(m, fmt.Sprintf("Order %d", i))
	}
	if len(tt.tables["subject"]) != maxTopKeys+1 || tt.tables["subject"][otherKeys].Queue.Messages != 10 {
		t.Errorf("%d subjects, others %+v", len(tt.tables["subject"]), tt.tables["subject"][otherKeys])
	}
}

package dashboard

import (
	"fmt"
	"testing"
	"time"

	"facteur/queue"
)

// The replies of a provider are its last RepliesKept, newest first, at any
// count of events: below the bound, at it, and after the ring has wrapped
// several times.
func TestTallyRepliesRing(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, n := range []int{0, 1, 2, RepliesKept - 1, RepliesKept, RepliesKept + 1, 2*RepliesKept - 1, 2 * RepliesKept, 3*RepliesKept + 7} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			tl := NewTally()
			for i := range n {
				tl.Record(Event{Kind: "deferred", ID: queue.ID(fmt.Sprint("Q", i)), Provider: "yahoo", Response: fmt.Sprint(i), At: t0.Add(time.Duration(i) * time.Second)})
				// Another provider's replies are kept apart.
				tl.Record(Event{Kind: "delivered", Provider: "google", Response: "other", At: t0})
			}
			got := tl.Replies("yahoo")
			want := min(n, RepliesKept)
			if got == nil || len(got) != want {
				t.Fatalf("%d events: %d replies (nil %v), want %d", n, len(got), got == nil, want)
			}
			for i, r := range got {
				if w := fmt.Sprint(n - 1 - i); r.Response != w || r.ID != queue.ID("Q"+w) || !r.At.Equal(t0.Add(time.Duration(n-1-i)*time.Second)) {
					t.Errorf("%d events: reply %d is %q (%s), want %q", n, i, r.Response, r.ID, w)
				}
			}
			// The caller owns the copy it got.
			if len(got) > 0 {
				got[0].Response = "changed"
				if tl.Replies("yahoo")[0].Response == "changed" {
					t.Error("Replies hands out the ring itself")
				}
			}
		})
	}
	if rs := NewTally().Replies("none"); rs == nil || len(rs) != 0 {
		t.Errorf("a provider without replies: %#v, want an empty list", rs)
	}
}

// The queue ID → origin map keeps the last originsKept messages: the
// oldest are forgotten first, and the order's storage does not grow.
func TestTallyOriginsBound(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tl := NewTally()
	const extra = 1234
	id := func(i int) queue.ID { return queue.ID(fmt.Sprint("M", i)) }
	for i := range originsKept + extra {
		tl.Record(Event{Kind: "delivered", ID: id(i), Sender: fmt.Sprintf("a@s%d.example", i), At: t0})
		// A second event of the same message does not count twice.
		tl.Record(Event{Kind: "deferred", ID: id(i), Sender: fmt.Sprintf("a@s%d.example", i), At: t0})
	}
	if len(tl.origins) != originsKept || len(tl.order.ids) != originsKept || cap(tl.order.ids) > 2*originsKept {
		t.Fatalf("origins %d, order %d (cap %d), want %d", len(tl.origins), len(tl.order.ids), cap(tl.order.ids), originsKept)
	}
	for _, tc := range []struct {
		i    int
		kept bool
	}{{0, false}, {extra - 1, false}, {extra, true}, {originsKept, true}, {originsKept + extra - 1, true}} {
		_, ok := tl.origins[id(tc.i)]
		if ok != tc.kept {
			t.Errorf("message %d kept %v, want %v", tc.i, ok, tc.kept)
		}
	}
	// A complaint about a kept message counts against its sender domain.
	last := originsKept + extra - 1
	tl.Complaint(id(last), "", "", t0)
	if c := tl.Window(t0, time.Hour).Domains[fmt.Sprintf("s%d.example", last)]; c.Complaints != 1 {
		t.Errorf("complaint of the newest message: %+v", c)
	}
}

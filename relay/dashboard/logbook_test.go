package dashboard

import (
	"fmt"
	"testing"

	"facteur/queue"
)

// The log book keeps the lines of its last logbookMessages messages: the
// oldest are forgotten first, a message's later lines do not renew it, and
// its storage does not grow past the bound.
func TestLogBookBound(t *testing.T) {
	l := NewLogBook()
	const extra = 321
	id := func(i int) queue.ID { return queue.ID(fmt.Sprint("M", i)) }
	for i := range logbookMessages + extra {
		l.add(id(i), fmt.Sprint("received ", i))
		l.add(id(i), fmt.Sprint("delivered ", i))
	}
	if len(l.lines) != logbookMessages || len(l.order.ids) != logbookMessages {
		t.Fatalf("%d messages, order %d, want %d", len(l.lines), len(l.order.ids), logbookMessages)
	}
	for _, tc := range []struct {
		i    int
		kept bool
	}{{0, false}, {extra - 1, false}, {extra, true}, {logbookMessages + extra - 1, true}} {
		got := l.Lines(id(tc.i))
		if tc.kept != (len(got) == 2) || tc.kept && got[1] != fmt.Sprint("delivered ", tc.i) {
			t.Errorf("message %d: %q, kept %v", tc.i, got, tc.kept)
		}
	}
}

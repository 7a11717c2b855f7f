package dashboard

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

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
	if len(l.lines) != logbookMessages || l.order.n != logbookMessages {
		t.Fatalf("%d messages, order %d, want %d", len(l.lines), l.order.n, logbookMessages)
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

// The log book's text is bounded in bytes too: messages with long lines
// push the oldest out before logbookMessages is reached, a line longer
// than logbookLineMax is cut, and the count of bytes matches what is kept.
func TestLogBookBytes(t *testing.T) {
	l := NewLogBook()
	long := strings.Repeat("x", 1500)
	id := func(i int) queue.ID { return queue.ID(fmt.Sprint("M", i)) }
	n := 2 * logbookBytes / (logbookLines * len(long))
	for i := range n {
		for range logbookLines + 5 {
			l.add(id(i), long)
		}
	}
	if l.bytes > logbookBytes {
		t.Errorf("%d bytes kept, bound %d", l.bytes, logbookBytes)
	}
	sum := 0
	for _, ls := range l.lines {
		for _, s := range ls {
			sum += len(s)
		}
	}
	if sum != l.bytes || len(l.lines) != l.order.n {
		t.Errorf("counted %d bytes, hold %d; %d messages, order %d", l.bytes, sum, len(l.lines), l.order.n)
	}
	if len(l.lines) >= n || len(l.Lines(id(n-1))) != logbookLines || len(l.Lines(id(0))) != 0 {
		t.Errorf("%d of %d messages kept, last %d lines, first %d", len(l.lines), n, len(l.Lines(id(n-1))), len(l.Lines(id(0))))
	}
	l.add("BIG", strings.Repeat("y", 10*logbookLineMax))
	if got := l.Lines("BIG"); len(got[0]) != logbookLineMax || !strings.HasSuffix(got[0], cutMark) {
		t.Errorf("a long line kept as %d bytes, ending %q", len(got[0]), got[0][len(got[0])-10:])
	}
	l.add("UTF", strings.Repeat("é", logbookLineMax))
	if got := l.Lines("UTF"); !utf8.ValidString(got[0]) || len(got[0]) > logbookLineMax || !strings.HasSuffix(got[0], cutMark) {
		t.Errorf("a long line of two-byte characters kept as %d bytes, valid %v", len(got[0]), utf8.ValidString(got[0]))
	}
}

// idRing: push until full evicts the oldest, pop frees room, and pushes
// after pops keep the order (also when the ring must grow again).
func TestIDRing(t *testing.T) {
	var r idRing
	var got []queue.ID
	for _, id := range []queue.ID{"a", "b", "c"} {
		r.push(id, 4)
	}
	got = append(got, r.pop(), r.pop()) // a b
	for _, id := range []queue.ID{"d", "e", "f", "g"} {
		if old := r.push(id, 4); old != "" {
			got = append(got, "evicted:"+old)
		}
	}
	// c d e f held, g evicted c.
	for r.n > 0 {
		got = append(got, r.pop())
	}
	want := []queue.ID{"a", "b", "evicted:c", "d", "e", "f", "g"}
	if fmt.Sprint(got) != fmt.Sprint(want) || r.pop() != "" {
		t.Errorf("got %v, want %v", got, want)
	}
}

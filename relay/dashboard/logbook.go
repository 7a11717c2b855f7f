package dashboard

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"

	"facteur/queue"
	"facteur/relay/maillog"
)

const (
	// logbookMessages bounds how many messages' lines are kept: at about
	// ten lines of 200 bytes each, some 20 MB at worst.
	logbookMessages = 10000
	// logbookLines bounds the lines of one message (a recipient deferred
	// every few hours for days writes dozens).
	logbookLines = 100
	// logbookBytes bounds the text kept, whatever the lines are like: ten
	// thousand messages of a hundred lines of long replies each would be
	// hundreds of MB (the daemon's whole budget is 200). The oldest
	// messages go first.
	logbookBytes = 24 << 20
	// logbookLineMax cuts a line kept here (never the log itself): a
	// remote's multi-line reply can make one line kilobytes long.
	logbookLineMax = 2048
)

// LogBook keeps the event log lines of the last messages, by queue ID, so
// that the queue page shows a message's whole life as ops would grep it
// from the mainlog. The lines are formatted by maillog's text handler,
// whatever format the daemon writes.
type LogBook struct {
	mu    sync.Mutex // guards all below
	lines map[queue.ID][]string
	order idRing // the messages in arrival order, for eviction
	bytes int    // the length of every line in lines
}

// NewLogBook returns an empty log book.
func NewLogBook() *LogBook { return &LogBook{lines: map[queue.ID][]string{}} }

// Lines returns the log lines of message id, oldest first.
func (l *LogBook) Lines(id queue.ID) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines[id]...)
}

func (l *LogBook) add(id queue.ID, line string) {
	if len(line) > logbookLineMax {
		cut := logbookLineMax - len(cutMark)
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut-- // not inside a character
		}
		line = line[:cut] + cutMark
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, ok := l.lines[id]
	if !ok {
		if old := l.order.push(id, logbookMessages); old != "" {
			l.forget(old)
		}
	}
	if len(ls) >= logbookLines {
		l.bytes -= len(ls[0])
		ls = ls[1:]
	}
	l.lines[id] = append(ls, line)
	l.bytes += len(line)
	// Over the byte budget: forget the oldest messages, never the one
	// being written.
	for l.bytes > logbookBytes && l.order.n > 1 {
		old := l.order.pop()
		if old == id {
			l.order.push(id, logbookMessages)
			continue
		}
		l.forget(old)
	}
}

// cutMark ends a line the log book cut.
const cutMark = " …(cut)"

func (l *LogBook) forget(id queue.ID) {
	for _, s := range l.lines[id] {
		l.bytes -= len(s)
	}
	delete(l.lines, id)
}

// Handler wraps next: every record is passed on, and one with a queue ID
// is also kept.
func (l *LogBook) Handler(next slog.Handler) slog.Handler {
	if mh, ok := next.(*maillog.Handler); ok {
		// The text log: its lines are kept as written, formatted once.
		return mh.WithTap(func(qid, line string) { l.add(queue.ID(qid), line) })
	}
	return &bookHandler{book: l, next: next}
}

type bookHandler struct {
	book  *LogBook
	next  slog.Handler
	attrs []slog.Attr
	group string
}

func (h *bookHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return h.next.Enabled(ctx, lv)
}

func (h *bookHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.next = h.next.WithAttrs(as)
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &h2
}

func (h *bookHandler) WithGroup(name string) slog.Handler {
	h2 := *h
	h2.next = h.next.WithGroup(name)
	if h2.group != "" {
		name = h2.group + "." + name
	}
	h2.group = name
	return &h2
}

func (h *bookHandler) Handle(ctx context.Context, r slog.Record) error {
	var id string
	find := func(a slog.Attr) bool {
		if a.Key == "qid" {
			id = a.Value.String()
			return false
		}
		return true
	}
	for _, a := range h.attrs {
		if !find(a) {
			break
		}
	}
	if id == "" {
		r.Attrs(find)
	}
	if id != "" && id != "-" {
		var buf bytes.Buffer
		var th slog.Handler = maillog.New(&buf, "text").Handler()
		if len(h.attrs) > 0 {
			th = th.WithAttrs(h.attrs)
		}
		if th.Handle(ctx, r) == nil {
			h.book.add(queue.ID(id), strings.TrimRight(buf.String(), "\n"))
		}
	}
	return h.next.Handle(ctx, r)
}

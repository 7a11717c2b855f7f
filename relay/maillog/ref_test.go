package maillog

// refHandler is the text handler as it was before its allocations were cut
// (issue 19 item 6): the reference FuzzTextLine compares the handler with,
// line for line, and BenchmarkHandleRef measures.

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// refHandler is the old text handler.
type refHandler struct {
	w     io.Writer
	mu    *sync.Mutex // guards writes to w
	attrs []slog.Attr
	group string
	// tap, when set, also receives every line with a queue ID, as written
	// (without its newline): the dashboard's log book keeps a message's
	// lines without formatting them a second time.
	tap func(qid, line string)
}

// WithTap returns a copy of h that also hands each line with a queue ID to
// tap, in the order written.
func (h *refHandler) withTap(tap func(qid, line string)) *refHandler {
	h2 := *h
	h2.tap = tap
	return &h2
}

func (h *refHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *refHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &h2
}

func (h *refHandler) WithGroup(name string) slog.Handler {
	h2 := *h
	if h2.group != "" {
		name = h2.group + "." + name
	}
	h2.group = name
	return &h2
}

func (h *refHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	t := r.Time
	if t.IsZero() {
		// A log line's timestamp is the wall clock's, whatever clock the
		// caller decides by.
		t = time.Now()
	}
	var tb [32]byte
	b.Write(t.UTC().AppendFormat(tb[:0], "2006-01-02T15:04:05.000Z"))
	qid := "-"
	var rest []slog.Attr
	collect := func(a slog.Attr) bool {
		if a.Key == "qid" {
			if s := a.Value.String(); s != "" {
				qid = s
			}
			return true
		}
		rest = append(rest, a)
		return true
	}
	for _, a := range h.attrs {
		collect(a)
	}
	r.Attrs(collect)
	b.WriteByte(' ')
	b.WriteString(qid)
	b.WriteByte(' ')
	b.WriteString(r.Message)
	if r.Level >= slog.LevelWarn {
		b.WriteString(" level=" + strings.ToLower(r.Level.String()))
	}
	for _, a := range rest {
		refWriteAttr(&b, h.group, a)
	}
	b.WriteByte('\n')
	line := b.String()
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, line)
	if h.tap != nil && qid != "-" {
		h.tap(qid, line[:len(line)-1])
	}
	return err
}

func refWriteAttr(b *strings.Builder, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Key == "" && prefix == "" && a.Value.Kind() == slog.KindString {
		b.WriteByte(' ')
		b.WriteString(strings.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return ' ' // never a line break in the log
			}
			return r
		}, a.Value.String()))
		return
	}
	key := a.Key
	if prefix != "" {
		key = prefix + "." + key
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			refWriteAttr(b, key, g)
		}
		return
	}
	b.WriteByte(' ')
	b.WriteString(key)
	b.WriteByte('=')
	var s string
	switch a.Value.Kind() {
	case slog.KindTime:
		s = a.Value.Time().UTC().Format(time.RFC3339)
	case slog.KindDuration:
		s = a.Value.Duration().Round(time.Millisecond).String()
	default:
		s = a.Value.String()
	}
	b.WriteString(refQuote(s))
}

// quote leaves plain tokens bare and quotes anything with spaces, quotes,
// '=' or control characters, so that a remote reply stays on one line.
func refQuote(s string) string {
	if s == "" {
		return `""`
	}
	plain := true
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '=' || r == '\\' || r == utf8.RuneError || r == 0x7f {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return strconv.Quote(s)
}

// Package maillog writes facteur's event log: one line per event, starting
// with the time and the queue ID, then the event name and key=value fields,
// greppable like Exim's mainlog (STYLE.md §3):
//
//	2026-11-22T14:03:08.020Z 0G3ZK4R2Q8M1 deferred rcpt=<bob@yahoo.example> provider=yahoo ...
//
// Events are slog records whose message is the event name and whose "qid"
// attribute is the queue ID ("-" for provider events). The keys are listed
// in README.md; add keys, never rename one.
package maillog

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

// New returns a logger writing the text format to w, or slog's JSON format
// with the same keys when format is "json".
func New(w io.Writer, format string) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if len(groups) == 0 && a.Key == slog.MessageKey {
					a.Key = "event"
				}
				if a.Key == "" {
					a.Key = "detail" // a Prose attribute
				}
				return a
			},
		}))
	}
	return slog.New(&Handler{w: w, mu: &sync.Mutex{}})
}

// Handler is the text handler.
type Handler struct {
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
func (h *Handler) WithTap(tap func(qid, line string)) *Handler {
	h2 := *h
	h2.tap = tap
	return &h2
}

func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &h2
}

func (h *Handler) WithGroup(name string) slog.Handler {
	h2 := *h
	if h2.group != "" {
		name = h2.group + "." + name
	}
	h2.group = name
	return &h2
}

func (h *Handler) Handle(_ context.Context, r slog.Record) error {
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
		writeAttr(&b, h.group, a)
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

// Prose is words the text format writes as they are, without a key, after
// the key=value fields (the breaker's "of 63 recipients in 1h"); the JSON
// format writes them under "detail".
func Prose(s string) slog.Attr { return slog.String("", s) }

func writeAttr(b *strings.Builder, prefix string, a slog.Attr) {
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
			writeAttr(b, key, g)
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
	b.WriteString(quote(s))
}

// quote leaves plain tokens bare and quotes anything with spaces, quotes,
// '=' or control characters, so that a remote reply stays on one line.
func quote(s string) string {
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

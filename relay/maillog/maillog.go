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

// lineBufs holds the buffers lines are built in: a line is written with
// one Write and the buffer handed back, so that a busy relay's log costs
// no allocation per line. A writer never keeps the slice it is given
// (io.Writer's contract); the tap gets its own copy.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooledLine bounds the buffers kept for reuse: a line with a huge
// reply in it is not worth holding on to.
const maxPooledLine = 16 << 10

func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	t := r.Time
	if t.IsZero() {
		// A log line's timestamp is the wall clock's, whatever clock the
		// caller decides by.
		t = time.Now()
	}
	// The queue ID goes first whatever its place among the attributes: a
	// first pass finds it (the last non-empty one), the second writes the
	// others in order.
	qid := "-"
	findQID := func(a slog.Attr) bool {
		if a.Key == "qid" {
			if s := a.Value.String(); s != "" {
				qid = s
			}
		}
		return true
	}
	for _, a := range h.attrs {
		findQID(a)
	}
	r.Attrs(findQID)

	bp := lineBufs.Get().(*[]byte)
	b := appendStamp((*bp)[:0], t)
	b = append(b, ' ')
	b = append(b, qid...)
	b = append(b, ' ')
	b = append(b, r.Message...)
	if r.Level >= slog.LevelWarn {
		b = append(b, " level="...)
		b = append(b, strings.ToLower(r.Level.String())...)
	}
	for _, a := range h.attrs {
		if a.Key != "qid" {
			b = appendAttr(b, h.group, a)
		}
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "qid" {
			b = appendAttr(b, h.group, a)
		}
		return true
	})
	b = append(b, '\n')
	err := h.emit(qid, b)
	if cap(b) <= maxPooledLine {
		*bp = b[:0]
		lineBufs.Put(bp)
	}
	return err
}

// Prose is words the text format writes as they are, without a key, after
// the key=value fields (the breaker's "of 63 recipients in 1h"); the JSON
// format writes them under "detail".
func Prose(s string) slog.Attr { return slog.String("", s) }

// stampLayout is the time at the start of each line, in UTC.
const stampLayout = "2006-01-02T15:04:05.000Z"

// appendStamp appends t as stampLayout, digit by digit: time.AppendFormat
// interprets the layout at each call, most of the cost of a line.
// FuzzAppendStamp checks both agree.
func appendStamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, stampLayout) // not four digits
	}
	hour, min, sec := t.Clock()
	ms := t.Nanosecond() / 1e6 // truncated, as the layout's .000
	return append(b,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+min/10), byte('0'+min%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

func appendAttr(b []byte, prefix string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return b
	}
	if a.Key == "" && prefix == "" && a.Value.Kind() == slog.KindString {
		b = append(b, ' ')
		return append(b, strings.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return ' ' // never a line break in the log
			}
			return r
		}, a.Value.String())...)
	}
	if a.Value.Kind() == slog.KindGroup {
		key := a.Key
		if prefix != "" {
			key = prefix + "." + key
		}
		for _, g := range a.Value.Group() {
			b = appendAttr(b, key, g)
		}
		return b
	}
	b = append(b, ' ')
	if prefix != "" {
		b = append(b, prefix...)
		b = append(b, '.')
	}
	b = append(b, a.Key...)
	b = append(b, '=')
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		return appendQuoted(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10) // always plain
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindTime:
		// RFC 3339 in UTC: digits, '-', ':', 'T', 'Z', '.', never quoted.
		start := len(b)
		b = v.Time().UTC().AppendFormat(b, time.RFC3339)
		return requote(b, start)
	case slog.KindDuration:
		return appendQuoted(b, v.Duration().Round(time.Millisecond).String())
	default:
		return appendQuoted(b, v.String())
	}
}

// appendQuoted appends s, quoted when it is not a plain token.
func appendQuoted(b []byte, s string) []byte {
	if plain(s) {
		return append(b, s...)
	}
	return strconv.AppendQuote(b, s)
}

// requote quotes b[start:] in place when it is not a plain token.
func requote(b []byte, start int) []byte {
	if plain(string(b[start:])) {
		return b
	}
	s := string(b[start:])
	return strconv.AppendQuote(b[:start], s)
}

// plain reports whether s can stand bare in a line: not empty, and without
// spaces, quotes, '=', '\\', control or invalid characters, so that a
// remote reply stays on one line and key=value parsing stays unambiguous.
func plain(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '=' || r == '\\' || r == utf8.RuneError || r == 0x7f {
			return false
		}
	}
	return true
}

// emit writes one line and hands it to the tap, under the lock every
// derived handler shares: deferred, so that a panic in a writer or the tap,
// recovered by the goroutine that logged (an HTTP handler), cannot leave
// the lock held and every later log call of the daemon waiting.
func (h *Handler) emit(qid string, b []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(b)
	if h.tap != nil && qid != "-" {
		h.tap(qid, string(b[:len(b)-1]))
	}
	return err
}

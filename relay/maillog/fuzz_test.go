package maillog

import (
	"bytes"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"
)

// FuzzAppendStamp checks the hand-written line timestamp against
// time.AppendFormat, whatever the instant and zone.
func FuzzAppendStamp(f *testing.F) {
	for _, t := range []time.Time{
		time.Date(2026, 11, 22, 14, 3, 8, 20e6, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 6, 1, 0, 0, 0, 1, time.UTC),
		time.Unix(0, 0),
		{},
	} {
		f.Add(t.Unix(), int64(t.Nanosecond()), 0)
	}
	f.Add(int64(math.MaxInt64), int64(999999999), 3600)
	f.Add(int64(math.MinInt64), int64(0), -7200)
	f.Add(int64(1795000000), int64(5e5), 19800) // +05:30
	f.Fuzz(func(t *testing.T, sec, nsec int64, offset int) {
		tm := time.Unix(sec, nsec).In(time.FixedZone("z", offset%(26*3600)))
		want := tm.UTC().AppendFormat([]byte("x"), stampLayout)
		if got := appendStamp([]byte("x"), tm); !bytes.Equal(got, want) {
			t.Errorf("%v: got %q, want %q", tm, got, want)
		}
	})
}

// FuzzTextLine checks the text handler against the handler it replaced
// (refHandler): the same line, byte for byte, and the same line to the tap,
// for any message, keys, values of each kind, prose, groups and attributes
// given with With.
func FuzzTextLine(f *testing.F) {
	f.Add("delivered", "0G3ZK4R2Q8M1", "rcpt", "<bob@example.org>", "resp", "250 2.0.0 Ok", int64(4096), int64(3e9), int64(1795000000), "", uint8(0))
	f.Add("deferred", "", "k", "", "", "a=b", int64(-1), int64(-1500e6), int64(0), "of 63 recipients\nin 1h", uint8(1))
	f.Add("x", "q", "qid", "Q2", "g", "\xff\x00\"\\ é", int64(math.MinInt64), int64(math.MaxInt64), int64(-62135596800), "\x7f", uint8(2))
	f.Add("warned", "-", "", "v", "qid", "", int64(0), int64(1), int64(253402300800), "ok", uint8(3))
	f.Add("", "Q", "a", "\u2028", "b", "\uFFFD", int64(7), int64(999999), int64(1), "\xc3", uint8(4))
	f.Fuzz(func(t *testing.T, msg, qid, k1, v1, k2, v2 string, n, dur, unix int64, prose string, mode uint8) {
		at := time.Date(2026, 11, 22, 14, 3, 8, 20e6, time.UTC)
		level := slog.LevelInfo
		if mode&1 != 0 {
			level = slog.LevelWarn
		}
		attrs := []slog.Attr{
			slog.String(k1, v1),
			slog.String("qid", qid),
			slog.Int64("n", n),
			slog.Uint64("u", uint64(n)),
			slog.Float64("f", float64(n)/7),
			slog.Bool("ok", n%2 == 0),
			slog.Duration("delay", time.Duration(dur)),
			slog.Time("next", time.Unix(unix, dur%1e9)),
			slog.Any("err", stringer(v2)),
			slog.Group(k2, slog.String(k1, v2), slog.Int("i", int(n%1000))),
			slog.String(k2, v2),
			Prose(prose),
		}
		var with []slog.Attr
		if mode&2 != 0 {
			with = []slog.Attr{slog.String("qid", v1), slog.String("w", v2)}
		}
		group := ""
		if mode&4 != 0 {
			group = k2
		}
		type tapped struct{ qid, line string }
		run := func(h slog.Handler) string {
			var buf bytes.Buffer
			switch h := h.(type) {
			case *Handler:
				h.w = &buf
			case *refHandler:
				h.w = &buf
			}
			if with != nil {
				h = h.WithAttrs(with)
			}
			if group != "" {
				h = h.WithGroup(group)
			}
			r := slog.NewRecord(at, level, msg, 0)
			r.AddAttrs(attrs...)
			if err := h.Handle(t.Context(), r); err != nil {
				t.Fatal(err)
			}
			return buf.String()
		}
		var gotTaps, wantTaps []tapped
		got := run((&Handler{mu: &sync.Mutex{}}).WithTap(func(q, l string) { gotTaps = append(gotTaps, tapped{q, l}) }))
		want := run((&refHandler{mu: &sync.Mutex{}}).withTap(func(q, l string) { wantTaps = append(wantTaps, tapped{q, l}) }))
		if got != want {
			t.Fatalf("line differs:\ngot  %q\nwant %q", got, want)
		}
		if len(gotTaps) != len(wantTaps) || len(gotTaps) == 1 && gotTaps[0] != wantTaps[0] {
			t.Fatalf("tap differs: got %q, want %q", gotTaps, wantTaps)
		}
	})
}

type stringer string

func (s stringer) String() string { return string(s) }

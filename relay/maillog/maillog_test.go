package maillog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

func TestTextLine(t *testing.T) {
	at := time.Date(2026, 11, 22, 14, 3, 8, 20e6, time.UTC)
	tests := []struct {
		name  string
		event string
		attrs []any
		want  string
	}{
		{"deferred with reply", "deferred", []any{"qid", "0G3ZK4R2Q8M1", "rcpt", "<bob@yahoo.example>", "provider", "yahoo", "delay", 4*time.Hour + time.Second, "resp", "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred"},
			`2026-11-22T14:03:08.020Z 0G3ZK4R2Q8M1 deferred rcpt=<bob@yahoo.example> provider=yahoo delay=4h0m1s resp="421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred"` + "\n"},
		{"provider event has dash id", "suspended", []any{"provider", "free", "until", at.Add(15 * time.Minute)},
			"2026-11-22T14:03:08.020Z - suspended provider=free until=2026-11-22T14:18:08Z\n"},
		{"newline in value stays on one line", "bounced", []any{"qid", "X", "resp", "550 a\nb"},
			`2026-11-22T14:03:08.020Z X bounced resp="550 a\nb"` + "\n"},
		{"empty value", "received", []any{"qid", "X", "from", ""},
			`2026-11-22T14:03:08.020Z X received from=""` + "\n"},
		{"breaker line with prose", "breaker tripped", []any{"user", "www-data", "failed", "46%", "deferred", "12%", Prose("of 63 recipients\nin 1h")},
			"2026-11-22T14:03:08.020Z - breaker tripped user=www-data failed=46% deferred=12% of 63 recipients in 1h\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := New(&buf, "text").Handler()
			r := slog.NewRecord(at, slog.LevelInfo, tt.event, 0)
			r.Add(tt.attrs...)
			if err := h.Handle(t.Context(), r); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tt.want {
				t.Errorf("got  %q\nwant %q", buf.String(), tt.want)
			}
		})
	}
}

func TestJSONSameKeys(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, "json").Info("delivered", "qid", "ABC", "rcpt", "<a@b>")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["event"] != "delivered" || m["qid"] != "ABC" || m["rcpt"] != "<a@b>" {
		t.Errorf("got %v", m)
	}
}

func TestJSONProse(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, "json").Info("breaker tripped", "user", "www-data", Prose("of 63 recipients in 1h"))
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["event"] != "breaker tripped" || m["user"] != "www-data" || m["detail"] != "of 63 recipients in 1h" {
		t.Errorf("got %v", m)
	}
}

package suppress

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"facteur/queue"
	"facteur/relay/config"
)

func TestOwnAddress(t *testing.T) {
	cfg := config.Default()
	cfg.Hostname, cfg.LocalDomain = "web1.example.com", "example.com"
	tests := []struct {
		addr string
		own  bool
	}{
		{"root", true},
		{"root@web1.example.com", true},
		{"root@web1.example.com.", true},
		{"postmaster@EXAMPLE.com", true},
		{"root@localhost", true},
		{"bob@gmail.com", false},
		{"root@other.example", false},
	}
	for _, tc := range tests {
		if got := OwnAddress(cfg, tc.addr); got != tc.own {
			t.Errorf("OwnAddress(%q) = %v, want %v", tc.addr, got, tc.own)
		}
	}
	got := DropOwn(cfg, []queue.Suppression{{Address: "root@web1.example.com"}, {Address: "bob@gmail.com"}})
	if len(got) != 1 || got[0].Address != "bob@gmail.com" {
		t.Errorf("DropOwn = %+v", got)
	}
}

func TestCheck(t *testing.T) {
	t0 := time.Date(2026, 3, 8, 14, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		s    queue.Suppression
		err  string // "" when accepted
	}{
		{"plain", queue.Suppression{Address: "a@example.org"}, ""},
		{"every source", queue.Suppression{Address: "a@example.org", Source: queue.SourceFBL, Count: 3, FirstSeen: t0, LastSeen: t0}, ""},
		{"empty", queue.Suppression{}, "empty address"},
		{"no @", queue.Suppression{Address: "root"}, "has no @"},
		{"space", queue.Suppression{Address: "a b@example.org"}, "white space"},
		{"newline", queue.Suppression{Address: "a@example.org\n"}, "white space"},
		{"source", queue.Suppression{Address: "a@example.org", Source: "web"}, `source "web"`},
		{"count", queue.Suppression{Address: "a@example.org", Count: -1}, "negative count"},
		{"times", queue.Suppression{Address: "a@example.org", FirstSeen: t0.Add(time.Hour), LastSeen: t0}, "is after last_seen"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.s)
			if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Check(%+v) = %v, want %q", tc.s, err, tc.err)
			}
		})
	}
}

func TestParseImport(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		addrs []string // the entries read, when accepted
		errs  []string // each must be in the error
		first time.Time
	}{
		{"bare addresses", "a@example.org\n\nb@example.org\n", []string{"a@example.org", "b@example.org"}, nil, time.Time{}},
		{"header any order", "source,address\ndsn,c@example.org\n", []string{"c@example.org"}, nil, time.Time{}},
		{"BOM", "\ufeffaddress,first_seen\nx@y,2026-01-02T03:04:05+02:00\n", []string{"x@y"}, nil, time.Date(2026, 1, 2, 1, 4, 5, 0, time.UTC)},
		{"JSON", `[{"address":"j@example.org","reason":"user_unknown","source":"dsn"}]`, []string{"j@example.org"}, nil, time.Time{}},
		{"empty", "", nil, []string{"in.csv: empty file"}, time.Time{}},
		{"unknown column", "address,colour\na@example.org,red\n", nil, []string{`in.csv:1: unknown column "colour"`}, time.Time{}},
		{"column twice", "address,address\n", nil, []string{`in.csv:1: column "address" twice`}, time.Time{}},
		{"no address", "reason\nmanual\n", nil, []string{"in.csv:1: no address column"}, time.Time{}},
		{"every bad line", "address,count,first_seen\na@example.org,-1,\nroot,1,yesterday\n", nil,
			[]string{`in.csv:2: count "-1"`, `in.csv:3: first_seen "yesterday" is not an RFC 3339 time`, `in.csv:3: address "root" has no @`}, time.Time{}},
		{"JSON bad entry", `[{"address":"ok@example.org"},{"address":"bad"}]`, nil, []string{`in.csv: entry 2: address "bad" has no @`}, time.Time{}},
		{"JSON broken", `[{"address":`, nil, []string{"in.csv: unexpected end of JSON input"}, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			list, err := ParseImport("in.csv", []byte(tc.data))
			if tc.errs != nil {
				if err == nil {
					t.Fatalf("accepted %q: %+v", tc.data, list)
				}
				for _, e := range tc.errs {
					if !strings.Contains(err.Error(), e) {
						t.Errorf("error %q lacks %q", err, e)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range list {
				got = append(got, s.Address)
				if !s.FirstSeen.Equal(tc.first) {
					t.Errorf("%s: first_seen %v, want %v", s.Address, s.FirstSeen, tc.first)
				}
			}
			if !slices.Equal(got, tc.addrs) {
				t.Errorf("read %v, want %v", got, tc.addrs)
			}
		})
	}
}

// TestApply: merged entries keep first_seen and count up, imported ones
// are stored as given; the defaults fill what is missing; only active
// entries have their queued mail cancelled, with the reason and response
// as the DSN's text.
func TestApply(t *testing.T) {
	t0 := time.Date(2026, 3, 8, 14, 0, 0, 0, time.UTC)
	type call struct{ addr, why string }
	tests := []struct {
		name      string
		replace   bool
		list      []queue.Suppression
		want      []queue.Suppression
		cancelled []call
	}{
		{"defaults", false, []queue.Suppression{{Address: "A@Example.org"}},
			[]queue.Suppression{{Address: "a@example.org", Reason: ManualReason, Source: queue.SourceManual, FirstSeen: t0, LastSeen: t0, Count: 1}},
			[]call{{"a@example.org", "manual"}}},
		{"merged twice", false, []queue.Suppression{
			{Address: "b@example.org", Reason: "user_unknown", Response: "550 5.1.1 no", Source: queue.SourceDSN, LastSeen: t0.Add(-time.Hour)},
			{Address: "b@example.org", Reason: "user_unknown", Response: "550 5.1.1 no", Source: queue.SourceDSN}},
			[]queue.Suppression{
				{Address: "b@example.org", Reason: "user_unknown", Response: "550 5.1.1 no", Source: queue.SourceDSN, FirstSeen: t0.Add(-time.Hour), LastSeen: t0.Add(-time.Hour), Count: 1},
				{Address: "b@example.org", Reason: "user_unknown", Response: "550 5.1.1 no", Source: queue.SourceDSN, FirstSeen: t0.Add(-time.Hour), LastSeen: t0, Count: 2}},
			[]call{{"b@example.org", "user_unknown: 550 5.1.1 no"}, {"b@example.org", "user_unknown: 550 5.1.1 no"}}},
		{"import as given, expired not cancelled", true, []queue.Suppression{
			{Address: " C@example.org", Reason: "host_unknown", Source: queue.SourceDSN, FirstSeen: t0.Add(-48 * time.Hour), LastSeen: t0.Add(-24 * time.Hour), Expires: t0.Add(-time.Hour), Count: 7},
			{Address: "d@example.org", LastSeen: t0.Add(-time.Hour), Count: 2}},
			[]queue.Suppression{
				{Address: "c@example.org", Reason: "host_unknown", Source: queue.SourceDSN, FirstSeen: t0.Add(-48 * time.Hour), LastSeen: t0.Add(-24 * time.Hour), Expires: t0.Add(-time.Hour), Count: 7},
				{Address: "d@example.org", Reason: ManualReason, Source: queue.SourceManual, FirstSeen: t0.Add(-time.Hour), LastSeen: t0.Add(-time.Hour), Count: 2}},
			[]call{{"d@example.org", "manual"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			var calls []call
			var added []string
			cancel := func(_ context.Context, addr, why string, now time.Time) (int, error) {
				if !now.Equal(t0) {
					t.Errorf("cancelled at %v, want %v", now, t0)
				}
				calls = append(calls, call{addr, why})
				return 1, nil
			}
			res, err := Apply(t.Context(), store, tc.list, tc.replace, t0, func(s queue.Suppression) { added = append(added, s.Address) }, cancel)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Suppressed) != len(tc.want) {
				t.Fatalf("suppressed %+v, want %+v", res.Suppressed, tc.want)
			}
			for i, s := range res.Suppressed {
				w := tc.want[i]
				if s.Address != w.Address || s.Reason != w.Reason || s.Response != w.Response || s.Source != w.Source || s.Count != w.Count ||
					!s.FirstSeen.Equal(w.FirstSeen) || !s.LastSeen.Equal(w.LastSeen) || !s.Expires.Equal(w.Expires) {
					t.Errorf("entry %d: %+v, want %+v", i, s, w)
				}
				if added[i] != w.Address {
					t.Errorf("added saw %v", added)
				}
			}
			if !slices.Equal(calls, tc.cancelled) || res.Cancelled != len(tc.cancelled) {
				t.Errorf("cancelled %+v (%d), want %+v", calls, res.Cancelled, tc.cancelled)
			}
			stored, err := store.Suppressions(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if last := res.Suppressed[len(res.Suppressed)-1]; !slices.ContainsFunc(stored, func(s queue.Suppression) bool { return s.Address == last.Address && s.Count == last.Count }) {
				t.Errorf("store holds %+v, want %+v among them", stored, last)
			}
		})
	}
}

// TestLocal: the CLI's list while the daemon is down: nothing before the
// database exists, then add, list and remove through it.
func TestLocal(t *testing.T) {
	cfg := config.Default()
	cfg.Hostname = "web1.example.com"
	path := filepath.Join(t.TempDir(), "q.db")
	exists := false
	var log strings.Builder
	l := Local{Config: cfg, LogTo: &log, Open: func(create bool) (*queue.Store, error) {
		if !exists && !create {
			return nil, nil
		}
		exists = true
		return queue.Open(path, queue.Options{NoSync: true})
	}}
	ctx := t.Context()
	t0 := time.Date(2026, 3, 8, 14, 0, 0, 0, time.UTC)
	steps := []struct {
		name string
		do   func() error
		list []string // the list afterwards
		err  string
	}{
		{"remove, no database", func() error { return l.Remove(ctx, "A@example.org") }, nil, "a@example.org is not suppressed"},
		{"add", func() error {
			_, err := l.Add(ctx, []queue.Suppression{{Address: "a@example.org"}, {Address: "b@example.org", Expires: t0}}, false, t0)
			return err
		}, []string{"a@example.org", "b@example.org"}, ""},
		{"remove", func() error { return l.Remove(ctx, "A@example.org") }, []string{"b@example.org"}, ""},
		{"remove again", func() error { return l.Remove(ctx, "a@example.org") }, []string{"b@example.org"}, "a@example.org is not suppressed"},
	}
	for _, st := range steps {
		err := st.do()
		if (err == nil) != (st.err == "") || err != nil && err.Error() != st.err {
			t.Fatalf("%s: %v, want %q", st.name, err, st.err)
		}
		list, err := l.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range list {
			got = append(got, s.Address)
		}
		if !slices.Equal(got, st.list) {
			t.Errorf("%s: list %v, want %v", st.name, got, st.list)
		}
		if active := Active(list, t0); len(active) != len(slices.DeleteFunc(slices.Clone(st.list), func(a string) bool { return a == "b@example.org" })) {
			t.Errorf("%s: active %v", st.name, active)
		}
	}
}

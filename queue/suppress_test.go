package queue

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestSuppressMerge(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	first, err := s.Suppress(ctx, Suppression{Address: " Bob@Example.COM ", Reason: "user_unknown", Response: "550 5.1.1 no such user", Source: SourceSMTP, LastSeen: t0})
	if err != nil {
		t.Fatal(err)
	}
	want := Suppression{Address: "bob@example.com", Reason: "user_unknown", Response: "550 5.1.1 no such user", Source: SourceSMTP, FirstSeen: t0, LastSeen: t0, Count: 1}
	if first != want {
		t.Errorf("first Suppress = %+v\nwant %+v", first, want)
	}
	later := t0.Add(time.Hour)
	second, err := s.Suppress(ctx, Suppression{Address: "bob@example.com", Reason: "spam_complaint", Response: "abuse report", Source: SourceFBL, FirstSeen: later, LastSeen: later, Expires: later.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	want = Suppression{Address: "bob@example.com", Reason: "spam_complaint", Response: "abuse report", Source: SourceFBL, FirstSeen: t0, LastSeen: later, Expires: later.Add(24 * time.Hour), Count: 2}
	if second != want {
		t.Errorf("merged Suppress = %+v\nwant %+v", second, want)
	}
	all, err := s.Suppressions(ctx)
	if err != nil || len(all) != 1 || all[0] != want {
		t.Errorf("Suppressions = %+v, %v", all, err)
	}
}

func TestSuppressInvalid(t *testing.T) {
	tests := []struct {
		name string
		s    Suppression
	}{
		{"empty address", Suppression{Source: SourceManual, LastSeen: t0}},
		{"unknown source", Suppression{Address: "a@x.example", Source: "api", LastSeen: t0}},
		{"no time", Suppression{Address: "a@x.example", Source: SourceManual}},
		{"NUL", Suppression{Address: "a\x00@x.example", Source: SourceManual, LastSeen: t0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, Options{NoSync: true})
			if _, err := s.Suppress(t.Context(), tt.s); !errors.Is(err, ErrInvalid) {
				t.Errorf("Suppress = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestSuppressedLookup(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	exp := t0.Add(time.Hour)
	if _, err := s.Suppress(ctx, Suppression{Address: "temp@x.example", Source: SourceDSN, LastSeen: t0, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Suppress(ctx, Suppression{Address: "perm@x.example", Source: SourceManual, LastSeen: t0}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		now  time.Time
		want bool
	}{
		{"temp@x.example", t0, true},
		{"TEMP@X.example", t0, true},
		{"temp@x.example", exp.Add(-time.Nanosecond), true},
		{"temp@x.example", exp, false},
		{"perm@x.example", t0.Add(100 * 365 * 24 * time.Hour), true},
		{"other@x.example", t0, false},
	}
	for _, tt := range tests {
		t.Run(tt.addr+" at "+tt.now.Format(time.RFC3339Nano), func(t *testing.T) {
			got, ok, err := s.Suppressed(ctx, tt.addr, tt.now)
			if err != nil || ok != tt.want {
				t.Fatalf("Suppressed = %+v, %v, %v; want %v", got, ok, err, tt.want)
			}
			if ok && got.Address != addrNorm(tt.addr) {
				t.Errorf("address = %q", got.Address)
			}
		})
	}
}

func TestPutSuppressionAndUnsuppress(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	imp := Suppression{Address: "Z@x.example", Reason: "user_unknown", Source: SourceManual, FirstSeen: t0.Add(-time.Hour), LastSeen: t0, Count: 7}
	if err := s.PutSuppression(ctx, imp); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSuppression(ctx, Suppression{Address: "a@x.example", Source: SourceDSN, LastSeen: t0, Count: 1}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Suppressions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	imp.Address = "z@x.example"
	if len(all) != 2 || all[0].Address != "a@x.example" || all[1] != imp {
		t.Errorf("Suppressions = %+v; want a@ then the import stored as given", all)
	}
	if err := s.PutSuppression(ctx, Suppression{Address: "n@x.example", Source: SourceManual, Count: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative count = %v", err)
	}
	for _, tt := range []struct {
		addr string
		want bool
	}{{"Z@X.EXAMPLE", true}, {"z@x.example", false}, {"never@x.example", false}} {
		if got, err := s.Unsuppress(ctx, tt.addr); got != tt.want || err != nil {
			t.Errorf("Unsuppress(%s) = %v, %v; want %v", tt.addr, got, err, tt.want)
		}
	}
}

func TestCancelSuppressed(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	only := enqueue(t, s, t0, "Bob@x.example")                         // every recipient suppressed: removed
	mixed := enqueue(t, s, t0, "bob@x.example", "alice@x.example")     // one cancelled, message stays
	held := enqueue(t, s, t0, "bob@X.example", "carol@x.example")      // held recipients are cancelled too
	done := enqueue(t, s, t0, "bob@x.example", "dave@x.example")       // already delivered: untouched
	other := enqueue(t, s, t0, "bobby@x.example", "bob@x.example.net") // prefix look-alikes: untouched
	if err := s.Hold(ctx, held); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, done, []Update{{Rcpt: "bob@x.example", Status: Delivered}}); err != nil {
		t.Fatal(err)
	}

	if _, err := s.CancelSuppressed(ctx, "bob@x.example", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("CancelSuppressed without a suppression = %v, want ErrNotFound", err)
	}
	if _, err := s.Suppress(ctx, Suppression{Address: "BOB@x.example", Reason: "user_unknown", Response: "550 5.1.1 gone", Source: SourceSMTP, LastSeen: t0}); err != nil {
		t.Fatal(err)
	}
	got, err := s.CancelSuppressed(ctx, "bob@x.example", t0)
	if err != nil {
		t.Fatal(err)
	}
	want := []Cancelled{
		{ID: only, Sender: "app@example.org", Rcpt: "Bob@x.example"},
		{ID: mixed, Sender: "app@example.org", Rcpt: "bob@x.example"},
		{ID: held, Sender: "app@example.org", Rcpt: "bob@X.example"},
	}
	slices.SortFunc(got, func(a, b Cancelled) int { return compareID(a.ID, b.ID) })
	if !slices.Equal(got, want) {
		t.Errorf("CancelSuppressed = %+v\nwant %+v", got, want)
	}
	if _, err := s.Get(ctx, only); !errors.Is(err, ErrNotFound) {
		t.Errorf("message with only suppressed recipients still stored: %v", err)
	}
	r := rcpt(t, get(t, s, mixed), "bob@x.example")
	if r.Status != Suppressed || r.Class != "user_unknown" || r.LastResponse != "550 5.1.1 gone" {
		t.Errorf("cancelled recipient = %+v", r)
	}
	if st := rcpt(t, get(t, s, mixed), "alice@x.example").Status; st != Queued {
		t.Errorf("other recipient = %s", st)
	}
	if st := rcpt(t, get(t, s, held), "carol@x.example").Status; st != Held {
		t.Errorf("held neighbour = %s", st)
	}
	if st := rcpt(t, get(t, s, done), "bob@x.example").Status; st != Delivered {
		t.Errorf("delivered recipient became %s", st)
	}
	for _, r := range get(t, s, other).Recipients {
		if r.Status != Queued {
			t.Errorf("look-alike %s became %s", r.Address, r.Status)
		}
	}
	if again, err := s.CancelSuppressed(ctx, "bob@x.example", t0); err != nil || len(again) != 0 {
		t.Errorf("second CancelSuppressed = %v, %v; want nothing", again, err)
	}
}

func compareID(a, b ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestState(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	val := []byte("level=3")
	if err := s.PutState(ctx, "policy/backoff/yahoo", val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the store kept its own copy
	for k, v := range map[string]string{"policy/backoff/gmail": "level=1", "policy/suspend/yahoo": "until", "webhook/1": "", "policy/zz": "z"} {
		if err := s.PutState(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutState(ctx, "policy/zz", nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		want string
		err  error
	}{
		{"policy/backoff/yahoo", "level=3", nil},
		{"webhook/1", "", nil},
		{"policy/zz", "", ErrNotFound},
		{"nope", "", ErrNotFound},
	}
	for _, tt := range tests {
		v, err := s.State(ctx, tt.key)
		if string(v) != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("State(%s) = %q, %v; want %q, %v", tt.key, v, err, tt.want, tt.err)
		}
	}
	got, err := s.States(ctx, "policy/backoff/")
	if err != nil || len(got) != 2 || string(got["policy/backoff/gmail"]) != "level=1" {
		t.Errorf("States(prefix) = %q, %v", got, err)
	}
	if all, _ := s.States(ctx, ""); len(all) != 4 {
		t.Errorf("States(\"\") = %q, want 4 keys", all)
	}
	for _, bad := range []string{"", string(make([]byte, maxStateKey+1))} {
		if err := s.PutState(ctx, bad, []byte("x")); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutState(%d-byte key) = %v, want ErrInvalid", len(bad), err)
		}
	}
}

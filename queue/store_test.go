package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestEnqueueGet(t *testing.T) {
	tests := []struct {
		name      string
		env       Envelope
		wantRcpts []string
	}{
		{"one recipient", Envelope{Sender: "a@example.org", Recipients: []string{"b@example.com"}}, []string{"b@example.com"}},
		{"null sender DSN", Envelope{Sender: "", Recipients: []string{"b@example.com"}, IsDSN: true}, []string{"b@example.com"}},
		{"exact duplicates collapse", Envelope{Sender: "a@example.org", Recipients: []string{"b@x.example", "c@x.example", "b@x.example"}}, []string{"b@x.example", "c@x.example"}},
		{"case variants stay distinct recipients", Envelope{Sender: "a@example.org", Recipients: []string{"Bob@x.example", "bob@x.example"}}, []string{"Bob@x.example", "bob@x.example"}},
		{"all metadata", Envelope{Sender: "a@example.org", Recipients: []string{"ü@x.example"}, ClientIP: "127.0.0.1", Helo: "web1", AuthUser: "php", SMTPUTF8: true, EightBit: true, Expires: t0.Add(5 * 24 * time.Hour)}, []string{"ü@x.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, Options{NoSync: true})
			body := []byte("Subject: " + tt.name + "\r\n\r\nhello\r\n")
			id, err := s.Enqueue(t.Context(), tt.env, body, t0)
			if err != nil {
				t.Fatal(err)
			}
			m := get(t, s, id)
			want := Message{
				ID: id, Sender: tt.env.Sender, Size: int64(len(body)), Created: t0, ClientIP: tt.env.ClientIP,
				Helo: tt.env.Helo, AuthUser: tt.env.AuthUser, SMTPUTF8: tt.env.SMTPUTF8, EightBit: tt.env.EightBit,
				IsDSN: tt.env.IsDSN, Expires: tt.env.Expires,
			}
			for _, a := range tt.wantRcpts {
				want.Recipients = append(want.Recipients, Recipient{Address: a, Status: Queued, NextAttempt: t0})
			}
			if !equalJSON(t, m, want) {
				t.Errorf("Get = %+v\nwant %+v", m, want)
			}
			got, err := s.Body(t.Context(), id)
			if err != nil || !bytes.Equal(got, body) {
				t.Errorf("Body = %q, %v; want %q", got, err, body)
			}
			if d := dueAll(t, s); len(d) != len(tt.wantRcpts) {
				t.Errorf("due entries = %v, want one per recipient", d)
			}
		})
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

func TestEnqueueInvalid(t *testing.T) {
	ok := []string{"b@example.com"}
	tests := []struct {
		name string
		env  Envelope
		now  time.Time
	}{
		{"no recipients", Envelope{Sender: "a@example.org"}, t0},
		{"empty recipient", Envelope{Recipients: []string{"b@x.example", ""}}, t0},
		{"NUL in recipient", Envelope{Recipients: []string{"b\x00@x.example"}}, t0},
		{"CRLF in recipient", Envelope{Recipients: []string{"b@x.example\r\nRCPT TO:<c@y>"}}, t0},
		{"NUL in sender", Envelope{Sender: "a\x00@x", Recipients: ok}, t0},
		{"huge recipient", Envelope{Recipients: []string{strings.Repeat("a", 2000) + "@x.example"}}, t0},
		{"zero time", Envelope{Recipients: ok}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, Options{NoSync: true})
			id, err := s.Enqueue(t.Context(), tt.env, []byte("x"), tt.now)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Enqueue = %q, %v; want ErrInvalid", id, err)
			}
			if st, _ := s.Stats(t.Context()); st.Messages != 0 {
				t.Errorf("stored %d messages", st.Messages)
			}
		})
	}
}

func TestEnqueueCancelledContext(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Enqueue(ctx, Envelope{Recipients: []string{"b@x.example"}}, nil, t0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue with cancelled ctx = %v", err)
	}
}

func TestRecord(t *testing.T) {
	later := t0.Add(time.Hour)
	tests := []struct {
		name    string
		rcpts   []string
		steps   [][]Update // each applied with one Record call
		wantErr error      // of the last step
		gone    bool       // message deleted at the end
		want    map[string]Recipient
	}{
		{
			name:  "deferred moves the due entry and counts the attempt",
			rcpts: []string{"a@x.example"},
			steps: [][]Update{{{Rcpt: "a@x.example", Status: Deferred, NextAttempt: later, Response: "421 4.7.0 try later", Class: "rate_limited", Provider: "yahoo", Attempted: true, At: t0}}},
			want:  map[string]Recipient{"a@x.example": {Address: "a@x.example", Status: Deferred, Provider: "yahoo", Attempts: 1, NextAttempt: later, LastAttempt: t0, LastResponse: "421 4.7.0 try later", Class: "rate_limited"}},
		},
		{
			name:  "empty response, class and provider keep the last ones",
			rcpts: []string{"a@x.example"},
			steps: [][]Update{
				{{Rcpt: "a@x.example", Status: Deferred, NextAttempt: later, Response: "421 first", Class: "c1", Provider: "p1", Attempted: true, At: t0}},
				{{Rcpt: "a@x.example", Status: Deferred, NextAttempt: later.Add(time.Hour), Attempted: true, At: later}},
			},
			want: map[string]Recipient{"a@x.example": {Address: "a@x.example", Status: Deferred, Provider: "p1", Attempts: 2, NextAttempt: later.Add(time.Hour), LastAttempt: later, LastResponse: "421 first", Class: "c1"}},
		},
		{
			name:  "one delivered one deferred keeps the message",
			rcpts: []string{"a@x.example", "b@y.example"},
			steps: [][]Update{{
				{Rcpt: "a@x.example", Status: Delivered, Response: "250 ok", Attempted: true, At: t0},
				{Rcpt: "b@y.example", Status: Deferred, NextAttempt: later, Attempted: true, At: t0},
			}},
			want: map[string]Recipient{
				"a@x.example": {Address: "a@x.example", Status: Delivered, Attempts: 1, LastAttempt: t0, LastResponse: "250 ok"},
				"b@y.example": {Address: "b@y.example", Status: Deferred, Attempts: 1, NextAttempt: later, LastAttempt: t0},
			},
		},
		{
			name:  "final recipient is never changed back",
			rcpts: []string{"a@x.example", "b@y.example"},
			steps: [][]Update{
				{{Rcpt: "a@x.example", Status: Delivered, Response: "250 ok", Attempted: true, At: t0}},
				{{Rcpt: "a@x.example", Status: Deferred, NextAttempt: later, Response: "421 late", Attempted: true, At: later}},
			},
			want: map[string]Recipient{
				"a@x.example": {Address: "a@x.example", Status: Delivered, Attempts: 1, LastAttempt: t0, LastResponse: "250 ok"},
				"b@y.example": {Address: "b@y.example", Status: Queued, NextAttempt: t0},
			},
		},
		{
			name:  "held recipient stays held on a deferral but takes a final outcome",
			rcpts: []string{"a@x.example", "b@y.example"},
			steps: [][]Update{
				{{Rcpt: "a@x.example", Status: Held}, {Rcpt: "b@y.example", Status: Held}},
				{
					{Rcpt: "a@x.example", Status: Deferred, NextAttempt: later, Response: "421 busy", Attempted: true, At: t0},
					{Rcpt: "b@y.example", Status: Delivered, Response: "250 ok", Attempted: true, At: t0},
				},
			},
			want: map[string]Recipient{
				"a@x.example": {Address: "a@x.example", Status: Held, Attempts: 1, LastAttempt: t0, LastResponse: "421 busy"},
				"b@y.example": {Address: "b@y.example", Status: Delivered, Attempts: 1, LastAttempt: t0, LastResponse: "250 ok"},
			},
		},
		{
			name:  "all final deletes the message",
			rcpts: []string{"a@x.example", "b@y.example"},
			steps: [][]Update{{
				{Rcpt: "a@x.example", Status: Delivered, Attempted: true, At: t0},
				{Rcpt: "b@y.example", Status: Bounced, Response: "550 5.1.1 no such user", Attempted: true, At: t0},
			}},
			gone: true,
		},
		{
			name:    "unknown recipient changes nothing",
			rcpts:   []string{"a@x.example"},
			steps:   [][]Update{{{Rcpt: "a@x.example", Status: Delivered}, {Rcpt: "zz@x.example", Status: Delivered}}},
			wantErr: ErrNotFound,
			want:    map[string]Recipient{"a@x.example": {Address: "a@x.example", Status: Queued, NextAttempt: t0}},
		},
		{
			name:    "deferred without next attempt",
			rcpts:   []string{"a@x.example"},
			steps:   [][]Update{{{Rcpt: "a@x.example", Status: Deferred}}},
			wantErr: ErrInvalid,
			want:    map[string]Recipient{"a@x.example": {Address: "a@x.example", Status: Queued, NextAttempt: t0}},
		},
		{
			name:    "unknown status",
			rcpts:   []string{"a@x.example"},
			steps:   [][]Update{{{Rcpt: "a@x.example", Status: "sent"}}},
			wantErr: ErrInvalid,
			want:    map[string]Recipient{"a@x.example": {Address: "a@x.example", Status: Queued, NextAttempt: t0}},
		},
		{
			name:    "attempt without time",
			rcpts:   []string{"a@x.example"},
			steps:   [][]Update{{{Rcpt: "a@x.example", Status: Delivered, Attempted: true}}},
			wantErr: ErrInvalid,
			want:    map[string]Recipient{"a@x.example": {Address: "a@x.example", Status: Queued, NextAttempt: t0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, Options{NoSync: true})
			id := enqueue(t, s, t0, tt.rcpts...)
			var err error
			for _, u := range tt.steps {
				err = s.Record(t.Context(), id, u)
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Record = %v, want %v", err, tt.wantErr)
			}
			m, err := s.Get(t.Context(), id)
			if tt.gone {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Get after all final = %v, want ErrNotFound", err)
				}
				if _, err := s.Body(t.Context(), id); !errors.Is(err, ErrNotFound) {
					t.Errorf("Body after all final = %v, want ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for addr, want := range tt.want {
				got := rcpt(t, m, addr)
				got.History = nil // TestRecordHistory checks it
				if !equalJSON(t, got, want) {
					t.Errorf("%s = %+v\nwant %+v", addr, got, want)
				}
			}
		})
	}
}

func TestRecordUnknownMessage(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	err := s.Record(t.Context(), NewID(t0), []Update{{Rcpt: "a@x.example", Status: Delivered}})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Record on unknown message = %v, want ErrNotFound", err)
	}
}

func TestDue(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	a := enqueue(t, s, t0, "a1@x.example", "a2@x.example")
	b := enqueue(t, s, t0.Add(time.Second), "b@x.example")
	c := enqueue(t, s, t0.Add(2*time.Second), "c@x.example")
	// c is due much later, a2 a bit later.
	if err := s.Record(t.Context(), c, []Update{{Rcpt: "c@x.example", Status: Deferred, NextAttempt: t0.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(t.Context(), a, []Update{{Rcpt: "a2@x.example", Status: Deferred, NextAttempt: t0.Add(3 * time.Second)}}); err != nil {
		t.Fatal(err)
	}
	skipB := func(id ID, _ string) bool { return id == b }
	tests := []struct {
		name string
		now  time.Time
		max  int
		skip func(ID, string) bool
		want []Due
	}{
		{"before anything", t0.Add(-time.Second), 10, nil, nil},
		{"boundary is inclusive", t0, 10, nil, []Due{{a, "a1@x.example", t0}}},
		{"time order", t0.Add(3 * time.Second), 10, nil, []Due{{a, "a1@x.example", t0}, {b, "b@x.example", t0.Add(time.Second)}, {a, "a2@x.example", t0.Add(3 * time.Second)}}},
		{"max", t0.Add(time.Hour), 2, nil, []Due{{a, "a1@x.example", t0}, {b, "b@x.example", t0.Add(time.Second)}}},
		{"skip in-flight", t0.Add(time.Hour), 10, skipB, []Due{{a, "a1@x.example", t0}, {a, "a2@x.example", t0.Add(3 * time.Second)}, {c, "c@x.example", t0.Add(time.Hour)}}},
		{"zero max", t0.Add(time.Hour), 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Due(t.Context(), tt.now, tt.max, tt.skip)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tt.want, func(x, y Due) bool { return x.ID == y.ID && x.Rcpt == y.Rcpt && x.At.Equal(y.At) }) {
				t.Errorf("Due = %v\nwant %v", got, tt.want)
			}
		})
	}
	at, ok, err := s.NextDue(t.Context())
	if err != nil || !ok || !at.Equal(t0) {
		t.Errorf("NextDue = %v, %v, %v; want %v", at, ok, err, t0)
	}
}

func TestNextDueEmpty(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	if _, ok, err := s.NextDue(t.Context()); ok || err != nil {
		t.Errorf("NextDue on empty queue = %v, %v", ok, err)
	}
}

func TestHoldReleaseFlush(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	id := enqueue(t, s, t0, "a@x.example", "b@x.example", "c@x.example")
	later := t0.Add(4 * time.Hour)
	if err := s.Record(ctx, id, []Update{
		{Rcpt: "a@x.example", Status: Deferred, NextAttempt: later, Attempted: true, At: t0},
		{Rcpt: "c@x.example", Status: Delivered, Attempted: true, At: t0},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Hold(ctx, id); err != nil {
		t.Fatal(err)
	}
	m := get(t, s, id)
	for addr, want := range map[string]Status{"a@x.example": Held, "b@x.example": Held, "c@x.example": Delivered} {
		if got := rcpt(t, m, addr); got.Status != want || !got.NextAttempt.IsZero() {
			t.Errorf("after Hold %s = %s next %v, want %s unscheduled", addr, got.Status, got.NextAttempt, want)
		}
	}
	if d := dueAll(t, s); len(d) != 0 {
		t.Errorf("held message still due: %v", d)
	}
	if n, err := s.Flush(ctx, "", t0); n != 0 || err != nil {
		t.Errorf("Flush of held queue = %d, %v", n, err)
	}
	rel := t0.Add(time.Minute)
	if err := s.Release(ctx, id, rel); err != nil {
		t.Fatal(err)
	}
	m = get(t, s, id)
	for addr, want := range map[string]Status{"a@x.example": Deferred, "b@x.example": Queued, "c@x.example": Delivered} {
		if got := rcpt(t, m, addr); got.Status != want {
			t.Errorf("after Release %s = %s, want %s", addr, got.Status, want)
		}
	}
	if got := rcpt(t, m, "a@x.example").NextAttempt; !got.Equal(rel) {
		t.Errorf("released next attempt = %v, want %v", got, rel)
	}
	// Push a out, then flush the message and the whole queue.
	if err := s.Record(ctx, id, []Update{{Rcpt: "a@x.example", Status: Deferred, NextAttempt: later}}); err != nil {
		t.Fatal(err)
	}
	other := enqueue(t, s, t0, "d@y.example")
	if err := s.Record(ctx, other, []Update{{Rcpt: "d@y.example", Status: Deferred, NextAttempt: later}}); err != nil {
		t.Fatal(err)
	}
	flushAt := t0.Add(2 * time.Minute)
	if n, err := s.Flush(ctx, id, flushAt); n != 1 || err != nil {
		t.Fatalf("Flush(id) = %d, %v; want 1", n, err)
	}
	if got := rcpt(t, get(t, s, id), "a@x.example").NextAttempt; !got.Equal(flushAt) {
		t.Errorf("flushed next attempt = %v, want %v", got, flushAt)
	}
	if got := rcpt(t, get(t, s, id), "b@x.example").NextAttempt; !got.Equal(rel) {
		t.Errorf("already-due recipient moved by Flush to %v, want %v", got, rel)
	}
	if n, err := s.Flush(ctx, "", flushAt); n != 1 || err != nil {
		t.Fatalf("Flush(all) = %d, %v; want 1 (only the other message was later)", n, err)
	}
	due, err := s.Due(ctx, flushAt, 100, nil)
	if err != nil || len(due) != 3 {
		t.Errorf("due after flush = %v, %v; want a, b and d", due, err)
	}
	for _, op := range []func() error{
		func() error { return s.Hold(ctx, NewID(t0)) },
		func() error { return s.Release(ctx, NewID(t0), t0) },
		func() error { _, err := s.Flush(ctx, NewID(t0), t0); return err },
		func() error { return s.Delete(ctx, NewID(t0)) },
	} {
		if err := op(); !errors.Is(err, ErrNotFound) {
			t.Errorf("admin op on unknown ID = %v, want ErrNotFound", err)
		}
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v", err)
	}
}

// fill queues a small fixed population for the filter tests.
func fill(t *testing.T, s *Store) map[string]ID {
	t.Helper()
	ctx := t.Context()
	ids := map[string]ID{}
	add := func(name string, env Envelope, now time.Time) {
		id, err := s.Enqueue(ctx, env, []byte(name), now)
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = id
	}
	add("old-gmail", Envelope{Sender: "App@Example.org", Recipients: []string{"u@gmail.com"}, ClientIP: "127.0.0.1"}, t0)
	add("yahoo", Envelope{Sender: "app@example.org", Recipients: []string{"u@yahoo.com", "v@GMAIL.com"}, ClientIP: "127.0.0.2", User: "www-data", UID: 33}, t0.Add(time.Hour))
	add("bounce", Envelope{Sender: "", Recipients: []string{"w@outlook.com"}, ClientIP: "", IsDSN: true}, t0.Add(2*time.Hour))
	if err := s.Record(ctx, ids["yahoo"], []Update{{Rcpt: "u@yahoo.com", Status: Deferred, NextAttempt: t0.Add(5 * time.Hour), Attempted: true, At: t0.Add(time.Hour), Provider: "yahoo"}}); err != nil {
		t.Fatal(err)
	}
	return ids
}

var filterTests = []struct {
	name string
	f    Filter
	want []string
}{
	{"empty filter", Filter{}, []string{"old-gmail", "yahoo", "bounce"}},
	{"sender is case-insensitive", Filter{Sender: "app@example.ORG"}, []string{"old-gmail", "yahoo"}},
	{"null sender", Filter{Sender: "<>"}, []string{"bounce"}},
	{"client ip", Filter{ClientIP: "127.0.0.2"}, []string{"yahoo"}},
	{"domain of any recipient", Filter{Domain: "gmail.com"}, []string{"old-gmail", "yahoo"}},
	{"older than is strict", Filter{OlderThan: t0.Add(time.Hour)}, []string{"old-gmail"}},
	{"status", Filter{Status: Deferred}, []string{"yahoo"}},
	{"domain and status on the same recipient", Filter{Domain: "gmail.com", Status: Deferred}, nil},
	{"nothing matches", Filter{Domain: "example.net"}, nil},
	{"sender glob", Filter{Sender: "*@EXAMPLE.org"}, []string{"old-gmail", "yahoo"}},
	{"sender glob in the middle", Filter{Sender: "a*p@ex*.org"}, []string{"old-gmail", "yahoo"}},
	{"sender glob matching nothing", Filter{Sender: "*@example.net"}, nil},
	{"sender without glob is exact", Filter{Sender: "app@example"}, nil},
	{"client prefix", Filter{ClientIP: "127.0.0.0/8"}, []string{"old-gmail", "yahoo"}},
	{"client prefix excluding", Filter{ClientIP: "127.0.0.2/32"}, []string{"yahoo"}},
	{"client ip matches no empty client", Filter{ClientIP: "0.0.0.0/0"}, []string{"old-gmail", "yahoo"}},
	{"user", Filter{User: "www-data"}, []string{"yahoo"}},
	{"user matching nothing", Filter{User: "root"}, nil},
	{"younger than is strict", Filter{YoungerThan: t0.Add(time.Hour)}, []string{"bounce"}},
	{"older and younger together", Filter{YoungerThan: t0.Add(time.Minute), OlderThan: t0.Add(90 * time.Minute)}, []string{"yahoo"}},
	{"provider stored", Filter{Provider: "yahoo"}, []string{"yahoo"}},
	{"provider recognised by domain", Filter{Provider: "google", ProviderOf: func(d string) string {
		if d == "gmail.com" {
			return "google"
		}
		return "default"
	}}, []string{"old-gmail", "yahoo"}},
	{"combined: sender, client and user", Filter{Sender: "*@example.org", ClientIP: "127.0.0.0/8", User: "www-data"}, []string{"yahoo"}},
}

func TestList(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ids := fill(t, s)
	for _, tt := range filterTests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := s.List(t.Context(), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []ID
			for _, m := range ms {
				got = append(got, m.ID)
			}
			var want []ID
			for _, n := range tt.want {
				want = append(want, ids[n])
			}
			if !slices.Equal(got, want) {
				t.Errorf("List = %v, want %v (%v)", got, want, tt.want)
			}
		})
	}
	for _, bad := range []Filter{{Status: "lost"}, {ClientIP: "foo"}, {ClientIP: "10.0.0.0/33"}, {IDs: []ID{"junk"}}} {
		if _, err := s.List(t.Context(), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("List(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	ms, err := s.List(t.Context(), Filter{IDs: []ID{ids["bounce"], ids["yahoo"], ids["bounce"]}, Sender: "<>"})
	if err != nil || len(ms) != 1 || ms[0].ID != ids["bounce"] {
		t.Errorf("List(IDs and sender) = %v, %v; want only the bounce", ms, err)
	}
}

func TestMissing(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ids := fill(t, s)
	ghost := NewID(t0)
	got, err := s.Missing(t.Context(), []ID{ids["yahoo"], ghost})
	if err != nil || !slices.Equal(got, []ID{ghost}) {
		t.Errorf("Missing = %v, %v; want [%s]", got, err, ghost)
	}
}

// TestFlushMatchingLeavesOthersAlone: flushing a flood by filter must not retry the
// legitimate mail early (issue 13: `flush --client-ip` flushed everything).
func TestFlushMatchingLeavesOthersAlone(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	legit := enqueue(t, s, t0, "a@legit.example")
	flood := enqueue(t, s, t0, "b@victim.example")
	for _, id := range []ID{legit, flood} {
		m, _ := s.Get(ctx, id)
		if err := s.Record(ctx, id, []Update{{Rcpt: m.Recipients[0].Address, Status: Deferred, NextAttempt: t0.Add(4 * time.Hour), Attempted: true, At: t0}}); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := s.Get(ctx, legit)
	n, err := s.FlushMatching(ctx, Filter{Domain: "victim.example"}, t0.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("FlushMatching = %d, %v; want 1", n, err)
	}
	after, _ := s.Get(ctx, legit)
	if !equalJSON(t, before, after) {
		t.Errorf("legitimate message changed:\n%+v\n%+v", before, after)
	}
	fm, _ := s.Get(ctx, flood)
	if got := fm.Recipients[0].NextAttempt; !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("flooded message next attempt %v, want now", got)
	}
	// The empty filter is the whole queue, as postqueue -f.
	if n, err := s.FlushMatching(ctx, Filter{}, t0.Add(2*time.Minute)); err != nil || n != 1 {
		t.Errorf("FlushMatching(all) = %d, %v; want 1 (the legitimate one, still later)", n, err)
	}
}

func TestReleaseMatching(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	ids := fill(t, s)
	if n, err := s.HoldMatching(ctx, Filter{All: true}); err != nil || n != 3 {
		t.Fatalf("HoldMatching(all) = %d, %v", n, err)
	}
	if _, err := s.ReleaseMatching(ctx, Filter{}, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("ReleaseMatching(empty) = %v, want ErrInvalid", err)
	}
	n, err := s.ReleaseMatching(ctx, Filter{Sender: "*@example.org"}, t0.Add(3*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("ReleaseMatching = %d, %v; want 2", n, err)
	}
	for name, want := range map[string]Status{"old-gmail": Queued, "yahoo": Deferred, "bounce": Held} {
		m, _ := s.Get(ctx, ids[name])
		if got := m.Recipients[0].Status; got != want {
			t.Errorf("%s: status %s, want %s", name, got, want)
		}
	}
}

func TestRecordHistory(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	id := enqueue(t, s, t0, "a@x.example")
	for i := range MaxHistory + 3 {
		at := t0.Add(time.Duration(i) * time.Hour)
		if err := s.Record(ctx, id, []Update{{Rcpt: "a@x.example", Status: Deferred, NextAttempt: at.Add(time.Hour), Attempted: true, At: at, MX: "mx.x.example", Response: fmt.Sprintf("421 try %d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := s.Get(ctx, id)
	h := m.Recipients[0].History
	if len(h) != MaxHistory || h[len(h)-1].Response != fmt.Sprintf("421 try %d", MaxHistory+2) || h[0].Response != "421 try 3" || h[0].MX != "mx.x.example" {
		t.Errorf("history = %+v", h)
	}
	if m.Recipients[0].Attempts != MaxHistory+3 {
		t.Errorf("attempts = %d", m.Recipients[0].Attempts)
	}
}

func TestDeleteHoldMatching(t *testing.T) {
	for _, tt := range filterTests {
		t.Run(tt.name, func(t *testing.T) {
			for _, op := range []string{"delete", "hold"} {
				s := openTest(t, Options{NoSync: true})
				ids := fill(t, s)
				f := tt.f
				f.All = true
				var n int
				var err error
				if op == "delete" {
					n, err = s.DeleteMatching(t.Context(), f)
				} else {
					n, err = s.HoldMatching(t.Context(), f)
				}
				if err != nil || n != len(tt.want) {
					t.Fatalf("%s matching = %d, %v; want %d", op, n, err, len(tt.want))
				}
				for name, id := range ids {
					m, err := s.Get(t.Context(), id)
					hit := slices.Contains(tt.want, name)
					switch {
					case op == "delete" && hit != errors.Is(err, ErrNotFound):
						t.Errorf("delete %s: deleted=%v, want %v", name, !hit, hit)
					case op == "hold" && hit && m.Recipients[0].Status != Held:
						t.Errorf("hold %s: first recipient %s", name, m.Recipients[0].Status)
					case op == "hold" && !hit && m.Recipients[0].Status == Held:
						t.Errorf("hold %s: held but not selected", name)
					}
				}
			}
		})
	}
}

func TestBulkRefusesEmptyFilterWithoutAll(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	fill(t, s)
	if _, err := s.DeleteMatching(t.Context(), Filter{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("DeleteMatching(empty) = %v, want ErrInvalid", err)
	}
	if _, err := s.HoldMatching(t.Context(), Filter{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("HoldMatching(empty) = %v, want ErrInvalid", err)
	}
	if st, _ := s.Stats(t.Context()); st.Messages != 3 {
		t.Errorf("messages = %d after refused bulk ops", st.Messages)
	}
}

func TestStats(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	st, err := s.Stats(t.Context())
	if err != nil || st.Messages != 0 || !st.Oldest.IsZero() {
		t.Fatalf("empty Stats = %+v, %v", st, err)
	}
	ids := fill(t, s)
	if err := s.Hold(t.Context(), ids["bounce"]); err != nil {
		t.Fatal(err)
	}
	st, err = s.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Messages: 3, Oldest: t0, Recipients: map[Status]int{Queued: 2, Deferred: 1, Held: 1, Delivered: 0, Bounced: 0, Suppressed: 0}}
	if !equalJSON(t, st, want) {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
}

func TestMessageJSON(t *testing.T) {
	m := Message{
		ID: "0G3ZK4R2Q8M1", Sender: "app@example.org", Size: 42, Created: t0,
		Recipients: []Recipient{
			{Address: "a@yahoo.example", Status: Deferred, Provider: "yahoo", Attempts: 2, NextAttempt: t0.Add(4 * time.Hour), LastAttempt: t0, LastResponse: "421 4.7.0 [TSS04]", Class: "rate_limited"},
			{Address: "b@gmail.example", Status: Delivered, Provider: "gmail", Attempts: 1, LastAttempt: t0, LastResponse: "250 2.0.0 OK"},
		},
	}
	got, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"0G3ZK4R2Q8M1","sender":"app@example.org","size":42,"created":"2026-11-22T14:03:08Z","recipients":[` +
		`{"address":"a@yahoo.example","status":"deferred","provider":"yahoo","attempts":2,"next_attempt":"2026-11-22T18:03:08Z","last_attempt":"2026-11-22T14:03:08Z","last_response":"421 4.7.0 [TSS04]","class":"rate_limited"},` +
		`{"address":"b@gmail.example","status":"delivered","provider":"gmail","attempts":1,"next_attempt":null,"last_attempt":"2026-11-22T14:03:08Z","last_response":"250 2.0.0 OK"}]}`
	if string(got) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", got, want)
	}
	var back Message
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if !equalJSON(t, back, m) {
		t.Errorf("round trip = %+v", back)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	body := bytes.Repeat([]byte("x"), 10000)
	id, err := s.Enqueue(ctx, Envelope{Sender: "a@example.org", Recipients: []string{"b@x.example", "c@y.example"}}, body, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, id, []Update{{Rcpt: "b@x.example", Status: Deferred, NextAttempt: t0.Add(time.Hour), Attempted: true, At: t0, Response: "451 later"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Suppress(ctx, Suppression{Address: "z@x.example", Source: SourceManual, LastSeen: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutState(ctx, "policy/yahoo", []byte("suspended")); err != nil {
		t.Fatal(err)
	}
	before := get(t, s, id)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, path, Options{})
	after := get(t, s, id)
	if !equalJSON(t, before, after) {
		t.Errorf("after restart %+v\nwant %+v", after, before)
	}
	if got, err := s.Body(ctx, id); err != nil || !bytes.Equal(got, body) {
		t.Errorf("body after restart: %d bytes, %v", len(got), err)
	}
	if d := dueAll(t, s); len(d) != 2 {
		t.Errorf("due after restart = %v", d)
	}
	if _, ok, err := s.Suppressed(ctx, "z@x.example", t0); !ok || err != nil {
		t.Errorf("suppression lost: %v, %v", ok, err)
	}
	if v, err := s.State(ctx, "policy/yahoo"); string(v) != "suspended" || err != nil {
		t.Errorf("state lost: %q, %v", v, err)
	}
}

func TestLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	openAt(t, path, Options{NoSync: true})
	s2, err := Open(path, Options{LockTimeout: 50 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second Open on a locked file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "another facteur") {
		t.Errorf("second Open = %v, want ErrLocked naming another facteur", err)
	}
}

func TestOpenRejectsFutureSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(metaVersion, putU64(schemaVersion+1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "schema version") {
		if s != nil {
			s.Close()
		}
		t.Errorf("Open of a newer schema = %v", err)
	}
}

func TestFullStorage(t *testing.T) {
	s := openTest(t, Options{NoSync: true, MaxSize: 1 << 20})
	ctx := t.Context()
	// Random bytes: zeros would compress to a few KiB and fit.
	big := make([]byte, 2<<20)
	rng := mrand.NewChaCha8([32]byte{1})
	rng.Read(big)
	if _, err := s.Enqueue(ctx, Envelope{Recipients: []string{"a@x.example"}}, big, t0); !errors.Is(err, ErrFull) {
		t.Fatalf("Enqueue past MaxSize = %v, want ErrFull", err)
	}
	// The failed write left nothing behind and the store still takes what fits.
	id := enqueue(t, s, t0, "b@x.example")
	if st, err := s.Stats(ctx); err != nil || st.Messages != 1 {
		t.Errorf("Stats = %+v, %v; want only %s", st, err, id)
	}
}

// TestCommitIsolatesFailures drives one group commit holding good writes, a write
// rejected before it changed anything, one that fails half-way, one that panics and
// one whose caller gave up: only those callers see an error, only their changes are
// missing, and the good writes, re-run after each failure, are stored once.
func TestCommitIsolatesFailures(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	boom := errors.New("boom")
	put := func(key string, err error) *op {
		return &op{ctx: t.Context(), wake: make(chan bool, 1), fn: func(w *wtx) error {
			if err != nil && errors.As(err, new(rejected)) {
				return err
			}
			if perr := w.state.Put([]byte(key), []byte("v")); perr != nil {
				return perr
			}
			return err
		}}
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	late := put("cancelled", nil)
	late.ctx = cancelled
	panics := put("panics", nil)
	panics.fn = func(w *wtx) error {
		if err := w.state.Put([]byte("panics"), []byte("v")); err != nil {
			return err
		}
		var m map[string]int
		m["corrupt"]++ // a bug or a corrupt page: must not take the other writers down
		return nil
	}
	batch := []*op{put("good1", nil), put("rejected", reject(boom)), put("halfway", boom), panics, put("good2", nil), late}
	s.commit(batch)
	wantErr := []error{nil, boom, boom, errPanicked, nil, context.Canceled}
	for i, o := range batch {
		if !errors.Is(o.err, wantErr[i]) || (wantErr[i] == nil) != (o.err == nil) {
			t.Errorf("op %d err = %v, want %v", i, o.err, wantErr[i])
		}
		if _, ok := o.err.(rejected); ok {
			t.Errorf("op %d: rejected marker leaked to the caller", i)
		}
	}
	got, err := s.States(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"good1", "good2"}) {
		t.Errorf("stored keys = %v, want good1 good2", keys)
	}
}

// TestConcurrentWriters exercises the leader hand-over under the race detector: every
// caller gets its own outcome and nothing is lost or stored twice.
func TestConcurrentWriters(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	const writers, per = 20, 50
	ids := make([][]ID, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				id, err := s.Enqueue(t.Context(), Envelope{Recipients: []string{"r@x.example"}}, []byte{byte(w), byte(i)}, t0)
				if err != nil {
					t.Error(err)
					return
				}
				ids[w] = append(ids[w], id)
				// Interleave failing writes so groups mix outcomes.
				if err := s.Record(t.Context(), NewID(t0), []Update{{Rcpt: "r@x.example", Status: Delivered}}); !errors.Is(err, ErrNotFound) {
					t.Errorf("Record on unknown = %v", err)
				}
			}
		})
	}
	wg.Wait()
	for w, l := range ids {
		for i, id := range l {
			b, err := s.Body(t.Context(), id)
			if err != nil || !bytes.Equal(b, []byte{byte(w), byte(i)}) {
				t.Errorf("writer %d message %d: %v %v", w, i, b, err)
			}
		}
	}
	if st, _ := s.Stats(t.Context()); st.Messages != writers*per {
		t.Errorf("messages = %d, want %d", st.Messages, writers*per)
	}
}

// TestGroupCommit holds a leader inside its transaction while 19 more writes queue up,
// then checks they all went out in one further commit, led by one of them.
func TestGroupCommit(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx := t.Context()
	inside, release := make(chan struct{}), make(chan struct{})
	c0 := s.commits.Load()
	var wg sync.WaitGroup
	wg.Go(func() {
		err := s.write(ctx, func(w *wtx) error {
			close(inside)
			<-release
			return w.state.Put([]byte("leader"), []byte("v"))
		})
		if err != nil {
			t.Error(err)
		}
	})
	<-inside
	const followers = 19
	for i := range followers {
		wg.Go(func() {
			if err := s.PutState(ctx, fmt.Sprintf("f%02d", i), []byte("v")); err != nil {
				t.Error(err)
			}
		})
	}
	for queued := 0; queued < followers; runtime.Gosched() {
		s.mu.Lock()
		queued = len(s.pending)
		s.mu.Unlock()
	}
	close(release)
	wg.Wait()
	if got := s.commits.Load() - c0; got != 2 {
		t.Errorf("%d commits for 1 + %d writes, want 2", got, followers)
	}
	if st, err := s.States(ctx, ""); err != nil || len(st) != followers+1 {
		t.Errorf("States = %d keys, %v", len(st), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leading || len(s.pending) != 0 {
		t.Errorf("after the burst: leading=%v pending=%d", s.leading, len(s.pending))
	}
}

func TestUseAfterClose(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "queue.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := s.Enqueue(ctx, Envelope{Recipients: []string{"a@x.example"}}, nil, t0); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close = %v", err)
	}
	if _, err := s.Due(ctx, t0, 10, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Due after Close = %v", err)
	}
}

package webhook

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"facteur/queue"
	"facteur/relay/clock"
	"facteur/relay/config"
)

// defaultBatchWait is batch_wait when the config leaves it out.
var defaultBatchWait = time.Duration(config.DefaultWebhook().BatchWait)

var t0 = time.Date(2026, 11, 22, 14, 3, 8, 0, time.UTC)

// request is one POST the receiver got.
type request struct {
	header http.Header
	body   []byte
	status int
}

// receiver is the app: it verifies each POST as a receiving app would and
// answers from a script of statuses (200 once the script is used up).
type receiver struct {
	t      *testing.T
	secret []byte
	srv    *httptest.Server

	mu       sync.Mutex // guards script, requests
	script   []int
	requests []request

	events chan Event // every event of every 2xx POST, in arrival order
}

func newReceiver(t *testing.T, secret string, script ...int) *receiver {
	r := &receiver{t: t, secret: []byte(secret), script: script, events: make(chan Event, 10000)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(rw http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("receiver: read body: %v", err)
		return
	}
	r.mu.Lock()
	status := http.StatusOK
	if len(r.script) > 0 {
		status, r.script = r.script[0], r.script[1:]
	}
	r.requests = append(r.requests, request{req.Header.Clone(), body, status})
	r.mu.Unlock()

	if err := verify(r.secret, req.Header, body); err != nil {
		r.t.Errorf("receiver: %v", err)
		http.Error(rw, err.Error(), http.StatusUnauthorized)
		return
	}
	switch status {
	case -1: // the connection drops without an answer
		conn, _, err := rw.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case http.StatusTooManyRequests:
		rw.Header().Set("Retry-After", "120")
	case http.StatusFound:
		rw.Header().Set("Location", "/elsewhere")
	}
	if status/100 != 2 {
		http.Error(rw, "receiver says "+strconv.Itoa(status), status)
		return
	}
	var batch struct {
		Events []Event `json:"events"`
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		r.t.Errorf("receiver: %v in %s", err, body)
	}
	for _, e := range batch.Events {
		r.events <- e
	}
	rw.WriteHeader(status)
}

// verify is what the doc tells an app to do, in Go.
func verify(secret []byte, h http.Header, body []byte) error {
	ts := h.Get("X-Facteur-Timestamp")
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		return fmt.Errorf("bad X-Facteur-Timestamp %q", ts)
	}
	if !hmac.Equal([]byte(h.Get("X-Facteur-Signature")), []byte(Sign(secret, ts, body))) {
		return fmt.Errorf("bad signature %q for timestamp %s", h.Get("X-Facteur-Signature"), ts)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("Content-Type %q", ct)
	}
	if ua := h.Get("User-Agent"); ua != "facteur" {
		return fmt.Errorf("User-Agent %q", ua)
	}
	return nil
}

func (r *receiver) Requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

// logs keeps the records a Webhook logs.
type logs struct {
	mu   sync.Mutex // guards recs
	recs []slog.Record
	msgs chan string // every message, so that a test can wait for one
}

func newLogs() *logs { return &logs{msgs: make(chan string, 10000)} }

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	l.msgs <- r.Message
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

// count returns how many records have msg at level.
func (l *logs) count(msg string, level slog.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Message == msg && r.Level == level {
			n++
		}
	}
	return n
}

func openStore(t *testing.T, path string, sync bool) *queue.Store {
	t.Helper()
	s, err := queue.Open(path, queue.Options{NoSync: !sync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newWebhook(t *testing.T, out Outbox, opts Options, clk clock.Clock, l *logs) *Webhook {
	t.Helper()
	w, err := New(t.Context(), opts, out, clk, slog.New(l))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// run starts w.Run and stops it at cleanup, checking that it returned.
func run(t *testing.T, w *Webhook) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func event(i int) Event {
	return Event{
		Event:     Bounced,
		ID:        fmt.Sprintf("0G3ZK4R2Q%03d", i),
		Sender:    "app@example.com",
		Recipient: fmt.Sprintf("user%d@example.net", i),
		Provider:  "gmail",
		Class:     "user_unknown",
		Response:  "550 5.1.1 no such user",
		Timestamp: t0.Add(time.Duration(i) * time.Second),
	}
}

func add(t *testing.T, w *Webhook, evs ...Event) {
	t.Helper()
	for _, e := range evs {
		if err := w.Add(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// collect drives the fake clock (firing each wait as soon as Run starts
// it) until n events arrived; it returns them and the waits Run asked for.
func collect(t *testing.T, clk *clock.Fake, r *receiver, n int) ([]Event, []time.Duration) {
	t.Helper()
	var got []Event
	var waits []time.Duration
	guard := time.NewTimer(20 * time.Second) // a hang fails the test instead of timing out the binary
	defer guard.Stop()
	for len(got) < n {
		select {
		case e := <-r.events:
			got = append(got, e)
		case d := <-clk.Waits():
			waits = append(waits, d)
			clk.Advance(d)
		case <-guard.C:
			t.Fatalf("got %d of %d events; requests: %d", len(got), n, len(r.Requests()))
		}
	}
	return got, waits
}

// quiet waits for Run to log the last delivery (the receiver has the
// events before Run has its answer), then checks that the outbox is empty
// and nothing more arrived.
func quiet(t *testing.T, w *Webhook, r *receiver, l *logs) {
	t.Helper()
	guard := time.NewTimer(20 * time.Second)
	defer guard.Stop()
	for w.Pending() != 0 {
		select {
		case <-l.msgs:
		case <-guard.C:
			t.Fatalf("Pending = %d after delivery, want 0", w.Pending())
		}
	}
	select {
	case e := <-r.events:
		t.Errorf("unexpected extra event %+v", e)
	default:
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "q.db"), false)
	good := Options{URL: "http://127.0.0.1:9/hook", Secret: []byte("s")}
	for _, tc := range []struct {
		name string
		edit func(*Options)
	}{
		{"no url", func(o *Options) { o.URL = "" }},
		{"relative url", func(o *Options) { o.URL = "/hook" }},
		{"ftp url", func(o *Options) { o.URL = "ftp://127.0.0.1/hook" }},
		{"unparsable url", func(o *Options) { o.URL = "http://[::1" }},
		{"no secret", func(o *Options) { o.Secret = nil }},
		{"unknown event", func(o *Options) { o.Events = []string{"bounced", "bounce"} }},
		{"negative batch size", func(o *Options) { o.BatchSize = -1 }},
		{"negative timeout", func(o *Options) { o.Timeout = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			_, err := New(t.Context(), o, store, nil, nil)
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("New = %v, want ErrConfig", err)
			}
		})
	}
	if _, err := New(t.Context(), good, store, nil, nil); err != nil {
		t.Fatalf("good options: %v", err)
	}
}

func TestBatching(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "q.db"), false)
	r := newReceiver(t, "k")
	clk := clock.NewFake(t0)
	l := newLogs()
	w := newWebhook(t, store, Options{URL: r.srv.URL, Secret: []byte("k"), BatchSize: 3, BatchWait: 5 * time.Second}, clk, l)

	// A backlog of 25 at start: full batches at once, no waiting, across
	// several outbox blocks (a block is 10 keys for a batch of 3).
	var want []Event
	for i := range 25 {
		want = append(want, event(i))
	}
	add(t, w, want[:24]...)
	if p := w.Pending(); p != 24 {
		t.Fatalf("Pending = %d, want 24", p)
	}
	run(t, w)
	got, waits := collect(t, clk, r, 24)
	if len(waits) != 0 {
		t.Errorf("a full backlog waited %v", waits)
	}
	var sizes []int
	for _, req := range r.Requests() {
		var b struct{ Events []json.RawMessage }
		if err := json.Unmarshal(req.body, &b); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(b.Events))
	}
	if !slices.Equal(sizes, []int{3, 3, 3, 3, 3, 3, 3, 3}) {
		t.Errorf("batch sizes %v, want 8 of 3", sizes)
	}

	// Idle: one event starts a BatchWait; the batch goes when it is full.
	add(t, w, want[24], event(25))
	if d := <-clk.Waits(); d != 5*time.Second {
		t.Errorf("idle webhook waited %v, want batch_wait 5s", d)
	}
	add(t, w, event(26))
	got2, _ := collect(t, clk, r, 3)
	got = append(got, got2...)
	// A lone event goes when BatchWait ends.
	add(t, w, event(27))
	got3, waits := collect(t, clk, r, 1)
	got = append(got, got3...)
	if !slices.Equal(waits, []time.Duration{5 * time.Second}) {
		t.Errorf("lone event: waits %v, want [5s]", waits)
	}
	want = append(want, event(25), event(26), event(27))
	if !slices.EqualFunc(got, want, eventEqual) {
		t.Errorf("events out of order or changed:\n got %v\nwant %v", recipients(got), recipients(want))
	}
	quiet(t, w, r, l)
	if n := len(r.Requests()); n != 10 {
		t.Errorf("%d POSTs, want 10", n)
	}
}

func eventEqual(a, b Event) bool {
	return a.Event == b.Event && a.ID == b.ID && a.Sender == b.Sender && a.Recipient == b.Recipient &&
		a.Provider == b.Provider && a.Class == b.Class && a.Response == b.Response && a.Timestamp.Equal(b.Timestamp)
}

func recipients(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Recipient)
	}
	return out
}

func TestSignatureAndBody(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "q.db"), false)
	r := newReceiver(t, "s3cret")
	clk := clock.NewFake(t0)
	l := newLogs()
	w := newWebhook(t, store, Options{URL: r.srv.URL + "/hooks/facteur", Secret: []byte("s3cret")}, clk, l)
	ev := Event{Event: Suppressed, Recipient: "bob@example.net", Class: "user_unknown",
		Response: "550 5.1.1 recipient is suppressed: \"quoted\" <b>", Timestamp: t0.In(time.FixedZone("CET", 3600))}
	add(t, w, ev)
	run(t, w)
	collect(t, clk, r, 1)

	reqs := r.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	req := reqs[0]
	// The receiver's verify already checked the HMAC; check the parts a
	// receiver relies on, and that a changed byte or secret fails.
	// The POST went after batch_wait, on the fake clock.
	if ts := req.header.Get("X-Facteur-Timestamp"); ts != strconv.FormatInt(t0.Add(defaultBatchWait).Unix(), 10) {
		t.Errorf("X-Facteur-Timestamp %q, want the clock's %d", ts, t0.Add(defaultBatchWait).Unix())
	}
	for _, bad := range []struct {
		name   string
		secret string
		body   []byte
	}{
		{"wrong secret", "s3cre7", req.body},
		{"body changed", "s3cret", append(slices.Clone(req.body), ' ')},
	} {
		if err := verify([]byte(bad.secret), req.header, bad.body); err == nil {
			t.Errorf("%s: signature still verifies", bad.name)
		}
	}
	var raw struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(req.body, &raw); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"class", "event", "id", "provider", "recipient", "response", "sender", "timestamp"}
	var keys []string
	for k := range raw.Events[0] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("event keys %v, want %v", keys, wantKeys)
	}
	if ts := raw.Events[0]["timestamp"]; ts != "2026-11-22T14:03:08Z" {
		t.Errorf("timestamp %q, want RFC 3339 UTC", ts)
	}
	if e := raw.Events[0]["event"]; e != "suppressed" {
		t.Errorf("event %q", e)
	}
}

func TestReceiverDown(t *testing.T) {
	const n = 5
	for _, tc := range []struct {
		name   string
		script []int
		// errors: failures logged at error level (a refusal to look at)
		errors int
		// minWait: a failure's wait at least this (Retry-After)
		minWait time.Duration
	}{
		{"503 three times", []int{503, 503, 503}, 0, 0},
		{"connection dropped", []int{-1, -1}, 0, 0},
		{"500 then 502 then 504", []int{500, 502, 504}, 0, 0},
		{"401 wrong secret on the receiver, fixed later", []int{401, 401}, 2, 0},
		{"404 then 408", []int{404, 408}, 1, 0},
		{"429 with Retry-After 120", []int{429}, 0, 120 * time.Second},
		{"302 redirect is not followed", []int{302}, 0, 0},
		{"a long outage hits MaxBackoff", slices.Repeat([]int{503}, 12), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := openStore(t, filepath.Join(t.TempDir(), "q.db"), false)
			r := newReceiver(t, "k", tc.script...)
			clk := clock.NewFake(t0)
			l := newLogs()
			const maxBackoff = 5 * time.Minute
			w := newWebhook(t, store, Options{URL: r.srv.URL, Secret: []byte("k"), BatchSize: 100, MaxBackoff: maxBackoff}, clk, l)
			var want []Event
			for i := range n {
				want = append(want, event(i))
			}
			add(t, w, want[:3]...)
			run(t, w)
			first := <-clk.Waits() // batch_wait
			clk.Advance(first)
			backoff := <-clk.Waits() // the first failure's backoff
			// Events added during the outage queue behind the failing batch.
			add(t, w, want[3:]...)
			clk.Advance(backoff)
			got, waits := collect(t, clk, r, n)
			waits = append([]time.Duration{first, backoff}, waits...)
			if !slices.EqualFunc(got, want, eventEqual) {
				t.Errorf("got %v, want %v once each in order", recipients(got), recipients(want))
			}
			quiet(t, w, r, l)

			// waits[0] is batch_wait; then one backoff per failure.
			if len(waits) < len(tc.script)+1 || waits[0] != defaultBatchWait {
				t.Fatalf("waits %v: want batch_wait then %d backoffs", waits, len(tc.script))
			}
			for i, d := range waits[1 : 1+len(tc.script)] {
				hi := min(time.Second<<i, maxBackoff)
				lo := hi / 2
				if tc.minWait > 0 {
					lo, hi = tc.minWait, tc.minWait
				}
				if d < lo || d > hi {
					t.Errorf("failure %d waited %v, want in [%v, %v]", i+1, d, lo, hi)
				}
			}
			// The batch retried is the same events; the later ones follow.
			reqs := r.Requests()
			if len(reqs) != len(tc.script)+2 {
				t.Errorf("%d POSTs, want %d", len(reqs), len(tc.script)+2)
			}
			for _, req := range reqs[1 : len(tc.script)+1] {
				if string(req.body) != string(reqs[0].body) {
					t.Errorf("retry sent %s, want the same batch %s", req.body, reqs[0].body)
				}
			}
			if got := l.count("webhook failed", slog.LevelError); got != tc.errors {
				t.Errorf("%d failures logged as errors, want %d", got, tc.errors)
			}
			if got := l.count("webhook failed", slog.LevelWarn); got != len(tc.script)-tc.errors {
				t.Errorf("%d failures logged as warnings, want %d", got, len(tc.script)-tc.errors)
			}
			if got := l.count("webhook delivered", slog.LevelInfo); got != 2 {
				t.Errorf("%d deliveries logged, want 2", got)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "q.db"), false)
	hung := make(chan struct{})
	release := make(chan struct{})
	var calls sync.Mutex
	first := true
	events := make(chan int, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		calls.Lock()
		f := first
		first = false
		calls.Unlock()
		if f {
			// Hang until the client gives up: the timeout is what ends it.
			close(hung)
			select {
			case <-req.Context().Done():
			case <-release:
			}
			return
		}
		var b struct{ Events []Event }
		json.NewDecoder(req.Body).Decode(&b)
		events <- len(b.Events)
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	clk := clock.NewFake(t0)
	l := newLogs()
	w := newWebhook(t, store, Options{URL: srv.URL, Secret: []byte("k"), BatchSize: 2, Timeout: 50 * time.Millisecond}, clk, l)
	add(t, w, event(1), event(2))
	run(t, w)
	<-hung
	d := <-clk.Waits() // the backoff after the timeout
	if d < 500*time.Millisecond || d > time.Second {
		t.Errorf("first backoff %v", d)
	}
	clk.Advance(d)
	if n := <-events; n != 2 {
		t.Errorf("retry carried %d events, want 2", n)
	}
	if l.count("webhook failed", slog.LevelWarn) != 1 {
		t.Errorf("the timeout was not logged")
	}
}

func TestRestartKeepsEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	r := newReceiver(t, "k", 503)
	clk := clock.NewFake(t0)

	// First life: events stored, one failed POST, then shutdown.
	store := openStore(t, path, true)
	l := newLogs()
	w := newWebhook(t, store, Options{URL: r.srv.URL, Secret: []byte("k")}, clk, l)
	var want []Event
	for i := range 7 {
		want = append(want, event(i))
	}
	add(t, w, want[:4]...)
	stop := run(t, w)
	clk.Advance(<-clk.Waits()) // batch_wait
	<-clk.Waits()              // backoff after the 503: Run is waiting
	stop()
	add(t, w, want[4]) // the scheduler still finishes deliveries at shutdown
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	// Second life over the same file.
	store = openStore(t, path, true)
	clk2 := clock.NewFake(t0)
	l2 := newLogs()
	w2 := newWebhook(t, store, Options{URL: r.srv.URL, Secret: []byte("k")}, clk2, l2)
	if p := w2.Pending(); p != 5 {
		t.Fatalf("after restart Pending = %d, want 5", p)
	}
	add(t, w2, want[5:]...) // new events go after the old ones
	run(t, w2)
	got, _ := collect(t, clk2, r, len(want))
	if !slices.EqualFunc(got, want, eventEqual) {
		t.Errorf("got %v, want %v", recipients(got), recipients(want))
	}
	quiet(t, w2, r, l2)
	states, err := store.States(t.Context(), Prefix(r.srv.URL))
	if err != nil || len(states) != 0 {
		t.Errorf("outbox after delivery: %d keys, %v", len(states), err)
	}
}

func TestEventFilter(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "q.db"), false)
	r := newReceiver(t, "k")
	clk := clock.NewFake(t0)
	l := newLogs()
	w := newWebhook(t, store, Options{URL: r.srv.URL, Secret: []byte("k"), Events: []string{"bounced", "suppressed"}}, clk, l)
	var want []Event
	for i, k := range []Kind{Delivered, Bounced, Deferred, Suppressed, Expired, Bounced, Delivered} {
		e := event(i)
		e.Event = k
		add(t, w, e)
		if k == Bounced || k == Suppressed {
			want = append(want, e)
		}
	}
	if p := w.Pending(); p != len(want) {
		t.Errorf("Pending = %d, want %d (filtered events are not stored)", p, len(want))
	}
	run(t, w)
	got, _ := collect(t, clk, r, len(want))
	if !slices.EqualFunc(got, want, eventEqual) {
		t.Errorf("got %v, want %v", got, want)
	}
	quiet(t, w, r, l)
}

func TestFailedAddLeavesNoHole(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "q.db"), false)
	r := newReceiver(t, "k")
	clk := clock.NewFake(t0)
	l := newLogs()
	w := newWebhook(t, store, Options{URL: r.srv.URL, Secret: []byte("k"), BatchSize: 2}, clk, l)
	add(t, w, event(1))
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := w.Add(cancelled, event(2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Add on a cancelled context = %v, want context.Canceled", err)
	}
	add(t, w, event(3))
	run(t, w)
	got, _ := collect(t, clk, r, 2)
	if want := []Event{event(1), event(3)}; !slices.EqualFunc(got, want, eventEqual) {
		t.Errorf("got %v, want %v: the unused seq must be skipped", recipients(got), recipients(want))
	}
	quiet(t, w, r, l)
}

func TestCorruptEntryDropped(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "q.db"), false)
	r := newReceiver(t, "k")
	opts := Options{URL: r.srv.URL, Secret: []byte("k")}
	p := Prefix(opts.URL)
	for k, v := range map[string]string{
		p + "00000000000000000001": string(must(json.Marshal(event(1)))),
		p + "00000000000000000002": "{not json",
		p + "00000000000000000003": string(must(json.Marshal(event(3)))),
		p + "lock":                 "not an event key: ignored, kept",
	} {
		if err := store.PutState(t.Context(), k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	clk := clock.NewFake(t0)
	l := newLogs()
	w := newWebhook(t, store, opts, clk, l)
	if w.Pending() != 3 {
		t.Fatalf("Pending = %d, want 3", w.Pending())
	}
	add(t, w, event(4))
	run(t, w)
	got, _ := collect(t, clk, r, 3)
	if want := []Event{event(1), event(3), event(4)}; !slices.EqualFunc(got, want, eventEqual) {
		t.Errorf("got %v, want %v", recipients(got), recipients(want))
	}
	quiet(t, w, r, l)
	if l.count("webhook dropped corrupt outbox entry", slog.LevelError) != 1 {
		t.Errorf("the corrupt entry was not logged")
	}
	if _, err := store.State(t.Context(), p+"lock"); err != nil {
		t.Errorf("a foreign key under the prefix was touched: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestConcurrentAdd: the scheduler's workers call Add at once while Run
// posts; each worker's events arrive once and in its order.
func TestConcurrentAdd(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "q.db"), false)
	r := newReceiver(t, "k")
	clk := clock.NewFake(t0)
	l := newLogs()
	w := newWebhook(t, store, Options{URL: r.srv.URL, Secret: []byte("k"), BatchSize: 7}, clk, l)
	run(t, w)
	const workers, each = 20, 30
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range each {
				e := event(g*1000 + i)
				e.Provider = strconv.Itoa(g)
				if err := w.Add(t.Context(), e); err != nil {
					t.Error(err)
				}
			}
		})
	}
	got, _ := collect(t, clk, r, workers*each)
	wg.Wait()
	last := map[string]int{}
	seen := map[string]bool{}
	for _, e := range got {
		if seen[e.ID] {
			t.Errorf("event %s twice", e.ID)
		}
		seen[e.ID] = true
		i, _ := strconv.Atoi(e.ID[len(e.ID)-3:])
		if prev, ok := last[e.Provider]; ok && i <= prev {
			t.Errorf("worker %s: event %d after %d", e.Provider, i, prev)
		}
		last[e.Provider] = i
	}
	quiet(t, w, r, l)
}

// BenchmarkAdd measures what Add costs the scheduler, fsync on: one
// caller at a time, and 20 at once (the group commit shares fsyncs).
func BenchmarkAdd(b *testing.B) {
	for _, callers := range []int{1, 20} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s, err := queue.Open(filepath.Join(b.TempDir(), "q.db"), queue.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			w, err := New(b.Context(), Options{URL: "http://127.0.0.1:9/", Secret: []byte("k")}, s, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0))) // RunParallel starts this × GOMAXPROCS goroutines
			b.ReportAllocs()
			b.ResetTimer()
			if callers == 1 {
				for b.Loop() {
					if err := w.Add(b.Context(), event(1)); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := w.Add(context.Background(), event(1)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkDrain measures how fast a backlog empties into a loopback
// receiver: POSTs of 100 events plus their deletes, fsync on.
func BenchmarkDrain(b *testing.B) {
	const backlog = 1000
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
	}))
	defer srv.Close()
	s, err := queue.Open(filepath.Join(b.TempDir(), "q.db"), queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	l := newLogs()
	w, err := New(b.Context(), Options{URL: srv.URL, Secret: []byte("k")}, s, clock.NewFake(t0), slog.New(l))
	if err != nil {
		b.Fatal(err)
	}
	var drained time.Duration
	for b.Loop() {
		b.StopTimer()
		// Fill concurrently, as the scheduler's workers would.
		var wg sync.WaitGroup
		for g := range 20 {
			wg.Go(func() {
				for i := range backlog / 20 {
					if err := w.Add(b.Context(), event(g*100+i)); err != nil {
						b.Error(err)
					}
				}
			})
		}
		wg.Wait()
		b.StartTimer()
		start := time.Now()
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error)
		go func() { done <- w.Run(ctx) }()
		for w.Pending() > 0 {
			<-l.msgs
		}
		drained += time.Since(start)
		cancel()
		<-done
	}
	b.ReportMetric(float64(b.N*backlog)/drained.Seconds(), "events/s")
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        time.Duration
	}{
		{"absent", "", 0},
		{"seconds", "120", 120 * time.Second},
		{"zero", "0", 0},
		{"negative", "-5", 0},
		{"huge is capped at a day", "99999999999999", 24 * time.Hour},
		{"http date", t0.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"http date in the past", t0.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"garbage", "soon", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.value != "" {
				h.Set("Retry-After", tc.value)
			}
			if got := retryAfter(h, t0); got != tc.want {
				t.Errorf("retryAfter(%q) = %v, want %v", tc.value, got, tc.want)
			}
		})
	}
}

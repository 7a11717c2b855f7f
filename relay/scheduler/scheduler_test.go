package scheduler

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/policy"
	"facteur/policy/bounce"
	"facteur/queue"
	"facteur/relay/address"
	"facteur/relay/clock"
	"facteur/relay/delivery"
	"facteur/relay/local"
	"facteur/relay/relaytest"
	"facteur/relay/resolver"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// harness runs a scheduler against a real queue, a loopback DNS server and
// go-smtp sinks on 127.0.0.x, with a fake clock.
type harness struct {
	t      *testing.T
	store  *queue.Store
	clock  *clock.Fake
	sched  *Scheduler
	engine *policy.Engine
	dns    *relaytest.DNSServer
	events chan DeliveryEvent
	log    *bytes.Buffer
	logMu  *sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

type syncWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func newHarness(t *testing.T, port int, zones map[string]relaytest.Zone, tweak func(*Options)) *harness {
	t.Helper()
	return newHarnessWith(t, port, zones, func(_ *harness, _ *resolver.Resolver, o *Options) {
		if tweak != nil {
			tweak(o)
		}
	})
}

// newHarnessWith is newHarness whose tweak also sees the harness (its DNS
// server and clock) and the resolver, to build what needs them.
func newHarnessWith(t *testing.T, port int, zones map[string]relaytest.Zone, tweak func(*harness, *resolver.Resolver, *Options)) *harness {
	t.Helper()
	st, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv := relaytest.NewDNS(t, zones)
	clock := clock.NewFake(t0)
	res, err := resolver.New(resolver.Options{Server: dnsSrv.Addr(), Timeout: 2 * time.Second, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(pol)
	h := &harness{t: t, store: st, clock: clock, engine: eng, dns: dnsSrv, events: make(chan DeliveryEvent, 1000),
		log: &bytes.Buffer{}, logMu: &sync.Mutex{}, done: make(chan error, 1)}
	timeouts := delivery.DefaultTimeouts()
	opts := Options{
		Hostname:       "relay.test",
		Dial:           delivery.Options{Hostname: "relay.test", Port: port, Timeouts: timeouts},
		MaxLifetime:    5 * 24 * time.Hour,
		HostUnknownTTL: 30 * 24 * time.Hour,
		Postmaster:     "postmaster@relay.test",
		OnEvent:        func(e DeliveryEvent) { h.events <- e },
	}
	if tweak != nil {
		tweak(h, res, &opts)
	}
	log := slog.New(slog.NewTextHandler(syncWriter{h.logMu, h.log}, nil))
	h.sched = New(opts, st, res, EngineShaper{E: eng}, clock, log)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.sched.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-h.done
		if err := st.Check(); err != nil {
			t.Errorf("queue invariants: %v", err)
		}
		st.Close()
	})
	return h
}

func (h *harness) enqueue(from string, rcpts []string, body string) queue.ID {
	h.t.Helper()
	id, err := h.store.Enqueue(h.t.Context(), queue.Envelope{Sender: from, Recipients: rcpts}, []byte(body), h.clock.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	h.sched.Wake()
	return id
}

// expect waits for n events (real time, bounded) and returns them.
func (h *harness) expect(n int) []DeliveryEvent {
	h.t.Helper()
	var evs []DeliveryEvent
	timeout := time.After(20 * time.Second)
	for len(evs) < n {
		select {
		case e := <-h.events:
			evs = append(evs, e)
		case <-timeout:
			h.logMu.Lock()
			defer h.logMu.Unlock()
			h.t.Fatalf("got %d of %d events: %+v\nlog:\n%s", len(evs), n, evs, h.log.String())
		}
	}
	return evs
}

func eventNames(evs []DeliveryEvent) map[string]string {
	m := map[string]string{}
	for _, e := range evs {
		if e.Rcpt != "" {
			m[e.Rcpt] = m[e.Rcpt] + e.Event + " "
		}
	}
	for k, v := range m {
		m[k] = strings.TrimSpace(v)
	}
	return m
}

const msgBody = "From: app@example.com\r\nTo: x@example.org\r\nSubject: test\r\n\r\nHello\r\n.leading dot line\r\n"

func TestDeliverPerRecipientOutcomes(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{
		Rcpt: func(addr string) error {
			switch {
			case strings.HasPrefix(addr, "later@"):
				return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy, try later"}
			case strings.HasPrefix(addr, "nobody@"):
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<nobody@example.org>: Recipient address rejected: User unknown"}
			}
			return nil
		},
	})
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"example.org":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
		"mx.example.org": {A: []string{"127.0.0.2"}},
		"example.com":    {MX: []relaytest.MX{{Host: "mx.example.com", Pref: 10}}},
		"mx.example.com": {A: []string{"127.0.0.2"}},
	}, nil)
	id := h.enqueue("app@example.com", []string{"ok@example.org", "later@example.org", "nobody@example.org"}, msgBody)

	evs := h.expect(5) // delivered, deferred, bounced, suppressed, and the DSN delivered
	got := eventNames(evs)
	if got["ok@example.org"] != "delivered" || got["later@example.org"] != "deferred" || !strings.HasPrefix(got["nobody@example.org"], "bounced") {
		t.Fatalf("events %v", got)
	}
	if err := sink.Wait(t.Context(), 2); err != nil { // the message and the DSN
		t.Fatal(err)
	}
	msgs := sink.Messages()
	if !bytes.Equal(msgs[0].Body, []byte(msgBody)) {
		t.Errorf("body changed:\n%q\nwant\n%q", msgs[0].Body, msgBody)
	}
	if msgs[0].EHLO != "relay.test" {
		t.Errorf("EHLO %q", msgs[0].EHLO)
	}
	// The DSN goes to the sender from <>, and a real parser reads it.
	dsnMsg := msgs[1]
	if dsnMsg.From != "" || len(dsnMsg.Rcpts) != 1 || dsnMsg.Rcpts[0] != "app@example.com" {
		t.Fatalf("DSN envelope %q -> %v", dsnMsg.From, dsnMsg.Rcpts)
	}
	rep, err := bounce.Parse(bytes.NewReader(dsnMsg.Body))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Kind != bounce.KindDSN || len(rep.Recipients) != 1 || rep.Recipients[0].Address != "nobody@example.org" || rep.Recipients[0].Status != "5.1.1" {
		t.Fatalf("DSN parsed as %+v", rep)
	}
	// Queue state: ok delivered (final), later deferred 5 min on.
	m, err := h.store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range m.Recipients {
		switch r.Address {
		case "later@example.org":
			if r.Status != queue.Deferred || !r.NextAttempt.Equal(t0.Add(5*time.Minute)) || r.Attempts != 1 || !strings.HasPrefix(r.LastResponse, "450 4.2.1") {
				t.Errorf("later: %+v", r)
			}
		case "ok@example.org":
			if r.Status != queue.Delivered {
				t.Errorf("ok: %+v", r)
			}
		}
	}
	if _, ok, _ := h.store.Suppressed(t.Context(), "nobody@example.org", t0); !ok {
		t.Error("user unknown not suppressed")
	}
	// The retry at +5 min delivers "later" only: "ok" never gets it twice.
	h.clock.Advance(5 * time.Minute)
	evs = h.expect(1)
	if evs[0].Rcpt != "later@example.org" || evs[0].Event != "deferred" {
		t.Fatalf("retry: %+v", evs)
	}
	if n := len(sink.Messages()); n != 2 {
		t.Fatalf("sink got %d messages, want 2", n)
	}
	m, _ = h.store.Get(t.Context(), id)
	for _, r := range m.Recipients {
		if r.Address == "later@example.org" && (r.Attempts != 2 || !r.NextAttempt.Equal(t0.Add(15*time.Minute))) {
			t.Errorf("second retry: %+v", r)
		}
	}
}

func TestRoutingFailures(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.3:0", relaytest.SinkOptions{})
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"nullmx.example":   {NullMX: true},
		"broken.example":   {ServFail: true},
		"example.com":      {MX: []relaytest.MX{{Host: "mx.example.com", Pref: 10}}},
		"mx.example.com":   {A: []string{"127.0.0.3"}},
		"implicit.example": {A: []string{"127.0.0.3"}},
	}, nil)
	h.enqueue("app@example.com", []string{"a@nullmx.example", "b@nowhere.example", "c@broken.example", "d@implicit.example"}, msgBody)
	// a and b bounce and are suppressed for a while (a null MX and an
	// NXDOMAIN both say the domain takes no mail), c waits, d is delivered,
	// and two DSNs reach the sender.
	evs := h.expect(8)
	got := eventNames(evs)
	want := map[string]string{"a@nullmx.example": "bounced suppressed", "b@nowhere.example": "bounced suppressed", "app@example.com": "delivered delivered", "c@broken.example": "deferred", "d@implicit.example": "delivered"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	sup, ok, _ := h.store.Suppressed(t.Context(), "b@nowhere.example", t0)
	if !ok || sup.Reason != "host_unknown" || !sup.Expires.Equal(t0.Add(30*24*time.Hour)) {
		t.Errorf("NXDOMAIN suppression: %+v %v", sup, ok)
	}
	for _, e := range evs {
		if e.Rcpt == "a@nullmx.example" && !strings.Contains(e.Response, "5.1.10") {
			t.Errorf("null MX reply %q", e.Response)
		}
	}
}

func TestDropMidDataDefersAndExpiry(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.4:0", relaytest.SinkOptions{DropMidData: true})
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"example.org":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
		"mx.example.org": {A: []string{"127.0.0.4"}},
	}, func(o *Options) { o.MaxLifetime = time.Hour })
	id := h.enqueue("", []string{"x@example.org"}, msgBody)
	evs := h.expect(1)
	if evs[0].Event != "deferred" {
		t.Fatalf("%+v", evs)
	}
	if len(sink.Messages()) != 0 {
		t.Fatal("a dropped transaction counted as delivered")
	}
	// Retries at +5, +15, +35 min, then the lifetime (1 h) caps the next
	// one at +60 min, where the recipient expires. The null sender gets no DSN.
	for _, step := range []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute} {
		h.clock.Advance(step)
		if e := h.expect(1); e[0].Event != "deferred" {
			t.Fatalf("%+v", e)
		}
	}
	m, _ := h.store.Get(t.Context(), id)
	if !m.Recipients[0].NextAttempt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("next attempt %v, want capped at expiry", m.Recipients[0].NextAttempt)
	}
	h.clock.Advance(25 * time.Minute)
	if e := h.expect(1); e[0].Event != "expired" {
		t.Fatalf("%+v", e)
	}
	if _, err := h.store.Get(t.Context(), id); err == nil {
		t.Error("expired message still queued")
	}
	msgs, _ := h.store.List(t.Context(), queue.Filter{})
	if len(msgs) != 0 {
		t.Errorf("a DSN was queued for the null sender: %+v", msgs)
	}
}

// A Yahoo [TSS04] suspends yahoo for 4 h: the recipient waits, and a
// custom domain hosted by Yahoo (recognised by MX) waits too.
func TestProviderSuspension(t *testing.T) {
	var mu sync.Mutex
	tss04 := true
	sink := relaytest.NewSink(t, "127.0.0.5:0", relaytest.SinkOptions{
		Rcpt: func(addr string) error {
			mu.Lock()
			defer mu.Unlock()
			if tss04 {
				return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "[TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints"}
			}
			return nil
		},
	})
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"yahoo.com":             {MX: []relaytest.MX{{Host: "mta5.am0.yahoodns.net", Pref: 1}}},
		"custom.example":        {MX: []relaytest.MX{{Host: "mta6.am0.yahoodns.net", Pref: 1}}},
		"mta5.am0.yahoodns.net": {A: []string{"127.0.0.5"}},
		"mta6.am0.yahoodns.net": {A: []string{"127.0.0.5"}},
	}, nil)
	h.enqueue("app@example.com", []string{"a@yahoo.com"}, msgBody)
	evs := h.expect(1)
	if evs[0].Event != "deferred" || evs[0].Provider != "yahoo" {
		t.Fatalf("%+v", evs)
	}
	conns := sink.Connections()
	id2 := h.enqueue("app@example.com", []string{"b@custom.example"}, msgBody)
	// b is not tried: yahoo is suspended; it waits until the end.
	deadline := time.After(10 * time.Second)
	for {
		m, _ := h.store.Get(t.Context(), id2)
		if len(m.Recipients) == 1 && m.Recipients[0].NextAttempt.Equal(t0.Add(4*time.Hour)) {
			if m.Recipients[0].Attempts != 0 || m.Recipients[0].Provider != "yahoo" {
				t.Fatalf("suspended recipient: %+v", m.Recipients[0])
			}
			break
		}
		select {
		case <-deadline:
			t.Fatalf("b not deferred to the end of the suspension: %+v", m)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if sink.Connections() != conns {
		t.Fatal("connected to yahoo during its suspension")
	}
	mu.Lock()
	tss04 = false
	mu.Unlock()
	h.clock.Advance(4 * time.Hour)
	evs = h.expect(2)
	if got := eventNames(evs); got["a@yahoo.com"] != "delivered" || got["b@custom.example"] != "delivered" {
		t.Fatalf("after suspension: %v", got)
	}
}

func TestConnectionLimitAndReuse(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.6:0", relaytest.SinkOptions{})
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"example.org":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
		"mx.example.org": {A: []string{"127.0.0.6"}},
	}, nil)
	const n = 60
	for i := range n {
		h.enqueue("app@example.com", []string{fmt.Sprintf("r%d@example.org", i)}, msgBody)
	}
	h.expect(n)
	if got := len(sink.Messages()); got != n {
		t.Fatalf("sink got %d, want %d", got, n)
	}
	if sink.MaxConcurrent() > 20 {
		t.Errorf("%d concurrent connections, default limit 20", sink.MaxConcurrent())
	}
	if sink.Connections() >= n {
		t.Errorf("%d connections for %d messages: no reuse", sink.Connections(), n)
	}
}

var _ = io.Discard

func TestMailboxFullSuppressedOnlyWhenRepeated(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.7:0", relaytest.SinkOptions{Rcpt: func(addr string) error {
		if strings.HasPrefix(addr, "full@") {
			return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Mailbox full: user quota exceeded"}
		}
		return nil
	}})
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"example.org":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
		"mx.example.org": {A: []string{"127.0.0.7"}},
	}, nil)
	for day, wantSuppressed := range []bool{false, false, true} {
		h.enqueue("", []string{"full@example.org"}, msgBody)
		evs := h.expect(1)
		if evs[0].Event != "bounced" {
			t.Fatalf("day %d: %+v", day*2, evs)
		}
		if wantSuppressed {
			h.expect(1) // suppressed
		}
		_, ok, _ := h.store.Suppressed(t.Context(), "full@example.org", h.clock.Now())
		if ok != wantSuppressed {
			t.Fatalf("after bounce %d (day %d): suppressed=%v, want %v", day+1, day*2, ok, wantSuppressed)
		}
		h.clock.Advance(2 * 24 * time.Hour)
	}
}

func TestSTARTTLSRecordedInLog(t *testing.T) {
	cert := relaytest.SelfSignedCert(t, "mx.example.org")
	sink := relaytest.NewSink(t, "127.0.0.8:0", relaytest.SinkOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"example.org":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
		"mx.example.org": {A: []string{"127.0.0.8"}},
	}, nil)
	h.enqueue("", []string{"tls@example.org"}, msgBody)
	if e := h.expect(1); e[0].Event != "delivered" {
		t.Fatalf("%+v", e)
	}
	if m := sink.Messages(); len(m) != 1 || !m[0].TLS {
		t.Fatalf("not sent over TLS: %+v", m)
	}
	h.logMu.Lock()
	log := h.log.String()
	h.logMu.Unlock()
	for _, want := range []string{"tls=opportunistic", "cipher=TLS1.3:", "cv=no", `dn=CN=mx.example.org`, "mx=mx.example.org", "ip=127.0.0.8"} {
		if !strings.Contains(log, want) && !strings.Contains(log, strings.ReplaceAll(want, `dn=`, `dn="`)) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// A reply that arrives during shutdown's grace period is recorded: the
// recipient is not sent again at restart (the review's finding 1).
func TestOutcomeDuringShutdownIsRecorded(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	sink := relaytest.NewSink(t, "127.0.0.9:0", relaytest.SinkOptions{Data: func([]string, []byte) error {
		entered <- struct{}{}
		<-release
		return nil
	}})
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"example.org":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
		"mx.example.org": {A: []string{"127.0.0.9"}},
	}, func(o *Options) { o.ShutdownTimeout = 30 * time.Second })
	id := h.enqueue("app@example.com", []string{"late@example.org"}, msgBody)
	<-entered
	h.cancel()
	close(release)
	err := <-h.done
	h.done <- err // for the harness's cleanup
	if _, err := h.store.Get(t.Context(), id); !errors.Is(err, queue.ErrNotFound) {
		m, _ := h.store.Get(t.Context(), id)
		t.Fatalf("the delivery acknowledged during shutdown was not recorded: %+v", m)
	}
}

// A relayhost that defers a Yahoo recipient: Yahoo was never contacted, so
// the retry follows facteur's default schedule (+5 min), not Yahoo's; the
// attempt is kept in the recipient's history with the host it talked to.
func TestRelayhostDeferralFollowsOwnSchedule(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.6:0", relaytest.SinkOptions{Rcpt: func(string) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "relay busy"}
	}})
	h := newHarness(t, sink.Port(), nil, func(o *Options) {
		o.Relayhost = fmt.Sprintf("127.0.0.6:%d", sink.Port())
		o.RelayhostDial = o.Dial
	})
	id := h.enqueue("app@example.com", []string{"a@yahoo.com"}, msgBody)
	if e := h.expect(1); e[0].Event != "deferred" {
		t.Fatalf("%+v", e)
	}
	m, err := h.store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	r := m.Recipients[0]
	if !r.NextAttempt.Equal(t0.Add(5 * time.Minute)) {
		t.Errorf("next attempt %v, want the default schedule's %v", r.NextAttempt, t0.Add(5*time.Minute))
	}
	if len(r.History) != 1 || r.History[0].MX != "127.0.0.6" || !strings.Contains(r.History[0].Response, "451 4.3.0 relay busy") {
		t.Errorf("history %+v", r.History)
	}
}

// Mail for the host's own users goes to their mailbox; an unknown local name
// bounces; and neither that nor an NXDOMAIN for an own domain ever
// suppresses the address (issue 13: root@vm suppressed for 30 days).
func TestLocalDeliveryAndOwnAddressesNeverSuppressed(t *testing.T) {
	spool := t.TempDir()
	uid, gid := os.Getuid(), os.Getgid()
	boxes := &local.Mailboxes{Dir: spool, Lookup: func(name string) (int, int, error) {
		if name == "root" {
			return uid, gid, nil
		}
		return 0, 0, local.ErrNoUser
	}}
	h := newHarness(t, 25, nil, func(o *Options) {
		o.Local = boxes
		o.OwnDomains = []string{"corp.example"}
	})
	// Submitted by a local account: every event names it, the local
	// delivery's too (the dashboard's senders page counts by it).
	if _, err := h.store.Enqueue(t.Context(), queue.Envelope{Recipients: []string{"root@relay.test", "ghost@relay.test", "root@corp.example"}, User: "backup"},
		[]byte("Subject: cron\r\n\r\nFrom the cron job\r\n"), h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	h.sched.Wake()
	evs := h.expect(3)
	for _, e := range evs {
		if e.User != "backup" {
			t.Errorf("%s event for %s names user %q, want backup", e.Event, e.Rcpt, e.User)
		}
	}
	got := eventNames(evs)
	want := map[string]string{"root@relay.test": "delivered", "ghost@relay.test": "bounced", "root@corp.example": "bounced"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q (all %v)", k, got[k], v, got)
		}
	}
	mbox, err := os.ReadFile(filepath.Join(spool, "root"))
	if err != nil || !strings.HasPrefix(string(mbox), "From MAILER-DAEMON ") || !strings.Contains(string(mbox), "\n>From the cron job\n") {
		t.Errorf("mailbox: %v\n%s", err, mbox)
	}
	for _, a := range []string{"ghost@relay.test", "root@corp.example"} {
		if _, ok, _ := h.store.Suppressed(t.Context(), a, t0); ok {
			t.Errorf("%s was suppressed", a)
		}
	}
	// The NXDOMAIN asked for a suppression, which was refused and logged
	// (after the bounced event the test waited for: poll the log).
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.logMu.Lock()
		log := h.log.String()
		h.logMu.Unlock()
		if strings.Contains(log, `msg="not suppressed" rcpt=<root@corp.example>`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 'not suppressed' line:\n%s", log)
		}
		time.Sleep(2 * time.Millisecond)
	}
	for _, a := range []string{"ghost@relay.test", "root@corp.example"} {
		if _, ok, _ := h.store.Suppressed(t.Context(), a, t0); ok {
			t.Errorf("%s was suppressed", a)
		}
	}
}

// The dev config's "*": hold keeps every domain on the host; a domain's own
// route still wins over it.
func TestStarRouteHoldsEverythingElse(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.7:0", relaytest.SinkOptions{})
	h := newHarness(t, sink.Port(), nil, func(o *Options) {
		o.Routes = map[string]string{"*": "hold", "sink.example": fmt.Sprintf("127.0.0.7:%d", sink.Port())}
	})
	id := h.enqueue("app@example.com", []string{"a@gmail.com", "b@sink.example"}, msgBody)
	got := eventNames(h.expect(1))
	if got["b@sink.example"] != "delivered" {
		t.Fatalf("events %v", got)
	}
	m, err := h.store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Recipients[0]; r.Address != "a@gmail.com" || r.Status != queue.Held || r.Attempts != 0 {
		t.Errorf("a@gmail.com: %+v, want held without an attempt", r)
	}
}

// TestReplyStageDecidesSuppression: the same "550 5.1.1 User unknown" means
// three things depending on the command it answers (issue 12). To MAIL FROM
// it is about the sender and never suppresses the recipient; to RCPT TO it
// suppresses at once; to DATA it concerns every recipient of the
// transaction, a soft bounce suppressed only when repeated over days.
func TestReplyStageDecidesSuppression(t *testing.T) {
	unknown := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	tests := []struct {
		name  string
		opts  relaytest.SinkOptions
		stage string
		want  []bool // suppressed after each of three bounces, two days apart
	}{
		{"reply to MAIL FROM", relaytest.SinkOptions{Mail: func(string) error { return unknown }}, "mail", []bool{false, false, false}},
		{"reply to RCPT TO", relaytest.SinkOptions{Rcpt: func(string) error { return unknown }}, "rcpt", []bool{true}},
		{"reply to DATA", relaytest.SinkOptions{Data: func([]string, []byte) error { return unknown }}, "data", []bool{false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := relaytest.NewSink(t, "127.0.0.2:0", tt.opts)
			h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
				"example.org":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
				"mx.example.org": {A: []string{"127.0.0.2"}},
			}, nil)
			for i, want := range tt.want {
				h.enqueue("", []string{"bob@example.org"}, msgBody)
				evs := h.expect(1)
				if evs[0].Event != "bounced" {
					t.Fatalf("bounce %d: %+v", i+1, evs)
				}
				if want {
					if e := h.expect(1); e[0].Event != "suppressed" {
						t.Fatalf("bounce %d: %+v, want suppressed", i+1, e)
					}
				}
				_, ok, _ := h.store.Suppressed(t.Context(), "bob@example.org", h.clock.Now())
				h.logMu.Lock()
				log := h.log.String()
				h.logMu.Unlock()
				if ok != want {
					t.Fatalf("after bounce %d: suppressed=%v, want %v\nlog:\n%s", i+1, ok, want, log)
				}
				if !strings.Contains(log, " stage="+tt.stage+" ") {
					t.Fatalf("no stage=%s on the bounced line:\n%s", tt.stage, log)
				}
				h.clock.Advance(2 * 24 * time.Hour)
			}
		})
	}
}

// A reply about the sender domain (550 5.7.26, DMARC) holds that sender
// domain's mail at the provider, untried until the hold ends; the other
// sender domains' mail keeps going to the same MX (issue 14 §2).
func TestSenderDomainSuspension(t *testing.T) {
	var mu sync.Mutex
	mails := map[string]int{}
	sink := relaytest.NewSink(t, "127.0.0.5:0", relaytest.SinkOptions{
		Mail: func(from string) error {
			mu.Lock()
			defer mu.Unlock()
			mails[address.Domain(from)]++
			if address.Domain(from) == "bad.example" {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 26}, Message: "Unauthenticated email from bad.example is not accepted due to domain's DMARC policy"}
			}
			return nil
		},
	})
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"gmail.com":                  {MX: []relaytest.MX{{Host: "gmail-smtp-in.l.google.com", Pref: 5}}},
		"gmail-smtp-in.l.google.com": {A: []string{"127.0.0.5"}},
	}, nil)
	// DMARC refusals bounce by default; a site may hold the domain instead.
	p, err := policy.Parse("hold.yaml", []byte(`
providers:
  google:
    rules:
      - {name: dmarc-hold, enhanced: 5.7.26, class: auth_failure, action: suspend, duration: 1h}
`))
	if err != nil {
		t.Fatal(err)
	}
	h.engine.Swap(p, t0)

	h.enqueue("app@bad.example", []string{"a@gmail.com"}, msgBody)
	if evs := h.expect(1); evs[0].Event != "deferred" || evs[0].Provider != "google" {
		t.Fatalf("%+v", evs)
	}
	good := h.enqueue("app@good.example", []string{"b@gmail.com"}, msgBody)
	if evs := h.expect(1); evs[0].Event != "delivered" || evs[0].ID != good {
		t.Fatalf("the other sender domain's mail: %+v", evs)
	}
	held := h.enqueue("other@bad.example", []string{"c@gmail.com"}, msgBody)
	deadline := time.After(10 * time.Second)
	for {
		m, _ := h.store.Get(t.Context(), held)
		if len(m.Recipients) == 1 && m.Recipients[0].NextAttempt.Equal(t0.Add(time.Hour)) {
			if m.Recipients[0].Attempts != 0 || m.Recipients[0].Status != queue.Queued {
				t.Fatalf("held recipient: %+v", m.Recipients[0])
			}
			break
		}
		select {
		case <-deadline:
			t.Fatalf("bad.example's second message not held to the end of the suspension: %+v", m)
		case <-time.After(5 * time.Millisecond):
		}
	}
	// Once held, good.example still goes.
	good2 := h.enqueue("app@good.example", []string{"d@gmail.com"}, msgBody)
	if evs := h.expect(1); evs[0].Event != "delivered" || evs[0].ID != good2 {
		t.Fatalf("after the hold: %+v", evs)
	}
	mu.Lock()
	if mails["bad.example"] != 1 || mails["good.example"] != 2 {
		t.Fatalf("MAIL FROM per sender domain: %v", mails)
	}
	mu.Unlock()
	for _, ps := range h.engine.Snapshot(t0) {
		if ps.Name != "google" {
			continue
		}
		if ps.SuspendedUntil != nil || len(ps.Senders) != 1 || ps.Senders[0].Domain != "bad.example" || ps.Senders[0].Scope != policy.ScopeDomain {
			t.Fatalf("providers: %+v", ps)
		}
	}
}

// The connection cache (delivery.connection_cache_time): a connection whose
// lane emptied waits for the next message to the destination instead of
// closing, and closes once the hold is over on the clock.
func TestConnectionCache(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hold  time.Duration
		conns int
	}{
		{"off", 0, 2},
		{"on", 2 * time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := relaytest.NewSink(t, "127.0.0.6:0", relaytest.SinkOptions{})
			h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
				"example.org":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
				"mx.example.org": {A: []string{"127.0.0.6"}},
			}, func(o *Options) { o.ConnectionCache = tc.hold })
			h.enqueue("app@example.com", []string{"a@example.org"}, msgBody)
			h.expect(1)
			if tc.hold == 0 {
				waitOpen(t, sink, 0) // closed with the lane empty
			}
			h.enqueue("app@example.com", []string{"b@example.org"}, msgBody)
			h.expect(1)
			if got := sink.Connections(); got != tc.conns {
				t.Fatalf("%d connections for two messages, want %d", got, tc.conns)
			}
			if tc.hold > 0 {
				if sink.Open() != 1 {
					t.Fatalf("%d connections open during the hold, want 1", sink.Open())
				}
				// The worker reads the clock for its deadline after the
				// delivery event: advance until the hold is seen to end.
				deadline := time.Now().Add(10 * time.Second)
				for sink.Open() != 0 {
					if time.Now().After(deadline) {
						t.Fatalf("%d connections open after the hold", sink.Open())
					}
					h.clock.Advance(tc.hold)
					time.Sleep(2 * time.Millisecond)
				}
			}
		})
	}
}

// waitOpen waits (real time, bounded) until the sink has n connections open.
func waitOpen(t *testing.T, sink *relaytest.Sink, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for sink.Open() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open, want %d", sink.Open(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestCyclePauseOnTheClock: cycles are paced on the injected clock, not the
// wall clock. A clock that moved by less than minCycle since the last
// cycle makes the next one wait the rest on that clock (the fake reports
// the wait and releases it on Advance); a clock that stands still does not
// pace at all, which is how the other tests run on their fake clock.
func TestCyclePauseOnTheClock(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{})
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"example.org":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
		"mx.example.org": {A: []string{"127.0.0.2"}},
	}, nil)
	h.enqueue("app@example.com", []string{"a@example.org"}, msgBody)
	h.expect(1)
	// The clock moves 1 ms: the next wake waits the 4 ms left, on the clock.
	h.clock.Advance(time.Millisecond)
	h.enqueue("app@example.com", []string{"b@example.org"}, msgBody)
	rest := minCycle - time.Millisecond
	deadline := time.After(20 * time.Second)
	for seen := false; !seen; {
		select {
		case d := <-h.clock.Waits():
			seen = d == rest
		case <-deadline:
			t.Fatalf("no wait of %v on the clock", rest)
		}
	}
	h.clock.Advance(rest)
	if evs := h.expect(1); evs[0].Rcpt != "b@example.org" || evs[0].Event != "delivered" {
		t.Fatalf("events %+v", evs)
	}
}

// A connection held idle for its lane gives its slot up at once to another
// lane of the provider waiting for one (the provider allows one connection):
// the second domain's mail does not wait for the hold to end.
func TestConnectionCacheYieldsSlot(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.6:0", relaytest.SinkOptions{})
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"gmail.com":                  {MX: []relaytest.MX{{Host: "gmail-smtp-in.l.google.com", Pref: 5}}},
		"googlemail.com":             {MX: []relaytest.MX{{Host: "gmail-smtp-in.l.google.com", Pref: 5}}},
		"gmail-smtp-in.l.google.com": {A: []string{"127.0.0.6"}},
	}, func(o *Options) { o.ConnectionCache = time.Hour })
	p, err := policy.Parse("one.yaml", []byte("providers:\n  google:\n    connections: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	h.engine.Swap(p, t0)
	h.enqueue("app@example.com", []string{"a@gmail.com"}, msgBody)
	h.expect(1)
	waitOpen(t, sink, 1) // held for gmail.com's lane
	h.enqueue("app@example.com", []string{"b@googlemail.com"}, msgBody)
	if evs := h.expect(1); evs[0].Event != "delivered" || evs[0].Rcpt != "b@googlemail.com" {
		t.Fatalf("%+v", evs)
	}
	if sink.MaxConcurrent() > 1 {
		t.Errorf("%d connections at once, the provider allows 1", sink.MaxConcurrent())
	}
}

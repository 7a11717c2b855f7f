package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/breaker"
	"facteur/relay/config"
	"facteur/relay/daemon"
)

// saveWWWDataTrip trips user=www-data (and its sender domain) in a breaker
// of cfg and saves its state where the daemon keeps it.
func saveWWWDataTrip(t *testing.T, cfg *config.Config, store *queue.Store) {
	t.Helper()
	c := cfg.Breaker
	b := breaker.New(breaker.Config{Window: time.Duration(c.Window), MinRecipients: c.MinRecipients,
		MaxFailed: c.MaxFailed, MaxDeferred: c.MaxDeferred, Per: c.Per})
	now := time.Now()
	for i := range 20 {
		b.Observe(breaker.Outcome{ID: fmt.Sprintf("M%d", i), Rcpt: fmt.Sprintf("u%d@example.org", i), Status: breaker.Bounced,
			Reply: "550 5.1.1 user unknown", At: now, Sender: breaker.Sender{User: "www-data", Address: "noreply@shop.example"}}, now)
	}
	st, err := b.MarshalState(now)
	if err == nil {
		err = store.PutState(t.Context(), daemon.BreakerStateKey, st)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// With the daemon down, `breaker list` and `breaker reset` work on the
// database, like `queue list`: the state the daemon saved is read, and the
// reset releases the held mail for the next start.
func TestBreakerCLIDaemonDown(t *testing.T) {
	e := newCLIEnv(t, "breaker:\n  notify: [sec@example.com]\n")
	cfg, err := config.Load(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if out := e.ok("", "breaker", "list"); !strings.Contains(out, "no sender stopped") {
		t.Fatalf("list without a database: %s", out)
	}
	store, err := admin.OpenStore(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	saveWWWDataTrip(t, cfg, store)
	held, err := store.Enqueue(context.Background(), queue.Envelope{Sender: "noreply@shop.example", User: "www-data", UID: 33,
		Recipients: []string{"a@example.org"}, Hold: breaker.Reason}, []byte("Subject: x\r\n\r\nx\r\n"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := store.Enqueue(context.Background(), queue.Envelope{Sender: "alice@blog.example", User: "alice", UID: 1000,
		Recipients: []string{"b@example.org"}, Hold: breaker.Reason}, []byte("Subject: x\r\n\r\nx\r\n"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	store.Close()

	out := e.ok("", "breaker", "list")
	for _, want := range []string{"user=www-data", "sender_domain=shop.example", "failed=100% deferred=0% of 20 recipients in 1h"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if r := e.run("", "breaker", "reset", "nobody"); r.code == 0 || !strings.Contains(r.stderr, "no stopped sender") {
		t.Errorf("reset of an unknown sender: %+v", r)
	}
	// A bare name resolves to the one stopped key it names; the domain
	// key still stops the message, so nothing is released yet.
	if out := e.ok("", "breaker", "reset", "www-data"); !strings.Contains(out, "user=www-data reset") || !strings.Contains(out, "0 held messages released") {
		t.Errorf("reset www-data: %s", out)
	}
	if out := e.ok("", "breaker", "reset", "sender_domain=shop.example"); !strings.Contains(out, "1 held message released") {
		t.Errorf("reset the domain: %s", out)
	}
	if out := e.ok("", "breaker", "list"); !strings.Contains(out, "no sender stopped") {
		t.Errorf("list after reset: %s", out)
	}
	store, err = admin.OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m, err := store.Get(context.Background(), held)
	if err != nil || m.HoldReason != "" || m.Recipients[0].Status != queue.Queued {
		t.Errorf("released message: %+v %v", m, err)
	}
	// Another sender's held mail (held by a breaker of its own, reset
	// elsewhere) is not this reset's business.
	if m, err := store.Get(context.Background(), other); err != nil || m.HoldReason != breaker.Reason {
		t.Errorf("other sender's message: %+v %v", m, err)
	}
}

func TestBreakerResetDelete(t *testing.T) {
	e := newCLIEnv(t, "breaker: {}\n")
	cfg, err := config.Load(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := admin.OpenStore(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	saveWWWDataTrip(t, cfg, store)
	id, err := store.Enqueue(context.Background(), queue.Envelope{Sender: "noreply@shop.example", User: "www-data", UID: 33,
		Recipients: []string{"a@example.org"}, Hold: breaker.Reason}, []byte("Subject: x\r\n\r\nx\r\n"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	if out := e.ok("", "breaker", "reset", "--delete", "user=www-data", "sender_domain=shop.example"); !strings.Contains(out, "1 held message deleted") {
		t.Errorf("reset --delete: %s", out)
	}
	store, err = admin.OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Get(context.Background(), id); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("held message after reset --delete: %v", err)
	}
}

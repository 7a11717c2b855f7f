package scheduler

import (
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/relay/breaker"
	"facteur/relay/relaytest"
)

// fakeBreaker records what the scheduler tells it and stops one sender.
type fakeBreaker struct {
	mu   sync.Mutex
	seen []breaker.Outcome
	stop string // envelope sender to stop
}

func (f *fakeBreaker) Observe(msg queue.Message, o breaker.Outcome) {
	if msg.Sender == "" {
		return // the DSN of the bounce (the real breaker watches no null sender)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	o.Sender = breaker.Sender{Address: msg.Sender}
	f.seen = append(f.seen, o)
}

func (f *fakeBreaker) Stopped(msg queue.Message) (string, bool) {
	if msg.Sender == f.stop {
		return "sender_domain=hacked.example", true
	}
	return "", false
}

// Issue 21: the scheduler reports each recorded outcome to the breaker
// (with the provider-wide flag and class it needs to excuse deferrals), and
// holds, before the send, the mail of a sender it stops.
func TestBreakerHooks(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.5:0", relaytest.SinkOptions{
		Rcpt: func(addr string) error {
			switch {
			case strings.HasPrefix(addr, "nobody@"):
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
			case strings.HasPrefix(addr, "later@"):
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
			}
			return nil
		},
	})
	fb := &fakeBreaker{stop: "spam@hacked.example"}
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"example.org":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
		"mx.example.org": {A: []string{"127.0.0.5"}},
	}, func(o *Options) { o.Breaker = fb })

	stopped := h.enqueue("spam@hacked.example", []string{"victim@example.org"}, msgBody)
	h.enqueue("app@shop.example", []string{"ok@example.org", "nobody@example.org", "later@example.org"}, msgBody)
	h.expect(4) // delivered, bounced, deferred, suppressed (the DSN goes to shop.example, unresolvable)

	m, err := h.store.Get(t.Context(), stopped)
	if err != nil {
		t.Fatal(err)
	}
	if m.HoldReason != breaker.Reason || m.Recipients[0].Status != queue.Held || m.Recipients[0].Attempts != 0 {
		t.Fatalf("stopped sender's message: %+v", m)
	}
	for _, msg := range sink.Messages() {
		if msg.From == "spam@hacked.example" {
			t.Fatal("a stopped sender's message was sent")
		}
	}
	h.logMu.Lock()
	logText := h.log.String()
	h.logMu.Unlock()
	if !strings.Contains(logText, "msg=held qid="+string(stopped)+" reason=breaker sender_domain=hacked.example") {
		t.Errorf("no held line for %s:\n%s", stopped, logText)
	}

	fb.mu.Lock()
	defer fb.mu.Unlock()
	got := map[string]breaker.Status{}
	for _, o := range fb.seen {
		if o.Sender.Address != "app@shop.example" || o.At.IsZero() || o.ID == "" {
			t.Errorf("outcome %+v", o)
		}
		got[o.Rcpt] = o.Status
	}
	want := map[string]breaker.Status{"ok@example.org": breaker.Delivered, "nobody@example.org": breaker.Bounced, "later@example.org": breaker.Deferred}
	for r, st := range want {
		if got[r] != st {
			t.Errorf("%s: %q, want %q (all: %v)", r, got[r], st, got)
		}
	}
}

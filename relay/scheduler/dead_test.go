package scheduler

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"facteur/queue"
	"facteur/relay/delivery"
	"facteur/relay/relaytest"
)

// refuser is a relayhost that is down: it takes each connection and closes
// it before any greeting, counting them.
type refuser struct {
	ln    net.Listener
	conns atomic.Int64
	done  chan struct{}
}

func newRefuser(t *testing.T, addr string) *refuser {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &refuser{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(r.close)
	return r
}

func (r *refuser) close() {
	r.ln.Close()
	<-r.done
}

// A relayhost that refuses connections costs one attempt per back-off
// period, not one per message: after the first failure its due messages
// are deferred in bulk, the period's end brings one probe, and when the
// relayhost is back the probe revives it and everything is delivered.
func TestDeadRelayhostDefersInBulk(t *testing.T) {
	ref := newRefuser(t, "127.0.0.9:0")
	relayhost := ref.ln.Addr().String()
	h := newHarness(t, 0, nil, func(o *Options) {
		o.Relayhost = relayhost
		o.RelayhostDial = delivery.Options{Hostname: "relay.test", Timeouts: delivery.DefaultTimeouts(), NoTLS: true}
	})
	const n = 300
	domains := []string{"example.org", "example.net", "example.com"}
	for i := range n {
		h.enqueue("app@example.com", []string{fmt.Sprintf("u%d@%s", i, domains[i%len(domains)])}, msgBody)
	}
	countDeferred := func(evs []DeliveryEvent) int {
		k := 0
		for _, e := range evs {
			if e.Event == "deferred" {
				k++
			}
		}
		return k
	}
	if k := countDeferred(h.expect(n)); k != n {
		t.Fatalf("%d of %d deferred", k, n)
	}
	// One connection per lane started before the first failure at most.
	first := ref.conns.Load()
	if first < 1 || first > int64(len(domains)) {
		t.Fatalf("%d connection attempts for %d due messages, want 1..%d", first, n, len(domains))
	}
	msgs, err := h.store.List(t.Context(), queue.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		r := m.Recipients[0]
		if r.Status != queue.Deferred || r.Attempts != 1 || r.NextAttempt.Before(t0.Add(defaultDeadBackoff)) {
			t.Fatalf("%s: %+v", m.ID, r)
		}
	}

	// The period ends: one probe, refused; everything waits twice as long.
	h.clock.Advance(defaultDeadBackoff)
	if k := countDeferred(h.expect(n)); k != n {
		t.Fatalf("after the probe: %d of %d deferred", k, n)
	}
	if got := ref.conns.Load() - first; got != 1 {
		t.Fatalf("%d connection attempts at the end of the period, want 1 probe", got)
	}
	h.logMu.Lock()
	logged := h.log.String()
	h.logMu.Unlock()
	if want := "until=" + t0.Add(3*defaultDeadBackoff).Format("2006-01-02T15:04:05.000Z07:00"); !containsAll(logged, "destination dead", want) {
		t.Fatalf("no dead-destination line with %s:\n%s", want, logged)
	}

	// The relayhost is back: the next probe succeeds and the lanes drain.
	ref.close()
	sink := relaytest.NewSink(t, relayhost, relaytest.SinkOptions{})
	h.clock.Advance(2 * defaultDeadBackoff)
	evs := h.expect(n)
	for _, e := range evs {
		if e.Event != "delivered" {
			t.Fatalf("after revival: %+v", e)
		}
	}
	if err := sink.Wait(t.Context(), n); err != nil {
		t.Fatal(err)
	}
}

// `queue flush` revives a dead destination at once (Postfix's flush does).
func TestReviveConnectsAtOnce(t *testing.T) {
	ref := newRefuser(t, "127.0.0.9:0")
	relayhost := ref.ln.Addr().String()
	h := newHarness(t, 0, nil, func(o *Options) {
		o.Relayhost = relayhost
		o.RelayhostDial = delivery.Options{Hostname: "relay.test", Timeouts: delivery.DefaultTimeouts(), NoTLS: true}
	})
	id := h.enqueue("app@example.com", []string{"a@example.org"}, msgBody)
	if e := h.expect(1); e[0].Event != "deferred" {
		t.Fatalf("%+v", e)
	}
	ref.close()
	sink := relaytest.NewSink(t, relayhost, relaytest.SinkOptions{})
	if _, err := h.store.Flush(t.Context(), id, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	h.sched.Revive()
	if e := h.expect(1); e[0].Event != "delivered" {
		t.Fatalf("%+v", e)
	}
	if sink.Connections() != 1 {
		t.Fatalf("%d connections", sink.Connections())
	}
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

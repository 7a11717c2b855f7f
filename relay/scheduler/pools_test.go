package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/relay/config"
	"facteur/relay/pool"
	"facteur/relay/relaytest"
)

// yahooZones route yahoo.com to a fake Yahoo MX on 127.0.0.5 (the policy
// recognizes Yahoo by its yahoodns.net MX).
var yahooZones = map[string]relaytest.Zone{
	"yahoo.com":             {MX: []relaytest.MX{{Host: "mta5.am0.yahoodns.net", Pref: 1}}},
	"mta5.am0.yahoodns.net": {A: []string{"127.0.0.5"}},
}

// poolSet is a pool "shop" of 127.0.0.2 and 127.0.0.3 for the mail of
// shop.example; warm, when set, is 127.0.0.3's warm-up.
func poolSet(t *testing.T, overflow string, warm *config.Warmup) *pool.Set {
	t.Helper()
	cfg := config.Default()
	cfg.Pools = map[string]config.Pool{"shop": {Overflow: overflow, IPs: []config.PoolIP{
		{Addr: "127.0.0.2"}, {Addr: "127.0.0.3", EHLO: "out3.relay.test", Warmup: warm},
	}}}
	cfg.PoolBy = config.PoolBy{SenderDomain: map[string]string{"shop.example": "shop"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return pool.New(cfg)
}

// bySource counts a sink's messages by the client's address.
func bySource(msgs []relaytest.SinkMessage) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		host, _, _ := strings.Cut(m.RemoteAddr, ":")
		out[host]++
	}
	return out
}

func enqueueN(h *harness, from string, n int) {
	for i := range n {
		h.enqueue(from, []string{fmt.Sprintf("u%d@yahoo.com", i)}, msgBody)
	}
}

func countEvents(evs []DeliveryEvent) map[string]int {
	out := map[string]int{}
	for _, e := range evs {
		out[e.Event+" "+e.SourceIP]++
	}
	return out
}

// A pool's mail leaves from each of its IPs, each with its EHLO name;
// mail of other senders from the default address.
func TestPoolSpreadsOverIPs(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.5:0", relaytest.SinkOptions{})
	pools := poolSet(t, "", nil)
	h := newHarness(t, sink.Port(), yahooZones, func(o *Options) { o.Pools = pools })
	enqueueN(h, "news@shop.example", 40)
	evs := h.expect(40)
	if n := countEvents(evs); n["delivered 127.0.0.2"] == 0 || n["delivered 127.0.0.3"] == 0 || n["delivered 127.0.0.2"]+n["delivered 127.0.0.3"] != 40 {
		t.Fatalf("events by source: %v", n)
	}
	got := bySource(sink.Messages())
	if got["127.0.0.2"] == 0 || got["127.0.0.3"] == 0 || got["127.0.0.2"]+got["127.0.0.3"] != 40 {
		t.Fatalf("sink saw sources %v", got)
	}
	for _, m := range sink.Messages() {
		if strings.HasPrefix(m.RemoteAddr, "127.0.0.3:") && m.EHLO != "out3.relay.test" {
			t.Fatalf("127.0.0.3 said EHLO %q", m.EHLO)
		}
	}
	h.enqueue("app@other.example", []string{"x@yahoo.com"}, msgBody)
	if evs := h.expect(1); evs[0].SourceIP != "" || evs[0].Event != "delivered" {
		t.Fatalf("unpooled mail: %+v", evs[0])
	}
}

// A [TSS04] answered only to 127.0.0.3 suspends (127.0.0.3, yahoo): the
// pool's 127.0.0.2 keeps delivering.
func TestPoolSuspensionPerIP(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.5:0", relaytest.SinkOptions{
		MailFrom: func(remote, _ string) error {
			if strings.HasPrefix(remote, "127.0.0.3:") {
				return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "[TSS04] Messages from 127.0.0.3 temporarily deferred due to unexpected volume or user complaints"}
			}
			return nil
		},
	})
	pools := poolSet(t, "", nil)
	h := newHarness(t, sink.Port(), yahooZones, func(o *Options) { o.Pools = pools })
	enqueueN(h, "news@shop.example", 30)
	evs := h.expect(30)
	n := countEvents(evs)
	if n["delivered 127.0.0.2"] < 20 || n["delivered 127.0.0.3"] != 0 || n["delivered 127.0.0.2"]+n["deferred 127.0.0.3"] != 30 {
		t.Fatalf("events by source: %v", n)
	}
	now := h.clock.Now()
	if until, _ := h.engine.SuspendedUntilFrom("127.0.0.3", "yahoo", "yahoo.com", now); !until.Equal(now.Add(4 * time.Hour)) {
		t.Errorf("127.0.0.3 suspended until %v", until)
	}
	if until, _ := h.engine.SuspendedUntilFrom("127.0.0.2", "yahoo", "yahoo.com", now); !until.IsZero() {
		t.Errorf("127.0.0.2 suspended until %v", until)
	}
	// More mail after the suspension goes from 127.0.0.2 only.
	enqueueN(h, "news@shop.example", 10)
	if n := countEvents(h.expect(10)); n["delivered 127.0.0.2"] != 10 {
		t.Fatalf("after the suspension: %v", n)
	}
	if got := bySource(sink.Messages()); got["127.0.0.3"] != 0 {
		t.Fatalf("sink accepted from 127.0.0.3: %v", got)
	}
}

// With 127.0.0.3 on warm-up day 0 (20 a day at yahoo), at most 20 of 60
// leave from it; the rest overflow to the warm 127.0.0.2 (overflow: warm)
// or wait for the next UTC day (overflow: wait), none bounced.
func TestPoolWarmup(t *testing.T) {
	for _, tc := range []struct {
		overflow string
		from2    int // from the warm IP on day 0
		waiting  int
	}{
		{config.OverflowWarm, 40, 0},
		{config.OverflowWait, 0, 40},
	} {
		t.Run(tc.overflow, func(t *testing.T) {
			sink := relaytest.NewSink(t, "127.0.0.5:0", relaytest.SinkOptions{})
			warm := &config.Warmup{Start: t0.Truncate(24 * time.Hour), Schedule: []int{20, 50}}
			pools := poolSet(t, tc.overflow, warm)
			h := newHarness(t, sink.Port(), yahooZones, func(o *Options) { o.Pools = pools })
			enqueueN(h, "news@shop.example", 60)
			evs := h.expect(60 - tc.waiting)
			n := countEvents(evs)
			if n["delivered 127.0.0.3"] != 20 || n["delivered 127.0.0.2"] != tc.from2 {
				t.Fatalf("events by source: %v", n)
			}
			if lim, sent, ok := pools.Cap(pools.IP("127.0.0.3"), "yahoo", h.clock.Now()); !ok || lim != 20 || sent != 20 {
				t.Errorf("cap %d sent %d warming %v", lim, sent, ok)
			}
			if tc.waiting == 0 {
				return
			}
			// The rest waits, queued, for the next UTC midnight: none bounced.
			midnight := pool.NextDay(h.clock.Now())
			deadline := time.Now().Add(10 * time.Second)
			for {
				c, _ := countQueued(h, midnight)
				if c == tc.waiting {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d recipients wait for %v, want %d", c, midnight, tc.waiting)
				}
				time.Sleep(10 * time.Millisecond)
			}
			// Day 1 lifts the cap to 50: the rest leaves from 127.0.0.3.
			h.clock.Advance(midnight.Sub(h.clock.Now()))
			h.sched.Wake()
			if n := countEvents(h.expect(tc.waiting)); n["delivered 127.0.0.3"] != tc.waiting {
				t.Fatalf("day 1: %v", n)
			}
		})
	}
}

// countQueued counts the recipients not yet delivered whose next attempt
// is at; bounced is how many bounced.
func countQueued(h *harness, at time.Time) (waiting, bounced int) {
	msgs, err := h.store.List(h.t.Context(), queue.Filter{})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, m := range msgs {
		for _, r := range m.Recipients {
			switch {
			case r.Status == queue.Bounced:
				bounced++
			case r.Status != queue.Delivered && r.NextAttempt.Equal(at):
				waiting++
			}
		}
	}
	return waiting, bounced
}

// A [TSS04] to a warming IP holds its ramp a day, logged once.
func TestPoolWarmupHeldByBlock(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.0.5:0", relaytest.SinkOptions{
		MailFrom: func(remote, _ string) error {
			if strings.HasPrefix(remote, "127.0.0.3:") {
				return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "[TSS04] Messages from 127.0.0.3 temporarily deferred"}
			}
			return nil
		},
	})
	warm := &config.Warmup{Start: t0.Truncate(24 * time.Hour), Schedule: []int{20, 50, 100}}
	pools := poolSet(t, config.OverflowWarm, warm)
	h := newHarness(t, sink.Port(), yahooZones, func(o *Options) { o.Pools = pools })
	enqueueN(h, "news@shop.example", 10)
	if n := countEvents(h.expect(10)); n["deferred 127.0.0.3"] == 0 {
		t.Fatalf("events %v: 127.0.0.3 never tried", n)
	}
	h.logMu.Lock()
	logged := strings.Count(h.log.String(), `msg="warmup held"`)
	line := h.log.String()
	h.logMu.Unlock()
	if logged != 1 || !strings.Contains(line, "source_ip=127.0.0.3") {
		t.Fatalf("%d warmup held lines:\n%s", logged, line)
	}
	ip := pools.IP("127.0.0.3")
	if day, _ := pools.Day(ip, "yahoo", pool.NextDay(t0)); day != 0 {
		t.Errorf("day after the block: %d, want 0 (held)", day)
	}
	if day, _ := pools.Day(ip, "gmail", pool.NextDay(t0)); day != 1 {
		t.Errorf("gmail's ramp: day %d, want 1", day)
	}
}

package pickup

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/queue/maildrop"
	"facteur/relay/breaker"
	"facteur/relay/cleanup"
	"facteur/relay/clock"
	"facteur/relay/guard"
	"facteur/relay/unixsock"
)

func TestScanIngestsAndQuarantines(t *testing.T) {
	dir := t.TempDir()
	drop := filepath.Join(dir, "maildrop")
	if err := maildrop.Init(drop, -1); err != nil {
		t.Fatal(err)
	}
	st, err := queue.Open(filepath.Join(dir, "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := cleanup.New(cleanup.Options{Hostname: "relay.test", LocalDomain: "example.com", Aliases: map[string]string{"root": "ops@example.org"}}, st, nil, log)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	p := &Pickup{Dir: drop, Cleanup: c, Log: log, Clock: clock.NewFake(now)}

	env := maildrop.Envelope{Sender: "www-data@example.com", Recipients: []string{"root@example.com"}, UID: os.Getuid(), User: "www-data", Time: now}
	if _, err := maildrop.Write(drop, env, strings.NewReader("Subject: cron\r\n\r\nout\r\n")); err != nil {
		t.Fatal(err)
	}
	loop := env
	loop.Recipients = []string{"x@example.org"}
	if _, err := maildrop.Write(drop, loop, strings.NewReader(strings.Repeat("Received: x\r\n", 60)+"\r\nloop\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(drop, "garbage"), []byte("not a maildrop file"), 0o640); err != nil {
		t.Fatal(err)
	}
	n, err := p.Scan(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("Scan = %d, %v; want 1 queued", n, err)
	}
	msgs, _ := st.List(t.Context(), queue.Filter{})
	if len(msgs) != 1 || msgs[0].Recipients[0].Address != "ops@example.org" {
		t.Fatalf("queue: %+v", msgs)
	}
	body, _ := st.Body(t.Context(), msgs[0].ID)
	if !bytes.Contains(body, []byte("Received: by relay.test (facteur, from userid ")) {
		t.Errorf("no local Received: %q", body)
	}
	left, _ := maildrop.List(drop)
	if len(left) != 0 {
		t.Errorf("maildrop still holds %v", left)
	}
	// The loop and the garbage are kept aside, not dropped.
	corrupt, _ := os.ReadDir(filepath.Join(drop, "corrupt"))
	if len(corrupt) < 2 {
		t.Errorf("quarantine holds %d entries, want the loop and the garbage", len(corrupt))
	}
}

// Issue 11 §2: pickup applies the SMTP path's limits. A file over the
// user's budget waits in the maildrop (nothing lost) and goes once the
// budget refills; a file that could never fit is quarantined; the queue
// floor holds every file back.
func TestPickupAppliesTheGuard(t *testing.T) {
	dir := t.TempDir()
	drop := filepath.Join(dir, "maildrop")
	if err := maildrop.Init(drop, -1); err != nil {
		t.Fatal(err)
	}
	st, err := queue.Open(filepath.Join(dir, "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logb bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logb, nil))
	c := cleanup.New(cleanup.Options{Hostname: "relay.test", LocalDomain: "example.com"}, st, nil, log)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	rate, _ := policy.ParseRate("2/h")
	queueFull := false
	g := guard.New(guard.Options{PerUser: rate, MaxQueue: 1, QueueSize: func(context.Context) (int, error) {
		if queueFull {
			return 1, nil
		}
		return 0, nil
	}})
	clk := clock.NewFake(now)
	p := &Pickup{Dir: drop, Cleanup: c, Log: log, Clock: clk, Guard: g}
	write := func(user string, rcpts ...string) {
		env := maildrop.Envelope{Sender: user + "@example.com", Recipients: rcpts, UID: os.Getuid(), User: user, Time: now}
		if _, err := maildrop.Write(drop, env, strings.NewReader("Subject: x\r\n\r\ny\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	write("web", "a@example.org", "b@example.org") // spends web's 2
	write("web", "c@example.org")                  // waits an hour
	write("web", "d@example.org", "e@example.org", "f@example.org")
	if n, err := p.Scan(t.Context()); err != nil || n != 1 {
		t.Fatalf("first scan: %d, %v; want 1", n, err)
	}
	if n, _ := p.Scan(t.Context()); n != 0 {
		t.Fatalf("second scan queued %d", n)
	}
	if got := strings.Count(logb.String(), "maildrop message waits"); got != 1 {
		t.Errorf("the waiting file logged %d times, want once:\n%s", got, logb.String())
	}
	// The three-recipient file can never fit 2/h: quarantined, not lost.
	corrupt, _ := os.ReadDir(filepath.Join(drop, "corrupt"))
	if len(corrupt) != 2 { // the file and its .reason
		t.Errorf("quarantine holds %d entries, want the over-budget file", len(corrupt))
	}
	// With the queue full nothing goes, even once the budget is back.
	queueFull = true
	clk.Advance(time.Hour)
	if n, _ := p.Scan(t.Context()); n != 0 {
		t.Fatalf("queue full: %d queued", n)
	}
	queueFull = false
	// Past the guard's one-second storage cache and the file's next read
	// (waitRetry after the refusal of the full queue).
	clk.Advance(waitRetry)
	if n, _ := p.Scan(t.Context()); n != 1 {
		t.Fatalf("after an hour: %d queued, want the waiting file", n)
	}
	if left, _ := maildrop.List(drop); len(left) != 0 {
		t.Errorf("maildrop still holds %v", left)
	}
}

// breakerCalls records what the pickup told the breaker.
type breakerCalls struct{ got []string }

func (b *breakerCalls) Suppressed(s breaker.Sender, rcpt, why string, _ time.Time) {
	b.got = append(b.got, s.User+" "+s.Address+" "+rcpt+" "+why)
}

// A recipient pickup drops because it is suppressed counts against the
// sender in the breaker (issue 21), once: a file that waits for the guard
// is filtered again at each scan but reported only when it leaves the
// maildrop, queued or with no recipient left.
func TestPickupReportsSuppressedToTheBreaker(t *testing.T) {
	dir := t.TempDir()
	drop := filepath.Join(dir, "maildrop")
	if err := maildrop.Init(drop, -1); err != nil {
		t.Fatal(err)
	}
	st, err := queue.Open(filepath.Join(dir, "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.DiscardHandler)
	// The file says "web"; the account is the one of its uid.
	me := (&unixsock.Names{}).Lookup(os.Getuid())
	c := cleanup.New(cleanup.Options{Hostname: "relay.test", LocalDomain: "example.com",
		Senders: map[string]string{"web": "noreply@site.example"}}, st, nil, log)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	rate, _ := policy.ParseRate("1/h")
	clk := clock.NewFake(now)
	b := &breakerCalls{}
	suppressed := map[string]bool{"gone1@example.org": true, "gone2@example.org": true}
	p := &Pickup{Dir: drop, Cleanup: c, Log: log, Clock: clk, Breaker: b,
		Guard: guard.New(guard.Options{PerUser: rate}),
		Filter: func(_ context.Context, rcpts []string) (keep []string, dropped []Dropped) {
			for _, r := range rcpts {
				if suppressed[r] {
					dropped = append(dropped, Dropped{Rcpt: r, Why: "suppressed"})
					continue
				}
				keep = append(keep, r)
			}
			return keep, dropped
		}}
	write := func(rcpts ...string) {
		env := maildrop.Envelope{Sender: "web", Recipients: rcpts, UID: os.Getuid(), User: "web", Time: clk.Now()}
		if _, err := maildrop.Write(drop, env, strings.NewReader("Subject: x\r\n\r\ny\r\n")); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Millisecond) // names sort by time: the order of the writes
	}
	write("gone1@example.org")                    // nothing left: removed, reported
	write("ok1@example.org", "gone2@example.org") // queued (spends web's 1/h), reported
	write("ok2@example.org", "gone1@example.org") // waits an hour, then queued
	for range 3 {
		p.Scan(t.Context())
	}
	want := []string{
		me + " noreply@site.example gone1@example.org suppressed",
		me + " noreply@site.example gone2@example.org suppressed",
	}
	if !slices.Equal(b.got, want) {
		t.Fatalf("breaker told %q, want %q", b.got, want)
	}
	clk.Advance(time.Hour)
	if n, err := p.Scan(t.Context()); n != 1 || err != nil {
		t.Fatalf("after an hour: %d queued, %v", n, err)
	}
	want = append(want, me+" noreply@site.example gone1@example.org suppressed")
	if !slices.Equal(b.got, want) {
		t.Errorf("breaker told %q, want %q", b.got, want)
	}
}

// A maildrop file is its submitter's writing: its user line must not choose
// whose budget it spends, whose sender_login applies or whom the queue names.
// The uid (checked against the file's owner) does.
func TestPickupNamesTheAccountFromTheUID(t *testing.T) {
	dir := t.TempDir()
	drop := filepath.Join(dir, "maildrop")
	if err := maildrop.Init(drop, -1); err != nil {
		t.Fatal(err)
	}
	st, err := queue.Open(filepath.Join(dir, "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.DiscardHandler)
	c := cleanup.New(cleanup.Options{Hostname: "relay.test", LocalDomain: "example.com"}, st, nil, log)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	rate, _ := policy.ParseRate("1/h")
	p := &Pickup{Dir: drop, Cleanup: c, Log: log, Clock: clock.NewFake(now), Guard: guard.New(guard.Options{PerUser: rate})}
	me := (&unixsock.Names{}).Lookup(os.Getuid())
	for i, claim := range []string{"postmaster", "someone-else"} {
		env := maildrop.Envelope{Sender: "app@example.com", Recipients: []string{fmt.Sprintf("r%d@example.org", i)},
			UID: os.Getuid(), User: claim, Time: now.Add(time.Duration(i) * time.Millisecond)}
		if _, err := maildrop.Write(drop, env, strings.NewReader("Subject: x\r\n\r\ny\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	// Two names claimed, one account: its 1/h lets one file through.
	if n, err := p.Scan(t.Context()); err != nil || n != 1 {
		t.Fatalf("Scan = %d, %v; want 1 queued and 1 waiting", n, err)
	}
	msgs, _ := st.List(t.Context(), queue.Filter{})
	if len(msgs) != 1 || msgs[0].User != me {
		t.Fatalf("queued %+v; want one message of user %q", msgs, me)
	}
	if left, _ := maildrop.List(drop); len(left) != 1 {
		t.Errorf("maildrop holds %d files, want the one over the budget", len(left))
	}
}

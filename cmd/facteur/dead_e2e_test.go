package main

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// With its relayhost down, the daemon makes one connection attempt, not one
// per message: the rest are deferred in bulk (issue 19 §4). `queue flush`
// revives the destination for one more attempt. Forty messages from Python's
// smtplib, the relayhost a loopback listener that closes every connection.
func TestDeadRelayhostOneAttempt(t *testing.T) {
	need(t, "python3")
	ln, err := net.Listen("tcp", "127.0.0.7:0")
	if err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			attempts.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	r := startRelay(t, relayOpts{extraConfig: "  relayhost: " + ln.Addr().String() + "\n"})
	const n = 40
	script := `
import smtplib, sys
from email.message import EmailMessage
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port)) as s:
    for i in range(int(sys.argv[2])):
        m = EmailMessage()
        m["From"] = "app@example.com"
        m["To"] = "user%d@example.org" % i
        m["Subject"] = "outage %d" % i
        m.set_content("The relayhost is down.\n")
        s.send_message(m)
`
	runTool(t, nil, "", "python3", "-c", script, r.smtp, fmt.Sprint(n))
	waitCount := func(what string, want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(r.logText(), what) < want {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d %q lines:\n%s", strings.Count(r.logText(), what), want, what, r.logText())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitCount(" deferred ", n)
	if got := attempts.Load(); got != 1 {
		t.Fatalf("%d connection attempts for %d messages, want 1", got, n)
	}
	// The deferrals are logged before they are committed, and a flush
	// moves what the queue holds as waiting: a recipient whose deferral
	// commits after the flush stays deferred to the end of the dead period.
	// The queue is read until every deferral is in it.
	eventually(t, func() []string {
		out, err := r.cli("queue", "list", "--json")
		if err != nil {
			return []string{err.Error()}
		}
		var msgs []struct {
			Recipients []struct {
				Address  string `json:"address"`
				Status   string `json:"status"`
				Attempts int    `json:"attempts"`
			} `json:"recipients"`
		}
		if err := jsonUnmarshal(out, &msgs); err != nil || len(msgs) != n {
			return []string{fmt.Sprintf("queue list --json: %d messages, want %d: %v", len(msgs), n, err)}
		}
		var problems []string
		for _, m := range msgs {
			if rc := m.Recipients[0]; rc.Status != "deferred" || rc.Attempts != 1 {
				problems = append(problems, fmt.Sprintf("recipient state %+v", rc))
			}
		}
		return problems
	})
	if t.Failed() {
		t.FailNow()
	}
	if !strings.Contains(r.logText(), `destination dead dest="relayhost `+ln.Addr().String()+`"`) {
		t.Fatalf("no dead-destination line:\n%s", r.logText())
	}
	if out, err := r.cli("status"); err != nil || !strings.Contains(out, "dead: relayhost "+ln.Addr().String()) {
		t.Fatalf("status does not name the dead relayhost: %v\n%s", err, out)
	}
	out, err := r.cli("queue", "flush")
	if err != nil || !strings.Contains(out, fmt.Sprintf("%d recipients due now", n)) {
		t.Fatalf("flush: %v %q", err, out)
	}
	waitCount(" deferred ", 2*n)
	if got := attempts.Load(); got != 2 {
		t.Fatalf("%d connection attempts after the flush, want 2", got)
	}
}

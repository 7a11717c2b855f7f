package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// smtplibScript sends, over one SMTP session to argv[1]:argv[2], one
// message from argv[3] to each further argument, and prints for each
// "ok RCPT" or "refused RCPT CODE".
const smtplibScript = `
import smtplib, sys
host, port, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = smtplib.SMTP(host, port, timeout=30)
for rcpt in sys.argv[4:]:
    msg = "From: %s\r\nTo: %s\r\nSubject: Your account\r\n\r\nClick here\r\n" % (sender, rcpt)
    try:
        s.sendmail(sender, [rcpt], msg)
        print("ok", rcpt)
    except smtplib.SMTPRecipientsRefused as e:
        print("refused", rcpt, e.recipients[rcpt][0])
s.quit()
`

// TestBreakerCountsSuppressedRecipients: a hacked site (python3 smtplib
// as www-data over loopback) spraying addresses that are on the
// suppression list gets 550 at RCPT for each, and never queues a message:
// those refusals count as failed against it (issue 21 §1, "found
// suppressed"), so the breaker trips, its next message is held, and
// another local user's mail still goes out.
func TestBreakerCountsSuppressedRecipients(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("cmd/facteur: the test runs python3 as www-data and needs root")
		}
		t.Skip("cmd/facteur: needs root to run python3 as www-data")
	}
	const python = "/usr/bin/python3" // reachable by other uids, unlike a pyenv shim
	if _, err := os.Stat(python); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is missing (apt-get install python3)")
		}
		t.Skip("python3 is missing")
	}
	r := startRelay(t, relayOpts{extraConfig: "breaker:\n  notify: [security@example.net]\n"})
	var gone []string
	for i := range 25 {
		a := fmt.Sprintf("gone%02d@example.org", i)
		if _, err := r.cli("suppress", "add", a); err != nil {
			t.Fatal(err)
		}
		gone = append(gone, a)
	}
	host, port, _ := net.SplitHostPort(r.smtp)
	send := func(uid uint32, sender string, rcpts ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), python, append([]string{"-c", smtplibScript, host, port, sender}, rcpts...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("smtplib as uid %d: %v\n%s", uid, err, out)
		}
		return string(out)
	}

	out := send(33, "spam@example.com", gone...)
	if n := strings.Count(out, "refused "); n != len(gone) || strings.Count(out, " 550") != len(gone) {
		t.Fatalf("want %d recipients refused with 550, got:\n%s", len(gone), out)
	}
	r.waitLog(" breaker tripped user=www-data failed=100% deferred=0% of 20 recipients in 1h") // min_recipients
	r.waitLog(" breaker tripped sender_domain=example.com failed=100%")

	// The site's next message is accepted and held, not delivered.
	if out := send(33, "spam@example.com", "after@example.org"); !strings.Contains(out, "ok after@example.org") {
		t.Fatalf("after the trip: %s", out)
	}
	qid := waitQID(r, "rcpt=<after@example.org>")
	r.waitLog(qid + " held reason=breaker user=www-data")
	if err := pollHeld(r, "after@example.org"); err != nil {
		t.Fatal(err)
	}

	// Another local user, another domain: untouched.
	if out := send(65534, "news@example.net", "reader@example.org"); !strings.Contains(out, "ok reader@example.org") {
		t.Fatalf("the other user: %s", out)
	}
	waitRcpt(r, "reader@example.org", 1)
	if n := countRcpt(r, "after@example.org"); n != 0 {
		t.Errorf("the stopped site's mail was delivered %d times", n)
	}
	if strings.Contains(r.logText(), "breaker tripped user=nobody") || strings.Contains(r.logText(), "breaker tripped sender_domain=example.net") {
		t.Errorf("the other user tripped the breaker:\n%s", r.logText())
	}
}

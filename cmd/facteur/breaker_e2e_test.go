package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/queue/maildrop"
	"facteur/relay/relaytest"
)

// breakerDropGID stands for the facteur-drop group (the kernel needs no
// /etc/group entry for its permission checks).
const breakerDropGID = 64999

// TestBreakerStopsHackedSite is issue 21's check, with real clients as two
// local users on loopback: www-data (PHP mail() through the sendmail shim,
// run as uid 33) mails 40 harvested addresses, most of which the MX
// refuses with 550 5.1.1; the breaker stops it past min_recipients (its
// further mail is held, the log and status name it, the notify address is
// told) while the other site's newsletter of 200 with 2% unknown users,
// sent with PHPMailer, is delivered and trips nothing. The stop survives a
// restart; `breaker reset` releases the held mail, which arrives once.
func TestBreakerStopsHackedSite(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("cmd/facteur: the breaker test runs the shim as www-data and needs root")
		}
		t.Skip("cmd/facteur: needs root to run the shim as www-data")
	}
	need(t, "php")
	if _, err := os.Stat("/usr/share/php/libphp-phpmailer/autoload.php"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("libphp-phpmailer is not installed")
		}
		t.Skip("libphp-phpmailer is not installed")
	}
	unknown := regexp.MustCompile(`^(unknown|news-unknown)`)
	r := startRelay(t, relayOpts{
		extraConfig: "breaker:\n  notify: [security@example.net]\n",
		sinkOpts: relaytest.SinkOptions{Rcpt: func(addr string) error {
			if unknown.MatchString(addr) {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + addr + ">: Recipient address rejected: User unknown in virtual mailbox table"}
			}
			return nil
		}},
	})
	shim, shimDirect := asWWWData(t, r)

	// The hacked site: 40 messages, 4 in 5 to addresses that do not exist.
	for i := range 40 {
		rcpt := fmt.Sprintf("unknown%02d@example.org", i)
		if i%5 == 0 {
			rcpt = fmt.Sprintf("real%02d@example.org", i)
		}
		shim(fmt.Sprintf("To: %s\nSubject: Your account %d\n\nClick here\n", rcpt, i), "-i", rcpt)
	}
	r.waitLog(" breaker tripped user=www-data failed=")
	line := logLine(r, " breaker tripped user=www-data ")
	if !regexp.MustCompile(` breaker tripped user=www-data failed=\d+% deferred=0% of \d+ recipients in 1h$`).MatchString(line) {
		t.Errorf("trip line %q", line)
	}
	r.waitLog(" breaker tripped sender_domain=example.com failed=")

	// Mail of the stopped site sent after the trip, now straight to the
	// daemon (the kernel names its uid), is accepted and held.
	shimDirect("To: after@example.org\nSubject: after the trip\n\nstill here\n", "-i", "after@example.org")
	qid := waitQID(r, "rcpt=<after@example.org>")
	r.waitLog(qid + " held reason=breaker user=www-data")
	if l := logLine(r, qid+" received "); !strings.Contains(l, " uid=33 user=www-data ") {
		t.Errorf("the direct submission is not attributed to www-data: %s", l)
	}

	// The notification reaches the notify address.
	note := waitRcpt(r, "security@example.net", 1)[0]
	for _, want := range []string{"Subject: facteur breaker tripped: user=www-data", "user=www-data: failed=",
		"example.org", "550 5.1.1 <...>: Recipient address rejected", "facteur breaker reset user=www-data sender_domain=example.com"} {
		if !bytes.Contains(note.Body, []byte(want)) {
			t.Errorf("notification lacks %q:\n%s", want, note.Body)
		}
	}
	if note.From != "" {
		t.Errorf("notification from <%s>, want the null sender", note.From)
	}

	// The other site keeps sending: a newsletter of 200, 4 unknown (2%).
	phpNewsletter(t, r, 200, 4)
	newsletter := func() int {
		n := 0
		for _, m := range r.sink.Messages() {
			if m.From == "news@example.net" {
				n += len(m.Rcpts)
			}
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for newsletter() < 196 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := newsletter(); got != 196 {
		t.Errorf("newsletter: %d of 196 valid recipients reached the sink", got)
	}
	r.waitLog(" bounced rcpt=<news-unknown3@example.net>")
	// PHPMailer over loopback TCP is the other local user's (sock_diag).
	if l := logLine(r, " received from=<news@example.net> "); !strings.Contains(l, " uid=65534 user=nobody ") {
		t.Errorf("the newsletter is not attributed to nobody: %.300s", l)
	}
	if strings.Contains(r.logText(), "breaker tripped sender_domain=example.net") || strings.Contains(r.logText(), "breaker tripped user=nobody") {
		t.Errorf("the newsletter with 2%% unknown tripped the breaker:\n%s", r.logText())
	}

	// Nothing of www-data's went out after the trip; its mail waits held.
	if n := countRcpt(r, "after@example.org"); n != 0 {
		t.Fatalf("held mail delivered %d times before the reset", n)
	}
	out, err := r.cli("status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "breaker: user=www-data stopped since") || !strings.Contains(out, "facteur breaker reset user=www-data") {
		t.Errorf("status does not name the stopped sender:\n%s", out)
	}
	if err := pollHeld(r, "after@example.org"); err != nil {
		t.Fatal(err)
	}

	// The stop survives a restart.
	r.stop()
	r.start()
	out, err = r.cli("breaker", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "user=www-data") || !strings.Contains(out, "sender_domain=example.com") {
		t.Fatalf("breaker list after restart:\n%s", out)
	}
	if n := countRcpt(r, "after@example.org"); n != 0 {
		t.Fatalf("held mail delivered at restart")
	}

	// A human decides: the spam is deleted (were it released, its bounces
	// would trip the re-armed breaker again), then the reset releases the
	// rest of the held mail, delivered once.
	listed, err := r.cli("queue", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var msgs []queue.Message
	if err := json.Unmarshal([]byte(listed), &msgs); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.HoldReason == "breaker" && strings.HasPrefix(m.Recipients[0].Address, "unknown") {
			if _, err := r.cli("queue", "delete", string(m.ID)); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err = r.cli("breaker", "reset", "user=www-data", "sender_domain=example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "user=www-data reset") || !regexp.MustCompile(`[1-9]\d* held messages? released`).MatchString(out) {
		t.Errorf("reset printed:\n%s", out)
	}
	r.waitLog(" delivered rcpt=<after@example.org>")
	r.waitLog(" breaker reset user=www-data released=")
	if n := countRcpt(r, "after@example.org"); n != 1 {
		t.Errorf("released mail arrived %d times, want once", n)
	}
	// Every real address, sent before the trip or held and released, got
	// its message once.
	for i := 0; i < 40; i += 5 {
		rc := fmt.Sprintf("real%02d@example.org", i)
		waitRcpt(r, rc, 1)
		r.waitLog(" delivered rcpt=<" + rc + ">")
		if n := countRcpt(r, rc); n != 1 {
			t.Errorf("%s got %d messages, want 1", rc, n)
		}
	}
	if out, err := r.cli("breaker", "reset", "user=nobody-stopped"); err == nil {
		t.Errorf("reset of a sender not stopped succeeded: %s", out)
	}
}

// asWWWData installs the shim where uid 33 can run it and returns two
// ways to run it as www-data: through the maildrop (a config whose
// listener is closed, so that pickup ingests the file, whose owner is the
// local submitter), and straight to the daemon (the kernel names the uid).
func asWWWData(t *testing.T, r *relay) (drop, direct func(stdin string, args ...string)) {
	t.Helper()
	for d := r.dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(r.dir, "data")
	if err := os.Chmod(data, 0o710); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, 0, breakerDropGID); err != nil {
		t.Fatal(err)
	}
	if err := maildrop.Init(filepath.Join(data, "maildrop"), breakerDropGID); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(r.dir, "sendmail")
	in, err := os.ReadFile(r.shim)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, in, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	closed := refusingAddr(t)
	shimCfg := filepath.Join(r.dir, "shim.yaml")
	text := strings.Replace(string(cfg), "listen: ["+r.smtp+"]", "listen: ["+closed+"]", 1)
	if err := os.WriteFile(shimCfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(config string) func(stdin string, args ...string) {
		return func(stdin string, args ...string) {
			t.Helper()
			cmd := exec.CommandContext(t.Context(), bin, args...)
			cmd.Env = append(os.Environ(), "FACTEUR_CONFIG="+config)
			cmd.Stdin = strings.NewReader(stdin)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 33, Gid: breakerDropGID}}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sendmail as www-data: %v\n%s", err, out)
			}
		}
	}
	return run(shimCfg), run(r.config)
}

// phpNewsletter sends one message to n recipients (bad of them unknown to
// the MX) with PHPMailer over SMTP, from another site's address.
func phpNewsletter(t *testing.T, r *relay, n, bad int) {
	t.Helper()
	host, port, _ := net.SplitHostPort(r.smtp)
	script := `<?php
require '/usr/share/php/libphp-phpmailer/autoload.php';
use PHPMailer\PHPMailer\PHPMailer;
$m = new PHPMailer(true);
$m->isSMTP();
$m->Host = $argv[1];
$m->Port = (int)$argv[2];
$m->SMTPAuth = false;
$m->SMTPKeepAlive = false;
$m->setFrom('news@example.net', 'Blog');
$m->addAddress('news@example.net');
for ($i = 0; $i < (int)$argv[3]; $i++) {
    $m->addBCC($i < (int)$argv[4] ? "news-unknown$i@example.net" : "news$i@example.net");
}
$m->Subject = 'Newsletter';
$m->Body = "This month's news.\n";
$m->send();
echo "sent\n";
`
	// The other site runs as its own user (nobody), as a PHP-FPM pool
	// would; r.dir is searchable by it (asWWWData opened it up).
	path := filepath.Join(r.dir, "news.php")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	// news@example.net (the To) is one more recipient: n-1 BCC make the
	// 200 of the issue, the visible one counted among the valid ones.
	php, err := exec.LookPath("php")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), php, path, host, port, fmt.Sprint(n-1), fmt.Sprint(bad))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "sent") {
		t.Fatalf("php as nobody: %v\n%s", err, out)
	}
}

func logLine(r *relay, s string) string {
	for _, l := range strings.Split(r.logText(), "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// waitQID waits for the received line containing s and returns its queue ID.
func waitQID(r *relay, s string) string {
	r.t.Helper()
	r.waitLog(s)
	for _, l := range strings.Split(r.logText(), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[2] == "received" && strings.Contains(l, s) {
			return f[1]
		}
	}
	r.t.Fatalf("no received line with %q", s)
	return ""
}

func countRcpt(r *relay, rcpt string) int {
	n := 0
	for _, m := range r.sink.Messages() {
		for _, x := range m.Rcpts {
			if x == rcpt {
				n++
			}
		}
	}
	return n
}

// waitRcpt waits until the sink has n messages to rcpt.
func waitRcpt(r *relay, rcpt string, n int) []relaytest.SinkMessage {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var out []relaytest.SinkMessage
		for _, m := range r.sink.Messages() {
			for _, x := range m.Rcpts {
				if x == rcpt {
					out = append(out, m)
				}
			}
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("sink got %d messages to %s, want %d\nlog:\n%s", len(out), rcpt, n, r.logText())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pollHeld checks through `queue list --json` that the message to rcpt
// is held with reason breaker and attributed to www-data.
func pollHeld(r *relay, rcpt string) error {
	out, err := r.cli("queue", "list", "--json")
	if err != nil {
		return err
	}
	var msgs []queue.Message
	if err := json.NewDecoder(io.LimitReader(strings.NewReader(out), 1<<24)).Decode(&msgs); err != nil {
		return err
	}
	for _, m := range msgs {
		for _, rc := range m.Recipients {
			if rc.Address == rcpt {
				if rc.Status != queue.Held || m.HoldReason != "breaker" || m.User != "www-data" || m.UID == nil || *m.UID != 33 {
					return fmt.Errorf("message to %s: %+v", rcpt, m)
				}
				return nil
			}
		}
	}
	return fmt.Errorf("no message to %s in the queue:\n%s", rcpt, out)
}

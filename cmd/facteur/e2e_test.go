package main

// End-to-end tests: the real facteur binary, real clients (swaks, Python's
// smtplib, PHPMailer under php-cli, PHP mail() and bsd-mailx through the
// sendmail shim, cron's command line), a loopback DNS server and go-smtp
// sinks on 127.0.0.x standing in for the Internet.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/relay/relaytest"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries builds facteur and the sendmail shim once per test run.
func binaries(t *testing.T) (facteur, sendmail string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "facteur-e2e-")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{".", "../sendmail"} {
			name := filepath.Base(pkg)
			if pkg == "." {
				name = "facteur"
			}
			out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, name), pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "facteur"), filepath.Join(buildDir, "sendmail")
}

// need skips when a client is missing locally; CI installs them all, so
// there a missing tool is a failure.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (.ci/run installs it)", tool)
			}
			t.Skipf("%s is not installed: skipping (see .ci/run for the packages)", tool)
		}
	}
}

// freePort returns a port that was free on host a moment ago. Another
// process can take it before it is bound again: what binds it in this
// process should rather listen on :0; a daemon that binds it is started
// by relay.start, which picks anew when that happened.
func freePort(t *testing.T, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// refusingAddr returns a loopback address where connections are refused
// for the whole test (relaytest.RefusingAddr).
func refusingAddr(t *testing.T) string { return relaytest.RefusingAddr(t, "") }

// relay is one running facteur daemon with its world.
type relay struct {
	t      *testing.T
	bin    string
	shim   string
	dir    string
	config string
	smtp   string // host:port of the submission listener: addr("smtp")
	admin  string // addr("admin")
	// addrs are the loopback addresses the daemon binds, by name (see
	// addr); the config names them.
	addrs   map[string]string
	dns     *relaytest.DNSServer
	sink    *relaytest.Sink
	cmd     *exec.Cmd
	logMu   sync.Mutex
	log     bytes.Buffer
	started chan struct{}
	exited  chan struct{}
	ended   bool // the test stopped or killed the daemon it started last
}

type relayOpts struct {
	extraConfig string
	// extra, when set, returns more config, written after extraConfig:
	// config that names the sink's port or an address of the daemon's own
	// (r.addr) that extraConfig cannot know before the relay exists.
	extra    func(r *relay) string
	sinkOpts relaytest.SinkOptions
	sinkIP   string
}

func startRelay(t *testing.T, o relayOpts) *relay {
	t.Helper()
	bin, shim := binaries(t)
	if o.sinkIP == "" {
		o.sinkIP = "127.0.0.2"
	}
	sink := relaytest.NewSink(t, o.sinkIP+":0", o.sinkOpts)
	dns := relaytest.NewDNS(t, map[string]relaytest.Zone{
		"example.org":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
		"example.com":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
		"example.net":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
		"mx.example.org": {A: []string{o.sinkIP}},
	})
	dir := t.TempDir()
	r := &relay{t: t, bin: bin, shim: shim, dir: dir, dns: dns, sink: sink}
	r.config = filepath.Join(dir, "facteur.yaml")
	extra := o.extraConfig
	if o.extra != nil {
		extra += o.extra(r)
	}
	cfg := fmt.Sprintf(`hostname: relay.test
listen: [%s]
admin: %s
data_dir: %s
local_domain: example.com
aliases:
  root: ops@example.org
aliases_file: ""
mail_spool: %s
senders:
  www-data: noreply@example.com
resolver: %s
delivery:
  port: %d
%s`, r.addr("smtp"), r.addr("admin"), filepath.Join(dir, "data"), filepath.Join(dir, "spool"), dns.Addr(), sink.Port(), extra)
	if err := os.WriteFile(r.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(r.stop)
	return r
}

// addr returns the loopback address named name that the daemon binds
// (its listen, admin, bounces.listen...), picked free on first use: the
// config names it, and so do the test's clients, after start (which may
// have picked it anew).
func (r *relay) addr(name string) string {
	if a, ok := r.addrs[name]; ok {
		return a
	}
	if r.addrs == nil {
		r.addrs = map[string]string{}
	}
	a := fmt.Sprintf("127.0.0.1:%d", freePort(r.t, "127.0.0.1"))
	r.addrs[name] = a
	switch name {
	case "smtp":
		r.smtp = a
	case "admin":
		r.admin = a
	}
	return a
}

// maxStarts bounds the starts of the daemon when its ports keep being
// taken: each start fails that way only if another process takes a port
// in the moment between its pick and the daemon's bind.
const maxStarts = 5

// start starts the daemon. The ports it binds were free when picked, but
// on a busy machine another process (another test suite, an outbound
// connection's ephemeral port) may take one before the daemon binds it:
// then the ports are picked anew and the daemon started again, as a
// whole; nothing else about the start is retried.
func (r *relay) start() {
	r.t.Helper()
	for n := 1; ; n++ {
		taken := r.startOnce()
		if taken == "" {
			return
		}
		if n == maxStarts {
			r.t.Fatalf("facteur could not bind its ports in %d starts; the last:\n%s", n, taken)
		}
		r.t.Logf("start %d: a port was taken between its pick and the bind, picking them anew: %s", n, taken)
		r.repick()
	}
}

// startOnce starts the daemon once and waits for its "started" line. It
// returns "" once started, or, when a port the daemon was to bind was
// taken, the line that says so: the daemon is then stopped, and its log
// of that start dropped.
func (r *relay) startOnce() string {
	r.t.Helper()
	r.logMu.Lock()
	mark := r.log.Len()
	r.logMu.Unlock()
	r.started = make(chan struct{})
	r.exited = make(chan struct{})
	r.ended = false
	r.cmd = exec.Command(r.bin, "serve", "-config", r.config)
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	cmd, started, exited := r.cmd, r.started, r.exited
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			r.logMu.Lock()
			r.log.WriteString(line + "\n")
			r.logMu.Unlock()
			if strings.Contains(line, " started ") {
				once.Do(func() { close(started) })
			}
		}
		cmd.Wait()
	}()
	// The log of this start alone, from the first line to drop.
	since := func() string { return r.logText()[mark:] }
	drop := func() {
		r.logMu.Lock()
		r.log.Truncate(mark)
		r.logMu.Unlock()
	}
	select {
	case <-started:
		// A taken admin port does not stop the daemon, which retries it in
		// the background: the test would talk to the other process.
		if line := r.portTaken(since(), "admin listen failed"); line != "" {
			r.stop()
			drop()
			return line
		}
	case <-exited:
		if line := r.portTaken(since(), ""); line != "" {
			drop()
			return line
		}
		r.t.Fatalf("facteur exited at start:\n%s", r.logText())
	case <-time.After(20 * time.Second):
		r.t.Fatalf("facteur did not start:\n%s", r.logText())
	}
	return ""
}

// portTaken returns the line of log (containing event) that says one of
// the daemon's addresses was in use, or "".
func (r *relay) portTaken(log, event string) string {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, event) || !strings.Contains(line, "address already in use") {
			continue
		}
		for _, a := range r.addrs {
			// \b: 127.0.0.1:4123 is not 127.0.0.1:41234.
			if regexp.MustCompile(regexp.QuoteMeta(a) + `\b`).MatchString(line) {
				return line
			}
		}
	}
	return ""
}

// repick gives each of the daemon's addresses a new free port, in the
// config file as well: the edits a test made to the file are kept.
func (r *relay) repick() {
	r.t.Helper()
	var names []string
	for name := range r.addrs {
		names = append(names, name)
	}
	renamed := map[string]string{}
	for _, name := range names {
		old := r.addrs[name]
		delete(r.addrs, name)
		renamed[old] = r.addr(name)
	}
	renameAddrs(r.t, r.config, renamed)
}

// renameAddrs replaces each address of renamed's keys in the file at
// path with its value, leaving the rest of the file as it is.
func renameAddrs(t *testing.T, path string, renamed map[string]string) {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var olds []string
	for old := range renamed {
		olds = append(olds, regexp.QuoteMeta(old))
	}
	// One pass, so that a new port equal to another's old one is not
	// renamed twice; \b, so that 127.0.0.1:4123 is not found inside
	// 127.0.0.1:41234.
	re := regexp.MustCompile(`(?:` + strings.Join(olds, "|") + `)\b`)
	text = re.ReplaceAllFunc(text, func(old []byte) []byte { return []byte(renamed[string(old)]) })
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (r *relay) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case <-r.exited:
		if !r.ended && r.t.Failed() {
			// A failure that looks like a flake (connection refused, the
			// admin socket unreachable) may be the daemon's own exit.
			l := r.logText()
			r.t.Logf("facteur had exited before the test stopped it (%v); the end of its log:\n%s", r.cmd.ProcessState, l[max(0, len(l)-4000):])
		}
	default:
	}
	r.ended = true
	stopDaemon(r.t, r.cmd.Process, r.exited, r.logText)
}

func (r *relay) kill9() {
	r.ended = true
	r.cmd.Process.Kill()
	<-r.exited
}

func (r *relay) logText() string {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.log.String()
}

// waitLog waits until the daemon's log has a line containing s: the
// sink sees a message before facteur records and logs the delivery.
func (r *relay) waitLog(s string) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(r.logText(), s) {
		if time.Now().After(deadline) {
			r.t.Fatalf("no %q in the log:\n%s", s, r.logText())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventually runs check until it finds nothing wrong, polling, and at
// the deadline fails the test with what check found the last time. The
// daemon logs an attempt's outcome before it commits it to the queue and
// counts it in the metrics: a test that waited for the log line reads
// the queue or the metrics this way, rather than racing the commit.
func eventually(t *testing.T, check func() []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		problems := check()
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range problems {
				t.Error(p)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metrics reads the daemon's /metrics.
func (r *relay) metrics() (string, error) {
	resp, err := http.Get("http://" + r.admin + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// cli runs a facteur subcommand against this relay's config.
func (r *relay) cli(args ...string) (string, error) {
	cmd := boundedCommand(r.t, r.bin, append(args, "-config", r.config)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("facteur %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), nil
}

// wait waits for n messages at the sink and returns them.
func (r *relay) wait(n int) []relaytest.SinkMessage {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.sink.Wait(ctx, n); err != nil {
		r.t.Fatalf("sink got %d of %d messages: %v\nlog:\n%s", len(r.sink.Messages()), n, err, r.logText())
	}
	return r.sink.Messages()
}

func runTool(t *testing.T, env []string, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := boundedCommand(t, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// The harness's own guarantee: a port taken by another process between
// its pick and the daemon's bind costs a start, not the test. Each case
// takes one of the daemon's addresses as the daemon starts.
func TestStartPicksTakenPortsAnew(t *testing.T) {
	for _, name := range []string{"smtp", "admin", "bounces"} {
		t.Run(name, func(t *testing.T) {
			secret := filepath.Join(t.TempDir(), "verp.key")
			os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef"), 0o600)
			var taken string
			r := startRelay(t, relayOpts{extra: func(r *relay) string {
				// Called before the config is written: the address is
				// taken as another process would, after its pick.
				taken = r.addr(name)
				ln, err := net.Listen("tcp", taken)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				return fmt.Sprintf("bounces:\n  domain: bounces.example.com\n  listen: [%s]\n  secret_file: %s\n", r.addr("bounces"), secret)
			}})
			if got := r.addr(name); got == taken {
				t.Fatalf("%s is still %s, the taken address", name, got)
			}
			cfg, err := os.ReadFile(r.config)
			if err != nil || strings.Contains(string(cfg), taken+"]") || strings.Contains(string(cfg), taken+"\n") {
				t.Fatalf("the config still names %s: %v\n%s", taken, err, cfg)
			}
			if n := strings.Count(r.logText(), " started "); n != 1 || strings.Contains(r.logText(), "address already in use") {
				t.Errorf("the log keeps the failed start (%d started):\n%s", n, r.logText())
			}
			// The daemon answers at each of its addresses.
			for _, a := range []string{r.smtp, r.addr("bounces")} {
				c, err := smtp.Dial(a)
				if err != nil {
					t.Fatalf("%s: %v", a, err)
				}
				if err := c.Hello("client.test"); err != nil {
					t.Errorf("%s: %v", a, err)
				}
				c.Close()
			}
			if m, err := r.metrics(); err != nil || !strings.Contains(m, "facteur_messages_received_total") {
				t.Errorf("admin %s: %v\n%.300s", r.admin, err, m)
			}
		})
	}
}

func TestClientSwaks(t *testing.T) {
	need(t, "swaks")
	r := startRelay(t, relayOpts{})
	runTool(t, nil, "", "swaks", "--server", r.smtp, "--from", "app@example.com", "--to", "alice@example.org",
		"--header", "Subject: swaks test", "--body", "hello from swaks")
	m := r.wait(1)[0]
	if m.From != "app@example.com" || m.Rcpts[0] != "alice@example.org" || !bytes.Contains(m.Body, []byte("hello from swaks")) {
		t.Fatalf("got %+v", m)
	}
	r.waitLog(" delivered rcpt=<alice@example.org>")
}

func TestClientPythonSmtplib(t *testing.T) {
	need(t, "python3")
	r := startRelay(t, relayOpts{})
	script := `
import smtplib, sys
from email.message import EmailMessage
host, port = sys.argv[1].rsplit(":", 1)
m = EmailMessage()
m["From"] = "App <app@example.com>"
m["To"] = "bob@example.org, carol@example.net"
m["Subject"] = "smtplib test é"
m.set_content("Bonjour, ceci est un test accentué.\n")
with smtplib.SMTP(host, int(port)) as s:
    s.send_message(m)
`
	runTool(t, nil, "", "python3", "-c", script, r.smtp)
	msgs := r.wait(2)
	got := map[string]bool{}
	for _, m := range msgs {
		for _, rc := range m.Rcpts {
			got[rc] = true
		}
		if !bytes.Contains(m.Body, []byte("Subject:")) || bytes.Contains(m.Body, []byte("\n\n")) && !bytes.Contains(m.Body, []byte("\r\n\r\n")) {
			t.Errorf("bad body %q", m.Body)
		}
	}
	if !got["bob@example.org"] || !got["carol@example.net"] {
		t.Fatalf("recipients %v", got)
	}
}

func TestClientPHPMailer(t *testing.T) {
	need(t, "php")
	if _, err := os.Stat("/usr/share/php/libphp-phpmailer/autoload.php"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("libphp-phpmailer is not installed")
		}
		t.Skip("libphp-phpmailer is not installed")
	}
	r := startRelay(t, relayOpts{})
	host, port, _ := net.SplitHostPort(r.smtp)
	script := `<?php
require '/usr/share/php/libphp-phpmailer/autoload.php';
use PHPMailer\PHPMailer\PHPMailer;
$m = new PHPMailer(true);
$m->isSMTP();
$m->Host = $argv[1];
$m->Port = (int)$argv[2];
$m->SMTPAuth = false;
$m->setFrom('shop@example.com', 'Shop');
$m->addAddress('dave@example.org');
$m->addBCC('audit@example.net');
$m->Subject = 'Votre commande';
$m->Body = "Merci pour votre commande n°42.\n";
$m->addStringAttachment(str_repeat("PDFDATA", 500), 'invoice.pdf');
$m->send();
echo "sent\n";
`
	path := filepath.Join(t.TempDir(), "send.php")
	os.WriteFile(path, []byte(script), 0o644)
	if out := runTool(t, nil, "", "php", path, host, port); !strings.Contains(out, "sent") {
		t.Fatalf("php: %s", out)
	}
	msgs := r.wait(2)
	for _, m := range msgs {
		if bytes.Contains(m.Body, []byte("audit@example.net")) {
			t.Errorf("Bcc leaked into the message to %v", m.Rcpts)
		}
		if !bytes.Contains(m.Body, []byte("invoice.pdf")) {
			t.Errorf("attachment missing")
		}
	}
}

// Issue 3's durability check: kill -9 during 20 concurrent submissions;
// every message that got a 250 is in the queue after restart.
func TestKill9KeepsAcceptedMessages(t *testing.T) {
	need(t, "python3")
	// A sink that never answers DATA keeps messages queued, so that the
	// check reads the queue rather than the sink.
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	r := startRelay(t, relayOpts{sinkOpts: relaytest.SinkOptions{StallData: stall}})
	script := `
import smtplib, sys, threading
host, port = sys.argv[1].rsplit(":", 1)
lock = threading.Lock()
def worker(n):
    i = 0
    while True:
        try:
            s = smtplib.SMTP(host, int(port), timeout=5)
            rcpt = "k%d-%d@example.org" % (n, i)
            s.sendmail("app@example.com", [rcpt], "Subject: %s\r\n\r\nbody\r\n" % rcpt)
            with lock:
                print(rcpt, flush=True)
            s.quit()
        except Exception:
            return
        i += 1
ts = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
[t.start() for t in ts]
[t.join() for t in ts]
`
	cmd := boundedCommand(t, "python3", "-c", script, r.smtp)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var accepted []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		accepted = append(accepted, sc.Text())
		if len(accepted) == 200 {
			r.kill9()
			break
		}
	}
	for sc.Scan() {
		accepted = append(accepted, sc.Text())
	}
	cmd.Wait()
	r.start()
	out, err := r.cli("queue", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range accepted {
		if !strings.Contains(out, `"`+rc+`"`) && !sinkHas(r, rc) {
			t.Errorf("accepted message to %s lost after kill -9", rc)
		}
	}
	t.Logf("%d messages accepted before and around kill -9, all present", len(accepted))
}

func sinkHas(r *relay, rcpt string) bool {
	for _, m := range r.sink.Messages() {
		for _, x := range m.Rcpts {
			if x == rcpt {
				return true
			}
		}
	}
	return false
}

func TestShimClients(t *testing.T) {
	need(t, "php", "bsd-mailx")
	r := startRelay(t, relayOpts{})
	env := []string{"FACTEUR_CONFIG=" + r.config}
	// PHP mail() runs sendmail -t -i with its sendmail_path.
	runTool(t, env, "", "php", "-d", "sendmail_path="+r.shim+" -t -i", "-r",
		`mail("erin@example.org", "Sujet accentué", "Corps du message\nligne 2\n", "From: site@example.com");`)
	// cron's exact command line; root goes through aliases.
	runTool(t, env, "Cron <root@web1> /usr/local/bin/backup\n\nbackup done\n", r.shim, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root")
	// bsd-mailx through the shim (its sendmail variable).
	rc := filepath.Join(t.TempDir(), "mailrc")
	os.WriteFile(rc, []byte("set sendmail="+r.shim+"\n"), 0o644)
	runTool(t, append(env, "MAILRC="+rc), "mailx body\n", "bsd-mailx", "-s", "mailx subject", "frank@example.org")
	msgs := r.wait(3)
	byRcpt := map[string]relaytest.SinkMessage{}
	for _, m := range msgs {
		byRcpt[m.Rcpts[0]] = m
	}
	if m, ok := byRcpt["erin@example.org"]; !ok || !bytes.Contains(m.Body, []byte("Corps du message\r\nligne 2\r\n")) {
		t.Errorf("PHP mail(): %+v", m)
	}
	if m, ok := byRcpt["ops@example.org"]; !ok || !bytes.Contains(m.Body, []byte("backup done")) {
		t.Errorf("cron mail to root not delivered to its alias: %v", byRcpt)
	}
	if m, ok := byRcpt["frank@example.org"]; !ok || !bytes.Contains(m.Body, []byte("Subject: mailx subject")) {
		t.Errorf("bsd-mailx: %+v", m)
	}
	for _, m := range msgs {
		if bytes.Contains(bytes.ReplaceAll(m.Body, []byte("\r\n"), nil), []byte("\n")) {
			t.Errorf("bare LF sent out to %v", m.Rcpts)
		}
	}
}

// The shim writes to the maildrop while the daemon is down; the daemon
// ingests it at start (the Postfix pickup model).
func TestShimMaildropWhileDaemonDown(t *testing.T) {
	r := startRelay(t, relayOpts{})
	r.stop()
	env := []string{"FACTEUR_CONFIG=" + r.config}
	runTool(t, env, "Subject: while down\n\nqueued in the maildrop\n", r.shim, "-i", "grace@example.org")
	r.start()
	m := r.wait(1)[0]
	if m.Rcpts[0] != "grace@example.org" || !bytes.Contains(m.Body, []byte("queued in the maildrop")) {
		t.Fatalf("got %+v", m)
	}
}

func TestQueueCLI(t *testing.T) {
	// A sink that defers everything keeps the message queued.
	r := startRelay(t, relayOpts{sinkOpts: relaytest.SinkOptions{Rcpt: func(string) error {
		return &smtpError{Code: 451, EnhancedCode: [3]int{4, 7, 1}, Message: "greylisted, try again later"}
	}}})
	env := []string{"FACTEUR_CONFIG=" + r.config}
	for i := range 3 {
		runTool(t, env, "Subject: q\n\nx\n", r.shim, "-i", "-f", fmt.Sprintf("spam%d@example.com", i%2), fmt.Sprintf("h%d@example.org", i))
	}
	for i := range 3 {
		r.waitLog(fmt.Sprintf(" deferred rcpt=<h%d@example.org>", i))
	}
	var msgs []struct {
		ID         string `json:"id"`
		Sender     string `json:"sender"`
		Recipients []struct {
			Address      string  `json:"address"`
			Status       string  `json:"status"`
			Provider     string  `json:"provider"`
			Attempts     int     `json:"attempts"`
			NextAttempt  *string `json:"next_attempt"`
			LastResponse string  `json:"last_response"`
		} `json:"recipients"`
	}
	// The deferrals are logged before they are committed: the list is
	// read until each recipient's attempt is in it.
	eventually(t, func() []string {
		out, err := r.cli("queue", "list", "--json")
		if err != nil {
			return []string{err.Error()}
		}
		msgs = nil
		if err := jsonUnmarshal(out, &msgs); err != nil || len(msgs) != 3 {
			return []string{fmt.Sprintf("queue list --json: %v\n%s", err, out)}
		}
		var problems []string
		for _, m := range msgs {
			if rc := m.Recipients[0]; rc.Status != "deferred" || rc.Provider != "default" || rc.Attempts != 1 || rc.NextAttempt == nil || !strings.Contains(rc.LastResponse, "451 4.7.1") {
				problems = append(problems, fmt.Sprintf("recipient state %+v", rc))
			}
		}
		return problems
	})
	if t.Failed() {
		t.FailNow()
	}
	if out, err := r.cli("queue", "hold", msgs[0].ID); err != nil || !strings.Contains(out, "1 message held") {
		t.Fatalf("hold: %v %s", err, out)
	}
	if out, err := r.cli("queue", "show", msgs[0].ID, "--json"); err != nil || !strings.Contains(out, `"held"`) {
		t.Fatalf("show: %v %s", err, out)
	}
	if _, err := r.cli("queue", "release", msgs[0].ID); err != nil {
		t.Fatal(err)
	}
	if out, err := r.cli("queue", "delete", "--sender", "spam1@example.com"); err != nil || !strings.Contains(out, "1 message deleted") {
		t.Fatalf("bulk delete: %v %q", err, out)
	}
	if out, err := r.cli("queue", "flush"); err != nil || !strings.Contains(out, "flushed") {
		t.Fatalf("flush: %v %q", err, out)
	}
	if out, err := r.cli("queue", "list"); err != nil || !strings.Contains(out, "spam0@example.com") || strings.Contains(out, "spam1@example.com") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	for _, ev := range []string{" held ", " released ", " deleted "} {
		if !strings.Contains(r.logText(), ev) {
			t.Errorf("no%sline in the log", ev)
		}
	}
}

type smtpError = smtp.SMTPError

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func TestMetricsAndStatus(t *testing.T) {
	need(t, "swaks")
	r := startRelay(t, relayOpts{})
	runTool(t, nil, "", "swaks", "--server", r.smtp, "--from", "app@example.com", "--to", "m1@example.org")
	r.wait(1)
	r.waitLog(" delivered rcpt=<m1@example.org>")
	// The line is logged before the outcome is committed and counted:
	// poll the counter, with a deadline, rather than race it.
	var body []byte
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get("http://" + r.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(body, []byte(`event="delivered"`)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"facteur_messages_received_total 1", `facteur_recipients_total{class="",event="delivered",provider="default"} 1`,
		"facteur_delivery_latency_seconds_bucket", "facteur_queue_oldest_message_age_seconds", "facteur_connections_in_flight"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if _, err := exec.LookPath("promtool"); err == nil || os.Getenv("CI") != "" {
		cmd := boundedCommand(t, "promtool", "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
	out, err := r.cli("status")
	if err != nil || !strings.Contains(out, "1 delivered") || !strings.Contains(out, "no provider suspended") {
		t.Errorf("status: %v\n%s", err, out)
	}
}

// Issue 8 §3: a flood from one sender hits its limit while another sender
// still gets through; the disk floor gives 452 and harms nothing accepted.
func TestAbuseGuards(t *testing.T) {
	need(t, "python3")
	r := startRelay(t, relayOpts{extraConfig: "limits:\n  per_sender: 5/h\n"})
	script := `
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
s = smtplib.SMTP(host, int(port))
for i in range(7):
    try:
        s.sendmail(sys.argv[2], ["g%d@example.org" % i], "Subject: x\r\n\r\ny\r\n")
        print("ok")
    except smtplib.SMTPSenderRefused as e:
        print(e.smtp_code, e.smtp_error.decode())
    except smtplib.SMTPResponseException as e:
        print(e.smtp_code, e.smtp_error.decode())
s.quit()
`
	out := runTool(t, nil, "", "python3", "-c", script, r.smtp, "flood@example.com")
	if strings.Count(out, "ok") != 5 || !strings.Contains(out, "451 4.7.1") {
		t.Fatalf("flood: %s", out)
	}
	if out := runTool(t, nil, "", "python3", "-c", script, r.smtp, "other@example.com"); !strings.HasPrefix(out, "ok") {
		t.Fatalf("another sender blocked: %s", out)
	}
	if !strings.Contains(r.logText(), "refused") {
		t.Error("no log line for the refusal")
	}
}

func TestDiskFloor(t *testing.T) {
	need(t, "swaks")
	stall := make(chan struct{})
	r := startRelay(t, relayOpts{sinkOpts: relaytest.SinkOptions{StallData: stall}, extraConfig: "shutdown_timeout: 1s\n"})
	runTool(t, nil, "", "swaks", "--server", r.smtp, "--from", "app@example.com", "--to", "before@example.org")
	// Restart with a floor above the free space: new mail is refused with
	// 452, the message accepted before is still delivered.
	r.stop()
	cfg, _ := os.ReadFile(r.config)
	os.WriteFile(r.config, append(cfg, []byte("min_free_disk: 1000000TiB\n")...), 0o644)
	r.start()
	cmd := boundedCommand(t, "swaks", "--server", r.smtp, "--from", "app@example.com", "--to", "after@example.org")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "452 4.3.1") {
		t.Fatalf("no 452 past the disk floor:\n%s", out)
	}
	close(stall)
	m := r.wait(1)
	if m[0].Rcpts[0] != "before@example.org" {
		t.Fatalf("got %+v", m[0])
	}
}

// Issue 6: mail through the relay arrives DKIM-signed (RSA and Ed25519)
// and verifies with an independent verifier, python3-dkim, answering DNS
// from the records keygen printed. Sources: PHPMailer-like SMTP (swaks with
// an 8-bit body and a long header), PHP mail() and cron via the shim.
func TestDKIMSignedMailVerifies(t *testing.T) {
	need(t, "swaks", "php")
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import dkim, nacl").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3-dkim and python3-nacl are not installed")
		}
		t.Skip("python3-dkim/python3-nacl not installed")
	}
	keyDir := t.TempDir()
	bin, _ := binaries(t)
	records := map[string]string{}
	for _, k := range []struct{ sel, alg string }{{"rsa1", "rsa"}, {"ed1", "ed25519"}} {
		path := filepath.Join(keyDir, k.sel+".pem")
		out, err := exec.Command(bin, "dkim", "keygen", "-domain", "example.com", "-selector", k.sel, "-algorithm", k.alg, "-out", path).Output()
		if err != nil {
			t.Fatalf("keygen: %v", err)
		}
		line := strings.TrimSpace(string(out))
		// S._domainkey.D. IN TXT "v=DKIM1; ..." "..."
		name, rest, _ := strings.Cut(line, " IN TXT ")
		var value strings.Builder
		for _, part := range strings.Split(rest, `" "`) {
			value.WriteString(strings.Trim(part, `"`))
		}
		records[name] = value.String()
	}
	r := startRelay(t, relayOpts{extraConfig: fmt.Sprintf(`dkim:
  - {domain: example.com, selector: rsa1, key: %s, algorithm: rsa}
  - {domain: example.com, selector: ed1, key: %s, algorithm: ed25519}
`, filepath.Join(keyDir, "rsa1.pem"), filepath.Join(keyDir, "ed1.pem"))})
	env := []string{"FACTEUR_CONFIG=" + r.config}
	longSubject := "Subject: " + strings.Repeat("très long sujet ", 20)
	runTool(t, nil, "", "swaks", "--server", r.smtp, "--from", "app@example.com", "--to", "v1@example.org",
		"--header", "From: App <app@example.com>", "--header", longSubject, "--body", "Corps 8-bit: éàü\n\n\n")
	runTool(t, env, "", "php", "-d", "sendmail_path="+r.shim+" -t -i", "-r",
		`mail("v2@example.org", "mail()", "Bonjour\n", "From: site@example.com");`)
	runTool(t, env, "cron output\n", r.shim, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-f", "cron@example.com", "v3@example.org")
	msgs := r.wait(3)
	verifier := `
import dkim, json, sys
records = json.loads(sys.argv[1])
def dns(name, timeout=5):
    v = records.get(name.decode().rstrip("."))
    return v.encode() if v else None
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
n = msg.count(b"DKIM-Signature:")
ok = all(d.verify(idx=i, dnsfunc=dns) for i in range(n))
print(n, ok)
`
	recs := map[string]string{}
	for k, v := range records {
		recs[strings.TrimSuffix(k, ".")] = v
	}
	rj, _ := json.Marshal(recs)
	for _, m := range msgs {
		cmd := exec.Command(py, "-c", verifier, string(rj))
		cmd.Stdin = bytes.NewReader(m.Body)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "2 True" {
			t.Errorf("message to %v does not verify (want 2 signatures): %v %s\n%s", m.Rcpts, err, out, m.Body)
		}
	}
}

// facteur serve refuses a key that is group or world readable.
func TestServeRefusesUnsafeDKIMKey(t *testing.T) {
	bin, _ := binaries(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "k.pem")
	if out, err := exec.Command(bin, "dkim", "keygen", "-domain", "example.com", "-selector", "s", "-out", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	os.Chmod(key, 0o644)
	cfg := filepath.Join(dir, "f.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen: [127.0.0.1:%d]\nadmin: 127.0.0.1:%d\ndata_dir: %s\ndkim:\n  - {domain: example.com, selector: s, key: %s}\n",
		freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1"), filepath.Join(dir, "data"), key)), 0o644)
	out, err := boundedCommand(t, bin, "serve", "-config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), key) {
		t.Fatalf("serve started or did not name the key: %v\n%s", err, out)
	}
}

// Issue 7 §2: with bounces.domain set, the return path on the wire is a
// VERP address; a bounce sent back to it through the inbound listener
// suppresses the recipient it names, and the listener refuses other
// domains.
func TestVERPBounceListener(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "verp.key")
	os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef"), 0o600)
	r := startRelay(t, relayOpts{extra: func(r *relay) string {
		return fmt.Sprintf("bounces:\n  domain: bounces.example.com\n  listen: [%s]\n  secret_file: %s\n", r.addr("bounces"), secret)
	}})
	runTool(t, []string{"FACTEUR_CONFIG=" + r.config}, "Subject: hi\n\nbody\n", r.shim, "-i", "-f", "app@example.com", "ghost@example.org")
	m := r.wait(1)[0]
	if !strings.HasPrefix(m.From, "bounces+") || !strings.HasSuffix(m.From, "@bounces.example.com") {
		t.Fatalf("MAIL FROM %q is not a VERP address", m.From)
	}
	// The remote accepted, then bounced later, naming nobody useful: the
	// token says who it was.
	dsn := "From: MAILER-DAEMON@mx.example.org\r\nTo: " + m.From + "\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\nMIME-Version: 1.0\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n" +
		"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n" +
		"Final-Recipient: rfc822; ghost@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <ghost@example.org>: Recipient address rejected: User unknown\r\n" +
		"--b--\r\n"
	c, err := smtp.Dial(r.addr("bounces"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("someone@example.org", nil); err == nil {
		t.Fatal("the bounce listener accepted a recipient outside its domain")
	}
	if err := c.Rcpt(m.From, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(dsn))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r.waitLog(" suppressed rcpt=<ghost@example.org>")
	out, err := r.cli("suppress", "list", "--json")
	if err != nil || !strings.Contains(out, `"ghost@example.org"`) || !strings.Contains(out, `"dsn"`) {
		t.Fatalf("suppress list: %v\n%s", err, out)
	}
	// The next message to it is refused at RCPT.
	cmd := boundedCommand(t, r.shim, "-i", "-f", "app@example.com", "ghost@example.org")
	cmd.Env = append(os.Environ(), "FACTEUR_CONFIG="+r.config)
	cmd.Stdin = strings.NewReader("Subject: again\n\nx\n")
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 67 {
		t.Fatalf("shim to a suppressed recipient: %v, want exit 67 (EX_NOUSER)", err)
	}
}

// Issue 7's whole path: a loopback MX answers 550 5.1.1; the recipient is
// then in the suppression list and refused at the next RCPT.
func TestUserUnknownSuppressedThenRefused(t *testing.T) {
	need(t, "swaks")
	r := startRelay(t, relayOpts{sinkOpts: relaytest.SinkOptions{Rcpt: func(a string) error {
		if strings.HasPrefix(a, "nobody@") {
			return &smtpError{Code: 550, EnhancedCode: [3]int{5, 1, 1}, Message: "<nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table"}
		}
		return nil
	}}})
	runTool(t, nil, "", "swaks", "--server", r.smtp, "--from", "app@example.com", "--to", "nobody@example.org")
	r.waitLog(" suppressed rcpt=<nobody@example.org>")
	out, err := r.cli("suppress", "list", "--json")
	if err != nil || !strings.Contains(out, `"user_unknown"`) || !strings.Contains(out, `"smtp"`) {
		t.Fatalf("suppress list: %v\n%s", err, out)
	}
	cmd := boundedCommand(t, "swaks", "--server", r.smtp, "--from", "app@example.com", "--to", "nobody@example.org")
	o, _ := cmd.CombinedOutput()
	if !strings.Contains(string(o), "550 5.1.1 <nobody@example.org>: recipient is suppressed (user unknown since ") {
		t.Fatalf("second RCPT not refused as suppressed:\n%s", o)
	}
	// The DSN of the first bounce reached the sender.
	r.wait(1)
	if m := r.sink.Messages()[0]; m.From != "" || m.Rcpts[0] != "app@example.com" {
		t.Errorf("DSN: %+v", m)
	}
}

// Issue 4 §8: SIGTERM during a stalled transaction stops facteur within
// shutdown_timeout; the unacknowledged message stays queued and a restart
// delivers it exactly once.
func TestGracefulStopKeepsInFlight(t *testing.T) {
	need(t, "swaks")
	var mu sync.Mutex
	stall := make(chan struct{})
	stalled := true
	// inData is signalled once the sink has the whole message and has not
	// answered: DATA is in flight, unacknowledged.
	inData := make(chan struct{}, 1)
	r := startRelay(t, relayOpts{extraConfig: "shutdown_timeout: 1s\n", sinkOpts: relaytest.SinkOptions{
		Data: func(rcpts []string, body []byte) error {
			mu.Lock()
			s := stalled
			mu.Unlock()
			if s {
				select {
				case inData <- struct{}{}:
				default:
				}
				<-stall
				return &smtpError{Code: 451, EnhancedCode: [3]int{4, 3, 0}, Message: "too late"}
			}
			return nil
		},
	}})
	defer close(stall)
	runTool(t, nil, "", "swaks", "--server", r.smtp, "--from", "app@example.com", "--to", "inflight@example.org")
	select {
	case <-inData:
	case <-time.After(10 * time.Second):
		t.Fatal("the delivery never reached the end of DATA: nothing would be in flight at the stop")
	}
	start := time.Now()
	r.stop()
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("stop took %v with shutdown_timeout 1s", d)
	}
	mu.Lock()
	stalled = false
	mu.Unlock()
	r.start()
	m := r.wait(1)
	if len(m) != 1 || m[0].Rcpts[0] != "inflight@example.org" {
		t.Fatalf("after restart: %+v", m)
	}
	r.waitLog(" delivered rcpt=<inflight@example.org>")
	if n := len(r.sink.Messages()); n != 1 {
		t.Errorf("delivered %d times", n)
	}
}

// Issue 8 §4: a webhook receiver that is down for a while still gets every
// event once it is back, signed.
func TestWebhookReceiverDownThenBack(t *testing.T) {
	need(t, "swaks")
	secret := "s3cret-webhook-key"
	var mu sync.Mutex
	down := true
	got := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(r.Header.Get("X-Facteur-Timestamp") + "."))
		mac.Write(body)
		if r.Header.Get("X-Facteur-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if down {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		var payload struct {
			Events []struct {
				Event     string `json:"event"`
				Recipient string `json:"recipient"`
			} `json:"events"`
		}
		json.Unmarshal(body, &payload)
		for _, e := range payload.Events {
			got[e.Event+" "+e.Recipient]++
		}
	}))
	defer srv.Close()
	r := startRelay(t, relayOpts{extraConfig: fmt.Sprintf("webhooks:\n  - {url: %q, secret: %q, batch_wait: 10ms}\n", srv.URL, secret),
		sinkOpts: relaytest.SinkOptions{Rcpt: func(a string) error {
			if strings.HasPrefix(a, "gone@") {
				return &smtpError{Code: 550, EnhancedCode: [3]int{5, 1, 1}, Message: "user unknown"}
			}
			return nil
		}}})
	runTool(t, nil, "", "swaks", "--server", r.smtp, "--from", "app@example.com", "--to", "ok@example.org")
	runTool(t, nil, "", "swaks", "--server", r.smtp, "--from", "app@example.com", "--to", "gone@example.org")
	r.waitLog("webhook failed")
	mu.Lock()
	down = false
	mu.Unlock()
	want := []string{"delivered ok@example.org", "bounced gone@example.org", "suppressed gone@example.org"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := 0
		for _, w := range want {
			if got[w] > 0 {
				n++
			}
		}
		dup := false
		for _, c := range got {
			dup = dup || c > 1
		}
		mu.Unlock()
		if dup {
			t.Fatalf("an event arrived twice: %v", got)
		}
		if n == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook events %v, want %v\n%s", got, want, r.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Issue 5: a policy file's rate spaces deliveries and `connections: 1`
// never opens a second connection; a [TSS04] at a domain whose MX is
// Yahoo's suspends yahoo, shows in `providers --json` and in next_attempt,
// and `provider resume` + `queue flush` send again.
func TestPolicyShapingThroughTheDaemon(t *testing.T) {
	need(t, "python3")
	var mu sync.Mutex
	tss04 := true
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte("providers:\n  default:\n    rate: 20/s\n    connections: 1\n"), 0o644)
	r := startRelay(t, relayOpts{extraConfig: "policy: " + pol + "\n", sinkOpts: relaytest.SinkOptions{Rcpt: func(a string) error {
		mu.Lock()
		defer mu.Unlock()
		if strings.HasSuffix(a, "@yahoo-hosted.example") && tss04 {
			return &smtpError{Code: 421, EnhancedCode: [3]int{4, 7, 0}, Message: "[TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1"}
		}
		return nil
	}}})
	r.dns.Set("yahoo-hosted.example", relaytest.Zone{MX: []relaytest.MX{{Host: "mta5.am0.yahoodns.net", Pref: 1}}})
	r.dns.Set("mta5.am0.yahoodns.net", relaytest.Zone{A: []string{"127.0.0.2"}})
	script := `
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
s = smtplib.SMTP(host, int(port))
for r in sys.argv[2:]:
    s.sendmail("app@example.com", [r], "Subject: %s\r\n\r\nx\r\n" % r)
s.quit()
`
	start := time.Now()
	args := []string{"-c", script, r.smtp}
	for i := range 10 {
		args = append(args, fmt.Sprintf("p%d@example.org", i))
	}
	runTool(t, nil, "", "python3", args...)
	r.wait(10)
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("10 deliveries at 20/s took %v, want at least 0.45 s", d)
	}
	if c := r.sink.MaxConcurrent(); c != 1 {
		t.Errorf("%d concurrent connections with connections: 1", c)
	}
	runTool(t, nil, "", "python3", "-c", script, r.smtp, "y@yahoo-hosted.example")
	r.waitLog(" deferred rcpt=<y@yahoo-hosted.example> provider=yahoo")
	// The deferral is logged before it is committed (and counted in the
	// provider's deferred): read until it is.
	eventually(t, func() []string {
		out, err := r.cli("providers", "--json")
		if err != nil {
			return []string{err.Error()}
		}
		var provs []struct {
			Name           string     `json:"name"`
			SuspendedUntil *time.Time `json:"suspended_until"`
			Reason         *string    `json:"suspended_reason"`
			Deferred       int        `json:"deferred"`
		}
		json.Unmarshal([]byte(out), &provs)
		for _, p := range provs {
			if p.Name == "yahoo" {
				if p.SuspendedUntil == nil || time.Until(*p.SuspendedUntil) < 3*time.Hour+50*time.Minute || p.Reason == nil || !strings.Contains(*p.Reason, "TSS04") || p.Deferred != 1 {
					return []string{fmt.Sprintf("yahoo: %+v", p)}
				}
				return nil
			}
		}
		return []string{"no yahoo in providers --json:\n" + out}
	})
	if t.Failed() {
		t.FailNow()
	}
	out, _ := r.cli("queue", "list", "--json")
	if !strings.Contains(out, `"provider": "yahoo"`) {
		t.Errorf("queue list lacks the yahoo provider:\n%s", out)
	}
	// flush alone respects the suspension and says so.
	if out, err := r.cli("queue", "flush"); err != nil || !strings.Contains(out, "skipped") || !strings.Contains(out, "yahoo") {
		t.Errorf("flush during the suspension: %v\n%s", err, out)
	}
	mu.Lock()
	tss04 = false
	mu.Unlock()
	if _, err := r.cli("provider", "resume", "yahoo"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cli("queue", "flush"); err != nil {
		t.Fatal(err)
	}
	r.waitLog(" delivered rcpt=<y@yahoo-hosted.example>")
	for _, ev := range []string{" suspended provider=yahoo", " resumed provider=yahoo"} {
		if !strings.Contains(r.logText(), ev) {
			t.Errorf("log lacks %q", ev)
		}
	}
}

// Like mailq, `queue list` and `queue show` work with the daemon down.
func TestQueueListWithDaemonDown(t *testing.T) {
	r := startRelay(t, relayOpts{sinkOpts: relaytest.SinkOptions{Rcpt: func(string) error {
		return &smtpError{Code: 451, EnhancedCode: [3]int{4, 7, 1}, Message: "greylisted"}
	}}})
	runTool(t, []string{"FACTEUR_CONFIG=" + r.config}, "Subject: q\n\nx\n", r.shim, "-i", "-f", "app@example.com", "waiting@example.org")
	r.waitLog(" deferred rcpt=<waiting@example.org>")
	// The deferral is logged before it is committed, and a stop cancels
	// a commit not yet made: stop once the queue has it.
	eventually(t, func() []string {
		if out, err := r.cli("queue", "list", "--json"); err != nil || !strings.Contains(out, `"deferred"`) {
			return []string{fmt.Sprintf("the deferral is not in the queue: %v\n%s", err, out)}
		}
		return nil
	})
	r.stop()
	out, err := r.cli("queue", "list", "--json")
	if err != nil || !strings.Contains(out, `"waiting@example.org"`) || !strings.Contains(out, `"deferred"`) {
		t.Fatalf("queue list --json with the daemon down: %v\n%s", err, out)
	}
	var msgs []struct {
		ID string `json:"id"`
	}
	json.Unmarshal([]byte(out), &msgs)
	if out, err := r.cli("queue", "show", msgs[0].ID); err != nil || !strings.Contains(out, "waiting@example.org") {
		t.Fatalf("queue show with the daemon down: %v\n%s", err, out)
	}
	if out, err := r.cli("queue", "list"); err != nil || !strings.Contains(out, "451 4.7.1 greylisted") {
		t.Fatalf("queue list with the daemon down: %v\n%s", err, out)
	}
}

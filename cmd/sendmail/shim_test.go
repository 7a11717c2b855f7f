package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/queue/maildrop"
	facteuradmin "facteur/relay/admin"
	"facteur/relay/relaytest"
)

// shimBin is the shim, built once by TestMain and run as a process.
var shimBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sendmail-shim-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shimBin = filepath.Join(dir, "sendmail")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	build := exec.Command(goTool, "build", "-o", shimBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the shim: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// received is one message the stand-in daemon accepted.
type received struct {
	from  string
	rcpts []string
	data  string
}

// daemon is a go-smtp server standing in for facteur's listener, with
// replies scripted per recipient.
type daemon struct {
	addr    string
	mailErr *smtp.SMTPError
	rcptErr map[string]*smtp.SMTPError
	dataErr *smtp.SMTPError

	mu   sync.Mutex
	msgs []received // mu guards msgs
}

func (d *daemon) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{d: d}, nil }

func (d *daemon) messages() []received {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]received(nil), d.msgs...)
}

type session struct {
	d   *daemon
	cur received
}

func (s *session) Reset()        { s.cur = received{} }
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.d.mailErr != nil {
		return s.d.mailErr
	}
	s.cur.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if e := s.d.rcptErr[to]; e != nil {
		return e
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.d.dataErr != nil {
		return s.d.dataErr
	}
	s.cur.data = string(b)
	s.d.mu.Lock()
	s.d.msgs = append(s.d.msgs, s.cur)
	s.d.mu.Unlock()
	return nil
}

func startDaemon(t *testing.T, d *daemon) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(d)
	srv.Domain = "daemon.test"
	srv.EnableSMTPUTF8 = true
	d.addr = l.Addr().String()
	done := make(chan struct{})
	go func() {
		srv.Serve(l)
		close(done)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}

// freeAddr returns a loopback address where nothing listens, for the
// whole test: a socket bound there and never listening holds the port,
// where a port merely found free could be taken by another process
// (another test suite) before the shim connects.
func freeAddr(t *testing.T) string { return relaytest.RefusingAddr(t, "") }

// setup is one test's config, data_dir and maildrop.
type setup struct {
	dir, config, dataDir, maildrop string
}

func newSetup(t *testing.T, listen, admin, extra string) *setup {
	t.Helper()
	s := &setup{dir: t.TempDir()}
	s.dataDir = filepath.Join(s.dir, "data")
	s.maildrop = filepath.Join(s.dataDir, "maildrop")
	if err := maildrop.Init(s.maildrop, -1); err != nil {
		t.Fatal(err)
	}
	s.config = filepath.Join(s.dir, "facteur.yaml")
	// Never the host's /etc/aliases nor /var/mail: the tests run as root.
	cfg := fmt.Sprintf("hostname: host.test\nlocal_domain: local.test\nlisten: [%q]\ndata_dir: %q\nadmin: %q\naliases_file: \"\"\nmail_spool: %q\nsenders:\n  www-data: noreply@example.com\n%s",
		listen, s.dataDir, admin, filepath.Join(s.dir, "spool"), extra)
	if err := os.WriteFile(s.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *setup) dropped(t *testing.T) []string {
	t.Helper()
	paths, err := maildrop.List(s.maildrop)
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs the shim (or a symlink to it named argv0) with FACTEUR_CONFIG
// pointing at s.config.
func (s *setup) run(t *testing.T, argv0, stdin string, args ...string) result {
	t.Helper()
	bin := shimBin
	if argv0 != "" {
		bin = filepath.Join(s.dir, argv0)
		if err := os.Symlink(shimBin, bin); err != nil && !errors.Is(err, os.ErrExist) {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(), "FACTEUR_CONFIG="+s.config)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// me is the login name and the From: display name (GECOS) of the test's
// uid, which the shim uses when -f is absent.
func me(t *testing.T) (login, gecos string) {
	t.Helper()
	u, err := user.LookupId(strconv.Itoa(os.Getuid()))
	if err != nil {
		t.Skipf("cmd/sendmail: uid %d has no login name: %v", os.Getuid(), err)
	}
	gecos, _, _ = strings.Cut(u.Name, ",")
	return u.Username, gecos
}

func fromField(name, addr string) string {
	return "From: " + formatFrom(name, addr) + "\r\n"
}

func TestRefusedCommandLines(t *testing.T) {
	d := &daemon{}
	startDaemon(t, d)
	s := newSetup(t, d.addr, freeAddr(t), "")
	tests := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"-X", []string{"-X/var/www/x.php", "root"}, exUsage, "-X"},
		{"-C", []string{"-C", "/tmp/evil.cf", "root"}, exUsage, "-C"},
		{"-O", []string{"-OQueueDirectory=/tmp", "root"}, exUsage, "-O"},
		{"-oQ", []string{"-oQ/tmp/", "root"}, exUsage, "-oQ"},
		{"-oA", []string{"-oA/tmp/aliases", "root"}, exUsage, "alias"},
		{"-q", []string{"-q"}, exUsage, "queue"},
		{"-q15m", []string{"-q15m"}, exUsage, "-q15m"},
		{"-bd", []string{"-bd"}, exUsage, "daemon"},
		{"-bv", []string{"-bv", "root"}, exUsage, "not supported"},
		{"unknown flag", []string{"-z", "root"}, exUsage, "unknown option -z"},
		{"unknown flag in a group", []string{"-tiz"}, exUsage, "unknown option -z"},
		{"unknown -o", []string{"-oL9", "root"}, exUsage, "-oL9"},
		{"bad -B", []string{"-B9BIT", "root"}, exUsage, "body type"},
		{"-f without value", []string{"root", "-f"}, exUsage, "needs a value"},
		{"two senders", []string{"-f", "a@example.com", "-r", "b@example.com", "root"}, exUsage, "more than one sender"},
		{"CVE-2016-10033 as the shell splits it", []string{"-f\"attacker\\\"", "-oQ/tmp/", "-X/var/www/x.php\"", "root"}, exUsage, "bad sender"},
		{"CVE-2016-10033 in one word", []string{"-f\"attacker\\\" -oQ/tmp/ -X/var/www/x.php\"@example.com", "root"}, exUsage, "whitespace"},
		{"CVE-2016-10033 bare", []string{"-f\"attacker\\\" -oQ/tmp/ -X/var/www/x.php\"", "root"}, exUsage, "bad sender"},
		{"-f with a space", []string{"-f", "a b@example.com", "root"}, exUsage, "bad sender"},
		{"-f that is an option", []string{"-f", "-oQ/tmp", "root"}, exUsage, "starts with '-'"},
		{"-f with two addresses", []string{"-f", "a@example.com,b@example.com", "root"}, exUsage, "bad sender"},
		{"-f with two @", []string{"-fa@b@example.com", "root"}, exUsage, "bad sender"},
		{"-F with a header injection", []string{"-F", "x\nBcc: victim@example.com", "root"}, exUsage, "full name"},
		{"no recipients", nil, exUsage, "no recipients"},
		{"-t and none in the header", []string{"-t"}, exUsage, "no recipients"},
		{"bad recipient argument", []string{"a b@example.com"}, exUsage, "bad recipient"},
		{"lone dash", []string{"-", "root"}, exUsage, "\"-\""},
		{"recipients with -bp", []string{"-bp", "root"}, exUsage, "takes none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.run(t, "", "Subject: x\n\nbody\n", tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.says) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.says)
			}
		})
	}
	if msgs := d.messages(); len(msgs) != 0 {
		t.Errorf("refused command lines sent %d messages", len(msgs))
	}
	if paths := s.dropped(t); len(paths) != 0 {
		t.Errorf("refused command lines left %q in the maildrop", paths)
	}
}

func TestSubmit(t *testing.T) {
	login, gecos := me(t)
	meFrom := fromField(gecos, login+"@local.test")
	suppressed := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "suppressed: hard bounce"}
	tests := []struct {
		name      string
		args      []string
		stdin     string
		rcptErr   map[string]*smtp.SMTPError
		mailErr   *smtp.SMTPError
		dataErr   *smtp.SMTPError
		code      int
		stderr    string
		want      *received // what the daemon got; nil: nothing
		wantDrop  []string  // recipients left in the maildrop; nil: nothing
		extraConf string
	}{
		{
			name:  "cron's exact line",
			args:  []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"},
			stdin: "Subject: Cron <root@host> run-parts\nContent-Type: text/plain; charset=UTF-8\n\nrésumé\n.\nafter a lone dot\n",
			want: &received{from: login + "@local.test", rcpts: []string{"root@local.test"},
				data: "Subject: Cron <root@host> run-parts\r\nContent-Type: text/plain; charset=UTF-8\r\n" + fromField("CronDaemon", login+"@local.test") + "\r\nrésumé\r\n.\r\nafter a lone dot\r\n"},
		},
		{
			name:  "PHP mail(): -t -i, Bcc removed",
			args:  []string{"-t", "-i"},
			stdin: "To: Jane <jane@example.com>\nCc: bob@example.com\nBcc: secret@example.org\nSubject: Order\nX-PHP-Originating-Script: 33:index.php\n\nHello\n.\n",
			want: &received{from: login + "@local.test", rcpts: []string{"jane@example.com", "bob@example.com", "secret@example.org"},
				data: "To: Jane <jane@example.com>\r\nCc: bob@example.com\r\nSubject: Order\r\nX-PHP-Originating-Script: 33:index.php\r\n" + meFrom + "\r\nHello\r\n.\r\n"},
		},
		{
			name:  "PHP mail() with -f",
			args:  []string{"-t", "-i", "-fsender@example.com"},
			stdin: "To: jane@example.com\r\nSubject: x\r\n\r\nbody\r\n",
			want: &received{from: "sender@example.com", rcpts: []string{"jane@example.com"},
				data: "To: jane@example.com\r\nSubject: x\r\nFrom: sender@example.com\r\n\r\nbody\r\n"},
		},
		{
			name:  "-t adds argument recipients, once each",
			args:  []string{"-t", "-i", "ops@example.com", "root"},
			stdin: "To: OPS@example.com, ops@EXAMPLE.com\nFrom: app@example.com\n\nx\n",
			want: &received{from: login + "@local.test", rcpts: []string{"OPS@example.com", "ops@EXAMPLE.com", "root@local.test"},
				data: "To: OPS@example.com, ops@EXAMPLE.com\r\nFrom: app@example.com\r\n\r\nx\r\n"},
		},
		{
			name:  "a lone dot ends the message without -i",
			args:  []string{"root"},
			stdin: "Subject: x\n\nkept\n.\nnot sent\n",
			want:  &received{from: login + "@local.test", rcpts: []string{"root@local.test"}, data: "Subject: x\r\n" + meFrom + "\r\nkept\r\n"},
		},
		{
			name:  "senders rewriting shows in From:",
			args:  []string{"-f", "www-data", "root"},
			stdin: "Subject: x\n\nb\n",
			want:  &received{from: "www-data@local.test", rcpts: []string{"root@local.test"}, data: "Subject: x\r\nFrom: noreply@example.com\r\n\r\nb\r\n"},
		},
		{
			name:  "null sender",
			args:  []string{"-f", "<>", "a@example.com"},
			stdin: "Subject: bounce\n\nb\n",
			want:  &received{from: "", rcpts: []string{"a@example.com"}, data: "Subject: bounce\r\n\r\nb\r\n"},
		},
		{
			name:    "suppressed recipient: EX_NOUSER, the others still sent",
			args:    []string{"-i", "gone@example.com", "ok@example.com"},
			stdin:   "Subject: x\n\nb\n",
			rcptErr: map[string]*smtp.SMTPError{"gone@example.com": suppressed},
			code:    exNoUser,
			stderr:  "<gone@example.com>: 550 5.1.1 suppressed",
			want:    &received{from: login + "@local.test", rcpts: []string{"ok@example.com"}, data: "Subject: x\r\n" + meFrom + "\r\nb\r\n"},
		},
		{
			name:    "only recipient suppressed",
			args:    []string{"gone@example.com"},
			stdin:   "x\n",
			rcptErr: map[string]*smtp.SMTPError{"gone@example.com": suppressed},
			code:    exNoUser,
			stderr:  "5.1.1",
		},
		{
			name:    "MAIL refused: EX_DATAERR",
			args:    []string{"-f", "bad@example.com", "a@example.com"},
			stdin:   "x\n",
			mailErr: &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 8}, Message: "sender refused"},
			code:    exDataErr,
			stderr:  "553 5.1.8 sender refused",
		},
		{
			name:    "DATA refused by policy: EX_UNAVAILABLE",
			args:    []string{"a@example.com"},
			stdin:   "x\n",
			dataErr: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "policy"},
			code:    exUnavailable,
			stderr:  "554 5.7.1 policy",
		},
		{
			// Issue 11 §2: a 4xx (a rate limit) is the daemon's decision; the
			// maildrop is no way around it.
			name:    "4xx to RCPT: EX_TEMPFAIL, nothing queued",
			args:    []string{"a@example.com", "b@example.com"},
			stdin:   "x\n",
			rcptErr: map[string]*smtp.SMTPError{"b@example.com": {Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Rate limit exceeded for user www-data"}},
			code:    exTempFail,
			stderr:  "451 4.7.1 Rate limit exceeded for user www-data",
		},
		{
			name:    "4xx to DATA: EX_TEMPFAIL, nothing queued",
			args:    []string{"a@example.com"},
			stdin:   "x\n",
			dataErr: &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "disk full"},
			code:    exTempFail,
			stderr:  "452 4.3.1 disk full",
		},
		{
			name:    "4xx to MAIL: EX_TEMPFAIL",
			args:    []string{"a@example.com"},
			stdin:   "x\n",
			mailErr: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Rate limit exceeded for client 127.0.0.1"},
			code:    exTempFail,
			stderr:  "451 4.7.1 Rate limit",
		},
		{
			name:    "one refused, then a 4xx: both said, EX_TEMPFAIL",
			args:    []string{"gone@example.com", "b@example.com"},
			stdin:   "x\n",
			rcptErr: map[string]*smtp.SMTPError{"gone@example.com": suppressed, "b@example.com": {Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}},
			code:    exTempFail,
			stderr:  "<gone@example.com>",
		},
		{
			name:      "too big: EX_DATAERR",
			args:      []string{"a@example.com"},
			stdin:     strings.Repeat("0123456789\n", 100),
			extraConf: "max_message_size: 500\n",
			code:      exDataErr,
			stderr:    "max_message_size",
		},
		{
			name:   "bad To: with -t: EX_DATAERR",
			args:   []string{"-t"},
			stdin:  "To: John root\n\nx\n",
			code:   exDataErr,
			stderr: "bad To:",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &daemon{rcptErr: tc.rcptErr, mailErr: tc.mailErr, dataErr: tc.dataErr}
			startDaemon(t, d)
			s := newSetup(t, d.addr, freeAddr(t), tc.extraConf)
			r := s.run(t, "", tc.stdin, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.stderr)
			}
			msgs := d.messages()
			switch {
			case tc.want == nil && len(msgs) != 0:
				t.Errorf("daemon got %+v, want nothing", msgs)
			case tc.want != nil && (len(msgs) != 1 || !reflect.DeepEqual(msgs[0], *tc.want)):
				t.Errorf("daemon got\n%+v\nwant\n%+v", msgs, *tc.want)
			}
			paths := s.dropped(t)
			if tc.wantDrop == nil {
				if len(paths) != 0 {
					t.Errorf("maildrop has %q, want nothing", paths)
				}
				return
			}
			if len(paths) != 1 {
				t.Fatalf("maildrop has %q, want one file", paths)
			}
			env, _, err := maildrop.Read(paths[0])
			if err != nil || !reflect.DeepEqual(env.Recipients, tc.wantDrop) {
				t.Errorf("maildrop recipients %q, %v; want %q", env.Recipients, err, tc.wantDrop)
			}
		})
	}
}

// TestMaildropWhenDaemonDown: nothing listens; the message lands in the
// maildrop with the same envelope and bytes SMTP would have carried.
func TestMaildropWhenDaemonDown(t *testing.T) {
	login, _ := me(t)
	s := newSetup(t, freeAddr(t), freeAddr(t), "")
	stdin := "To: a@example.com\nSubject: while restarting\n\nbody ☃\n"
	r := s.run(t, "", stdin, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root", "a@example.com")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	paths := s.dropped(t)
	if len(paths) != 1 {
		t.Fatalf("maildrop has %q, want one file", paths)
	}
	env, body, err := maildrop.Read(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	want := maildrop.Envelope{
		Sender:       login + "@local.test",
		Recipients:   []string{"root@local.test", "a@example.com"},
		EightBitMIME: true,
		UID:          os.Getuid(),
		User:         login,
		Time:         env.Time,
	}
	if !reflect.DeepEqual(env, want) {
		t.Errorf("envelope %+v, want %+v", env, want)
	}
	wantBody := "To: a@example.com\r\nSubject: while restarting\r\n" + fromField("CronDaemon", login+"@local.test") + "\r\nbody ☃\r\n"
	if string(body) != wantBody {
		t.Errorf("body %q, want %q", body, wantBody)
	}

	t.Run("verbose says where it went", func(t *testing.T) {
		r := s.run(t, "", "x\n", "-v", "-N", "never", "root")
		if r.code != 0 || !strings.Contains(r.stderr, "maildrop") || !strings.Contains(r.stderr, "-N never accepted and ignored") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("no maildrop: EX_CANTCREAT", func(t *testing.T) {
		if err := os.RemoveAll(s.maildrop); err != nil {
			t.Fatal(err)
		}
		r := s.run(t, "", "x\n", "root")
		if r.code != exCantCreat || !strings.Contains(r.stderr, "does not exist") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// showqServer plays the daemon's showq socket: every client gets listing.
func showqServer(t *testing.T, dataDir, listing string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dataDir, "public"), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dataDir, "public", "showq.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, listing)
			c.Close()
		}
	}()
}

// squatter listens on a TCP port and records every byte it is sent: a
// process that took the admin port while facteur restarted.
func squatter(t *testing.T) (string, func() string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var got bytes.Buffer
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				b, _ := io.ReadAll(io.LimitReader(c, 4096))
				mu.Lock()
				got.Write(b)
				got.WriteString("<conn>")
				mu.Unlock()
			}()
		}
	}()
	return ln.Addr().String(), func() string {
		mu.Lock()
		defer mu.Unlock()
		return got.String()
	}
}

// mailq reads the daemon's showq socket: no token, nothing sent to the TCP
// admin port even when the config has a token and a squatter holds it.
func TestMailq(t *testing.T) {
	const listing = "0G3ZK4R2Q8M1  4096 2026-11-22T14:03:08Z  <a@example.com>\n  deferred <b@example.org> 421 4.7.0 try later\n"
	admin, seen := squatter(t)
	s := newSetup(t, freeAddr(t), admin, "admin_token: s3cret-token-0123456789\n")
	showqServer(t, s.dataDir, listing)
	for _, argv0 := range []string{"", "mailq"} {
		args := []string{"-bp"}
		if argv0 != "" {
			args = nil
		}
		r := s.run(t, argv0, "", args...)
		if r.code != 0 || r.stdout != listing {
			t.Errorf("%s %q: exit %d, stdout %q, stderr %q", argv0, args, r.code, r.stdout, r.stderr)
		}
	}
	if got := seen(); got != "" {
		t.Errorf("mailq talked to the TCP admin port: %q", got)
	}

	t.Run("listing slot taken", func(t *testing.T) {
		// The daemon refuses a listing beyond the account's share: the
		// refusal goes to stderr, never to stdout as if it were the queue,
		// and the exit says try again later.
		s := newSetup(t, freeAddr(t), admin, "")
		showqServer(t, s.dataDir, facteuradmin.ShowqBusy+"another listing for uid 33 is in progress; try again when it is done\n")
		r := s.run(t, "mailq", "")
		if r.code != exTempFail || r.stdout != "" || !strings.Contains(r.stderr, "queue listing unavailable: another listing for uid 33") {
			t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("daemon down, empty", func(t *testing.T) {
		s := newSetup(t, freeAddr(t), admin, "")
		r := s.run(t, "mailq", "")
		if r.code != 0 || r.stdout != "Mail queue is empty\n" || !strings.Contains(r.stderr, "mail system is down") {
			t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		if got := seen(); got != "" {
			t.Errorf("mailq talked to the TCP admin port: %q", got)
		}
	})
}

// TestMailqDaemonDown: with the daemon stopped, root's mailq (and the
// daemon's user's) reads the maildrop's envelopes and the queue database
// itself, as `facteur queue list` does; it never says the queue is empty
// when it is not, and never prints a body. Anyone else is told the mail
// system is down (EX_UNAVAILABLE) and sees nothing.
func TestMailqDaemonDown(t *testing.T) {
	const secret = "body-secret-7Q2"
	cases := []struct {
		name     string
		maildrop bool
		queued   bool
		wantOut  []string
		notOut   []string
	}{
		{"maildrop only", true, false, []string{"1 message waiting in the maildrop", "dropped@example.org", "user=cron"}, []string{"Mail queue is empty", secret}},
		{"queue only", false, true, []string{"queued@example.net", "client=127.0.0.9", "-- 1 Kbytes in 1 Request."}, []string{"Mail queue is empty", "maildrop", secret}},
		{"both", true, true, []string{"1 message waiting in the maildrop", "dropped@example.org", "queued@example.net", "1 Request."}, []string{"Mail queue is empty", secret}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t, freeAddr(t), freeAddr(t), "")
			if tc.maildrop {
				env := maildrop.Envelope{Time: time.Now(), UID: os.Getuid(), User: "cron", Sender: "cron@local.test", Recipients: []string{"dropped@example.org"}}
				if _, err := maildrop.Write(s.maildrop, env, strings.NewReader("Subject: x\r\n\r\n"+secret+"\r\n")); err != nil {
					t.Fatal(err)
				}
			}
			if tc.queued {
				st, err := queue.Open(filepath.Join(s.dataDir, "queue.db"), queue.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := st.Enqueue(t.Context(), queue.Envelope{Sender: "site@example.com", Recipients: []string{"queued@example.net"}, ClientIP: "127.0.0.9"}, []byte("Subject: y\r\n\r\n"+secret+"\r\n"), time.Now()); err != nil {
					t.Fatal(err)
				}
				st.Close()
			}
			r := s.run(t, "mailq", "")
			if r.code != 0 || !strings.Contains(r.stderr, "mail system is down") {
				t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
			for _, w := range tc.notOut {
				if strings.Contains(r.stdout, w) {
					t.Errorf("stdout has %q:\n%s", w, r.stdout)
				}
			}

			t.Run("another user", func(t *testing.T) {
				if os.Getuid() != 0 {
					t.Skip("cmd/sendmail: needs root to switch users")
				}
				openUp(t, s.dir)
				// The installed modes: data_dir 0710 group facteur-drop.
				if err := os.Chown(s.dataDir, 0, dropGID); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(s.dataDir, 0o710); err != nil {
					t.Fatal(err)
				}
				bin := filepath.Join(s.dir, "sendmail")
				copyFile(t, shimBin, bin, 0o755)
				r := runAs(t, nobody, dropGID, bin, s.config, "", "-bp")
				if r.code != exUnavailable || !strings.Contains(r.stderr, "mail system is down") || r.stdout != "" {
					t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
				}
			})
		})
	}
	t.Run("daemon holds the queue", func(t *testing.T) {
		s := newSetup(t, freeAddr(t), freeAddr(t), "")
		st, err := queue.Open(filepath.Join(s.dataDir, "queue.db"), queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		r := s.run(t, "mailq", "")
		if r.code != exUnavailable || strings.Contains(r.stdout, "Mail queue is empty") || !strings.Contains(r.stderr, "holds the queue") {
			t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
}

package main

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/policy/bounce"
	"facteur/relay/relaytest"
)

// Issue 11 §7: the relayhost's certificate is verified by default; a
// relayhost with a self-signed certificate (anyone on the path) never sees
// AUTH, and one whose CA is named by relayhost_tls_ca gets it.
func TestRelayhostSelfSignedNeverSeesAuth(t *testing.T) {
	need(t, "swaks")
	cert := relaytest.SelfSignedCert(t, "mx.example.org")
	for _, tc := range []struct {
		name      string
		withCA    bool
		wantAuths int32
	}{
		{"self-signed and verification on by default", false, 0},
		{"private CA named by relayhost_tls_ca", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var auths atomic.Int32
			dir := t.TempDir()
			pw := filepath.Join(dir, "relay.pw")
			if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			extra := ""
			if tc.withCA {
				ca := filepath.Join(dir, "ca.pem")
				if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
					t.Fatal(err)
				}
				extra = "  relayhost_tls_ca: " + ca + "\n"
			}
			r := startRelay(t, relayOpts{
				sinkOpts: relaytest.SinkOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Auth: func(u, p string) error {
					auths.Add(1)
					if u != "web1" || p != "s3cret" {
						return errors.New("bad credentials")
					}
					return nil
				}},
				extra: func(r *relay) string {
					return fmt.Sprintf("  relayhost: mx.example.org:%d\n  relayhost_tls: starttls\n  relayhost_auth: {username: web1, password_file: %q}\n%s", r.sink.Port(), pw, extra)
				},
			})
			runTool(t, nil, "", "swaks", "--server", r.smtp, "--from", "app@example.com", "--to", "someone@example.net")
			if tc.withCA {
				r.wait(1)
				r.waitLog(" delivered rcpt=<someone@example.net>")
			} else {
				r.waitLog(" deferred rcpt=<someone@example.net>")
				if !strings.Contains(r.logText(), "certificate") {
					t.Errorf("the deferral does not say the certificate failed:\n%s", r.logText())
				}
			}
			if got := auths.Load(); got != tc.wantAuths {
				t.Errorf("relayhost saw %d AUTH, want %d", got, tc.wantAuths)
			}
		})
	}
}

// Issue 11 §5: a report sent to the inbound listener suppresses only the
// recipient its VERP token names. A forged DSN without a token suppresses
// nobody (it is logged and sent to the webhooks); one with a valid token
// for alice that also names victim suppresses alice only.
func TestForgedBounceSuppressesNobody(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "verp.key")
	secret := []byte("0123456789abcdef0123456789abcdef")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	events := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var payload struct {
			Events []struct {
				Event     string `json:"event"`
				Recipient string `json:"recipient"`
			} `json:"events"`
		}
		json.NewDecoder(r.Body).Decode(&payload)
		mu.Lock()
		defer mu.Unlock()
		for _, e := range payload.Events {
			events[e.Event+" "+e.Recipient]++
		}
	}))
	defer hook.Close()
	r := startRelay(t, relayOpts{extra: func(r *relay) string {
		return fmt.Sprintf("bounces:\n  domain: bounces.example.com\n  listen: [%s]\n  secret_file: %s\n"+
			"webhooks:\n  - {url: %q, secret: s3cret-webhook-key, batch_wait: 10ms}\n", r.addr("bounces"), secretFile, hook.URL)
	}})
	dsn := func(to string, rcpts ...string) string {
		var b strings.Builder
		b.WriteString("From: MAILER-DAEMON@mx.example.org\r\nTo: " + to + "\r\nSubject: Undelivered Mail\r\n" +
			"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\nMIME-Version: 1.0\r\n\r\n" +
			"--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n" +
			"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n")
		for _, rc := range rcpts {
			b.WriteString("\r\nFinal-Recipient: rfc822; " + rc + "\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <" + rc + ">: User unknown\r\n")
		}
		b.WriteString("--b--\r\n")
		return b.String()
	}
	send := func(rcpt, body string) {
		t.Helper()
		c, err := smtp.Dial(r.addr("bounces"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.SendMail("", []string{rcpt}, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	suppressed := func() string {
		out, err := r.cli("suppress", "list", "--json")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	// No token, then a token that does not verify.
	send("bounces@bounces.example.com", dsn("bounces@bounces.example.com", "victim@example.org"))
	send("bounces+aaaabbbbccccddddeeeeffff@bounces.example.com", dsn("x@example.org", "victim2@example.org"))
	r.waitLog("rcpt=<victim2@example.org> client=")
	if !strings.Contains(r.logText(), " bounce unverified kind=dsn rcpt=<victim@example.org>") {
		t.Errorf("no unverified line for victim:\n%s", r.logText())
	}
	// A valid token for alice, in a report that also names victim3.
	tok := bounce.VERPAddress("bounces", "bounces.example.com", bounce.EncodeToken("0AAAAAAAAAAA", "alice@example.org", secret))
	send(tok, dsn(tok, "victim3@example.org", "alice@example.org"))
	r.waitLog(" suppressed rcpt=<alice@example.org>")
	out := suppressed()
	for _, v := range []string{"victim@", "victim2@", "victim3@"} {
		if strings.Contains(out, v) {
			t.Errorf("%s suppressed by a report that does not prove it:\n%s", v, out)
		}
	}
	if !strings.Contains(out, "alice@example.org") {
		t.Errorf("alice, named by a valid token, not suppressed:\n%s", out)
	}
	// The unverified addresses reach the webhook.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := events["unverified_report victim@example.org"] + events["unverified_report victim3@example.org"]
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("webhook events %v, want unverified_report for victim and victim3", events)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// throwawayUser creates a local user for the test and removes it after.
// It needs root: elsewhere the test skips, and fails when CI is set.
func throwawayUser(t *testing.T) (name string, uid, gid uint32) {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("cmd/facteur: this test creates a local user and needs root, and CI is set")
		}
		t.Skip("cmd/facteur: needs root to create a throwaway local user (useradd); skipping")
	}
	name = fmt.Sprintf("fct%d", os.Getpid()%1000000)
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(u.Uid)
	g, _ := strconv.Atoi(u.Gid)
	return name, uint32(n), uint32(g)
}

// openUpTo makes dir and its parents up to /tmp searchable by others
// (t.TempDir creates them 0700).
func openUpTo(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// runAsUser runs a program with the given credentials.
func runAsUser(t *testing.T, uid, gid uint32, env []string, name string, args ...string) cliResult {
	t.Helper()
	cmd := boundedCommand(t, name, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return res
}

// Issue 11 §4, "How it will be checked": an unprivileged local user reaches
// no admin action (the admin socket, TCP without the token, a foreign Host,
// a form POST) while root's CLI works; mailq works for that user and leaks
// no token, also while a squatter holds the TCP admin port, and the daemon
// runs (and delivers) all the same.
func TestUnprivilegedUserReachesNoAdmin(t *testing.T) {
	_, uid, gid := throwawayUser(t)
	bin, shim := binaries(t)
	dir := t.TempDir()
	openUpTo(t, dir, 0o755)
	binDir := filepath.Join(dir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{bin: "facteur", shim: "sendmail"} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(binDir, dst), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sendmail", filepath.Join(binDir, "mailq")); err != nil {
		t.Fatal(err)
	}
	const token = "tok-4f1d2c9a8b7e6d5c4b3a"
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The squatter takes the admin port before facteur starts.
	squat, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := squat.Addr().String()
	var squatMu sync.Mutex
	var squatGot strings.Builder
	go func() {
		for {
			c, err := squat.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(3 * time.Second))
				b := make([]byte, 4096)
				n, _ := c.Read(b)
				squatMu.Lock()
				squatGot.Write(b[:n])
				squatGot.WriteString("<conn>")
				squatMu.Unlock()
			}()
		}
	}()
	squatted := func() string {
		squatMu.Lock()
		defer squatMu.Unlock()
		return squatGot.String()
	}
	dataDir := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "facteur.yaml")
	env := []string{"FACTEUR_CONFIG=" + cfg}
	var (
		smtpAddr string
		log      *syncBuffer
		done     chan error // gets the daemon's exit
	)
	// As relay.start: the SMTP port, taken by another process between its
	// pick and the daemon's bind, costs a start with a new one.
start:
	for n := 1; ; n++ {
		smtpAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf("hostname: relay.test\nlisten: [%s]\nadmin: %s\nadmin_token_file: %s\ndata_dir: %s\nresolver: 127.0.0.1:%d\n",
			smtpAddr, adminAddr, tokenFile, dataDir, freePort(t, "127.0.0.1"))), 0o644); err != nil {
			t.Fatal(err)
		}
		log = &syncBuffer{}
		daemon := exec.Command(bin, "serve", "-config", cfg)
		daemon.Stdout, daemon.Stderr = log, log
		if err := daemon.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		done = make(chan error, 1)
		go func() { done <- daemon.Wait(); close(exited) }()
		logText := log.String // this start's log, not the next one's
		t.Cleanup(func() { stopDaemon(t, daemon.Process, exited, logText) })
		for deadline := time.Now().Add(20 * time.Second); !strings.Contains(log.String(), " started "); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("started: not within 20s\n%s", log.String())
			}
			select {
			case err := <-done:
				if l := log.String(); n < maxStarts && strings.Contains(l, "address already in use") && strings.Contains(l, smtpAddr) {
					t.Logf("start %d: the SMTP port was taken between its pick and the bind, picking it anew:\n%s", n, l)
					continue start
				}
				t.Fatalf("facteur serve exited: %v\n%s", err, log.String())
			default:
			}
		}
		break
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); {
			select {
			case err := <-done:
				t.Fatalf("facteur serve exited: %v\n%s", err, log.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20s\n%s", what, log.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("started", func() bool { return strings.Contains(log.String(), " started ") })
	if !strings.Contains(log.String(), "admin listen failed") {
		t.Errorf("the daemon did not say the admin port is taken:\n%s", log.String())
	}
	// And who holds it (the squatter here is this test's process), so that
	// the operator does not type the token into its page.
	if want := fmt.Sprintf("holder_uid=%d ", os.Getuid()); !strings.Contains(log.String(), want) {
		t.Errorf("the daemon did not name the squatter's uid (%s):\n%s", want, log.String())
	}
	// Mail is still accepted while the port is squatted.
	c, err := smtp.Dial(smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("app@example.com", []string{"rcpt@example.org"}, strings.NewReader("Subject: hi\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor("received", func() bool { return strings.Contains(log.String(), " received ") })
	// Production layout: data_dir and public/ are 0710 with the group the
	// setgid shim runs with (facteur-drop); the user's own group plays it
	// here. private/ stays the daemon's alone.
	for _, d := range []string{dataDir, filepath.Join(dataDir, "public")} {
		if err := os.Chown(d, -1, int(gid)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o710); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("root's CLI works and sends nothing to the squatter", func(t *testing.T) {
		out, err := boundedCommand(t, bin, "queue", "list", "--json", "-config", cfg).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "rcpt@example.org") {
			t.Fatalf("root: queue list: %v\n%s", err, out)
		}
		if got := squatted(); got != "" {
			t.Errorf("the squatter got %q", got)
		}
	})
	t.Run("mailq works for the user and leaks no token", func(t *testing.T) {
		r := runAsUser(t, uid, gid, env, filepath.Join(binDir, "mailq"))
		if r.code != 0 || !strings.Contains(r.stdout, "rcpt@example.org") {
			t.Fatalf("mailq: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
		}
		if strings.Contains(r.stdout+r.stderr, token) {
			t.Errorf("mailq printed the token")
		}
		if got := squatted(); got != "" {
			t.Errorf("the squatter got %q", got)
		}
	})
	t.Run("the user's CLI cannot reach the admin socket", func(t *testing.T) {
		for _, args := range [][]string{{"queue", "list"}, {"queue", "delete", "--older-than", "0s"}, {"suppress", "add", "victim@example.org"}, {"policy", "reload"}} {
			r := runAsUser(t, uid, gid, env, filepath.Join(binDir, "facteur"), args...)
			if r.code == 0 || !strings.Contains(r.stderr, "permission denied") {
				t.Errorf("%v as the user: exit %d\nstdout %s\nstderr %s", args, r.code, r.stdout, r.stderr)
			}
		}
	})
	t.Run("a socket moved somewhere open still checks the peer", func(t *testing.T) {
		priv := filepath.Join(dataDir, "private")
		if err := os.Chmod(priv, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(priv, "admin.sock"), 0o666); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(priv, 0o700)
		r := runAsUser(t, uid, gid, env, filepath.Join(binDir, "facteur"), "queue", "delete", "--older-than", "0s")
		if r.code == 0 || !strings.Contains(r.stderr, "may not use the admin socket") {
			t.Errorf("exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
		}
	})

	// The squatter goes; the daemon takes its port back.
	squat.Close()
	client := &http.Client{Timeout: 5 * time.Second}
	waitFor("admin port bound again", func() bool {
		resp, err := client.Get("http://" + adminAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	t.Run("TCP admin", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			method string
			path   string
			host   string
			header map[string]string
			want   int
		}{
			{"metrics without token", "GET", "/metrics", "", nil, 200},
			{"delete all without token", "POST", "/queue/delete?all=1", "", map[string]string{"Content-Type": "application/json"}, 401},
			{"suppress without token", "POST", "/suppressions", "", map[string]string{"Content-Type": "application/json"}, 401},
			{"pprof", "GET", "/debug/pprof/", "", map[string]string{"Authorization": "Bearer " + token}, 404},
			{"foreign Host", "POST", "/queue/delete?all=1", "evil.example", map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}, 421},
			{"form POST", "POST", "/queue/delete?all=1", "", map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/x-www-form-urlencoded"}, 415},
			{"listing with the token", "GET", "/queue", "", map[string]string{"Authorization": "Bearer " + token}, 200},
		} {
			req, _ := http.NewRequest(tc.method, "http://"+adminAddr+tc.path, strings.NewReader("{}"))
			if tc.host != "" {
				req.Host = tc.host
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
			}
		}
	})
	// Nothing the user tried removed the message.
	out, err := boundedCommand(t, bin, "queue", "list", "--json", "-config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rcpt@example.org") {
		t.Fatalf("root: queue list at the end: %v\n%s", err, out)
	}
}

// Issue 11 §9: the daemon does not start with a secret others can read.
func TestServeRefusesReadableSecret(t *testing.T) {
	bin, _ := binaries(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "relay.pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(pw, 0o644)
	cfg := filepath.Join(dir, "f.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen: [127.0.0.1:%d]\nadmin: \"\"\ndata_dir: %s\ndelivery:\n  relayhost: smtp.example.com:587\n  relayhost_auth: {username: u, password_file: %q}\n",
		freePort(t, "127.0.0.1"), filepath.Join(dir, "data"), pw)), 0o644)
	out, err := boundedCommand(t, bin, "serve", "-config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), pw) || !strings.Contains(string(out), "group or world") {
		t.Fatalf("serve started or did not name the file: %v\n%s", err, out)
	}
}

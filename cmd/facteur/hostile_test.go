package main

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
			sinkPort := freePort(t, "127.0.0.2")
			r := startRelay(t, relayOpts{
				sinkOpts: relaytest.SinkOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Auth: func(u, p string) error {
					auths.Add(1)
					if u != "web1" || p != "s3cret" {
						return errors.New("bad credentials")
					}
					return nil
				}},
				extraConfig: fmt.Sprintf("  relayhost: mx.example.org:%d\n  relayhost_tls: starttls\n  relayhost_auth: {username: web1, password_file: %q}\n%s", sinkPort, pw, extra),
				sinkAddr:    fmt.Sprintf("127.0.0.2:%d", sinkPort),
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
	bouncePort := freePort(t, "127.0.0.1")
	r := startRelay(t, relayOpts{extraConfig: fmt.Sprintf("bounces:\n  domain: bounces.example.com\n  listen: [127.0.0.1:%d]\n  secret_file: %s\n"+
		"webhooks:\n  - {url: %q, secret: s3cret-webhook-key, batch_wait: 10ms}\n", bouncePort, secretFile, hook.URL)})
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
		c, err := smtp.Dial(fmt.Sprintf("127.0.0.1:%d", bouncePort))
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

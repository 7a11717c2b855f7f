package main

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

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

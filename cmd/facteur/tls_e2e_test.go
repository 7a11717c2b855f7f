package main

// Issue 15 end to end: the real binary with its default delivery.mta_sts
// (on) and delivery.dane (auto, trusted because the test resolver is on
// loopback), a DNS server that authenticates the signed zones, an HTTPS
// policy server whose CA is trusted through SSL_CERT_FILE, and MX sinks that
// present a CA-signed, a self-signed or no certificate.

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/relay/relaytest"
)

func TestTLSPoliciesEndToEnd(t *testing.T) {
	bin, shim := binaries(t)
	ca := relaytest.NewCA(t)

	// The MTA-STS policy host must be reached on port 443, as in
	// production: binding it needs root (or CAP_NET_BIND_SERVICE).
	stsLn, stsErr := net.Listen("tcp", "127.0.15.110:443")
	withSTS := stsErr == nil
	if !withSTS {
		t.Logf("MTA-STS part skipped: cannot bind 127.0.15.110:443 (%v); the DANE part runs", stsErr)
	}

	daneCert := relaytest.SelfSignedCert(t, "mx.dane-ok.example")
	self := func(names ...string) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{relaytest.SelfSignedCert(t, names...)}}
	}
	first := relaytest.NewSink(t, "127.0.15.101:0", relaytest.SinkOptions{TLS: &tls.Config{Certificates: []tls.Certificate{ca.Issue("mx.sts-ok.example")}}})
	port := first.Port()
	at := func(ip string, o relaytest.SinkOptions) *relaytest.Sink {
		return relaytest.NewSink(t, fmt.Sprintf("%s:%d", ip, port), o)
	}
	sinks := map[string]*relaytest.Sink{
		"sts-ok":   first,
		"self":     at("127.0.15.102", relaytest.SinkOptions{TLS: self("mx.sts-self.example", "mx.sts-test.example")}),
		"attacker": at("127.0.15.103", relaytest.SinkOptions{}),
		"dane-ok":  at("127.0.15.104", relaytest.SinkOptions{TLS: &tls.Config{Certificates: []tls.Certificate{daneCert}}}),
		"dane-bad": at("127.0.15.105", relaytest.SinkOptions{TLS: self("mx.dane-bad.example")}),
		"plain":    at("127.0.15.107", relaytest.SinkOptions{TLS: self("mx.plain.example")}),
	}

	mxZone := func(host string, secure bool) relaytest.Zone {
		return relaytest.Zone{MX: []relaytest.MX{{Host: host, Pref: 10}}, Secure: secure}
	}
	tlsaName := func(host string) string { return fmt.Sprintf("_%d._tcp.%s", port, host) }
	zones := map[string]relaytest.Zone{
		"plain.example":    mxZone("mx.plain.example", false),
		"mx.plain.example": {A: []string{"127.0.15.107"}},

		"dane-ok.example":       mxZone("mx.dane-ok.example", true),
		"mx.dane-ok.example":    {A: []string{"127.0.15.104"}, Secure: true},
		"dane-bad.example":      mxZone("mx.dane-bad.example", true),
		"mx.dane-bad.example":   {A: []string{"127.0.15.105"}, Secure: true},
		"dane-strip.example":    mxZone("mx.dane-strip.example", true),
		"mx.dane-strip.example": {A: []string{"127.0.15.103"}, Secure: true},
	}
	stranger := relaytest.NewCA(t).Cert()
	zones[tlsaName("mx.dane-ok.example")] = relaytest.Zone{Secure: true, TLSA: []relaytest.TLSA{relaytest.TLSAFor(t, 3, 1, 1, daneCert.Leaf)}}
	zones[tlsaName("mx.dane-bad.example")] = relaytest.Zone{Secure: true, TLSA: []relaytest.TLSA{relaytest.TLSAFor(t, 3, 1, 1, stranger)}}
	zones[tlsaName("mx.dane-strip.example")] = relaytest.Zone{Secure: true, TLSA: []relaytest.TLSA{relaytest.TLSAFor(t, 3, 1, 1, stranger)}}

	policies := map[string]string{
		"sts-ok.example":    "version: STSv1\nmode: enforce\nmx: mx.sts-ok.example\nmax_age: 86400\n",
		"sts-self.example":  "version: STSv1\nmode: enforce\nmx: mx.sts-self.example\nmax_age: 86400\n",
		"sts-evil.example":  "version: STSv1\nmode: enforce\nmx: mx.sts-evil.example\nmax_age: 86400\n",
		"sts-strip.example": "version: STSv1\nmode: enforce\nmx: mx.sts-strip.example\nmax_age: 86400\n",
		"sts-test.example":  "version: STSv1\nmode: testing\nmx: mx.sts-test.example\nmax_age: 86400\n",
	}
	if withSTS {
		mx := map[string]string{"sts-ok.example": "mx.sts-ok.example", "sts-self.example": "mx.sts-self.example",
			"sts-evil.example": "evil.attacker.example", "sts-strip.example": "mx.sts-strip.example", "sts-test.example": "mx.sts-test.example"}
		ips := map[string]string{"mx.sts-ok.example": "127.0.15.101", "mx.sts-self.example": "127.0.15.102",
			"evil.attacker.example": "127.0.15.103", "mx.sts-strip.example": "127.0.15.103", "mx.sts-test.example": "127.0.15.102"}
		var names []string
		for d, host := range mx {
			zones[d] = mxZone(host, false)
			zones[host] = relaytest.Zone{A: []string{ips[host]}}
			zones["_mta-sts."+d] = relaytest.Zone{TXT: []string{"v=STSv1; id=1;"}}
			zones["mta-sts."+d] = relaytest.Zone{A: []string{"127.0.15.110"}}
			names = append(names, "mta-sts."+d)
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := policies[strings.TrimPrefix(r.Host, "mta-sts.")]
			if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, p)
		}))
		srv.Listener.Close()
		srv.Listener = stsLn
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(names...)}}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
		t.Cleanup(srv.Close)
	}
	dns := relaytest.NewDNS(t, zones)

	// The daemon trusts the test CA as its system roots.
	t.Setenv("SSL_CERT_FILE", ca.PEMFile())
	t.Setenv("SSL_CERT_DIR", t.TempDir())
	dir := t.TempDir()
	r := &relay{t: t, bin: bin, shim: shim, dir: dir, dns: dns, sink: first}
	r.config = filepath.Join(dir, "facteur.yaml")
	cfg := fmt.Sprintf("hostname: relay.test\nlisten: [%s]\nadmin: %s\ndata_dir: %s\nresolver: %s\ndelivery:\n  port: %d\n",
		r.addr("smtp"), r.addr("admin"), filepath.Join(dir, "data"), dns.Addr(), port)
	if err := os.WriteFile(r.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(r.stop)

	type want struct {
		event, tls, sink string // sink: which must have the message; "" for a deferral
	}
	wants := map[string]want{
		"u@plain.example":      {"delivered", "opportunistic", "plain"},
		"u@dane-ok.example":    {"delivered", "dane", "dane-ok"},
		"u@dane-bad.example":   {"deferred", "dane", ""},
		"u@dane-strip.example": {"deferred", "dane", ""},
	}
	if withSTS {
		wants["u@sts-ok.example"] = want{"delivered", "mta-sts", "sts-ok"}
		wants["u@sts-self.example"] = want{"deferred", "mta-sts", ""}
		wants["u@sts-evil.example"] = want{"deferred", "mta-sts", ""}
		wants["u@sts-strip.example"] = want{"deferred", "mta-sts", ""}
		wants["u@sts-test.example"] = want{"delivered", "opportunistic", "self"}
	}
	for rcpt := range wants {
		body := "From: app@example.com\r\nTo: " + rcpt + "\r\nSubject: tls\r\n\r\nsecret\r\n"
		c, err := smtp.Dial(r.smtp) // the loopback listener offers no STARTTLS
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SendMail("app@example.com", []string{rcpt}, strings.NewReader(body)); err != nil {
			t.Fatalf("submit to %s: %v", rcpt, err)
		}
		c.Quit()
	}
	for rcpt, w := range wants {
		r.waitLog(" " + w.event + " rcpt=<" + rcpt + ">")
	}
	logText := r.logText()
	for rcpt, w := range wants {
		var line string
		for _, l := range strings.Split(logText, "\n") {
			if strings.Contains(l, " "+w.event+" rcpt=<"+rcpt+">") {
				line = l
			}
		}
		if !strings.Contains(line, " tls="+w.tls+" ") {
			t.Errorf("%s: log line lacks tls=%s: %s", rcpt, w.tls, line)
		}
		if w.event == "deferred" && !strings.Contains(line, "451 4.7.5") {
			t.Errorf("%s: deferral is not 4.7.5: %s", rcpt, line)
		}
		if rcpt == "u@sts-test.example" && !strings.Contains(line, "tls_report=") {
			t.Errorf("%s: testing mode did not report: %s", rcpt, line)
		}
	}
	// What each MX received: the attacker's plaintext MX nothing at all.
	got := map[string][]string{}
	for name, s := range sinks {
		for _, m := range s.Messages() {
			got[name] = append(got[name], m.Rcpts...)
			if !m.TLS {
				t.Errorf("%s received %v in clear", name, m.Rcpts)
			}
		}
	}
	for rcpt, w := range wants {
		if w.sink == "" {
			continue
		}
		if rs := got[w.sink]; len(rs) == 0 || !strings.Contains(strings.Join(rs, ","), rcpt) {
			t.Errorf("%s did not reach %s (got %v)", rcpt, w.sink, got)
		}
	}
	if len(got["attacker"]) > 0 || len(got["dane-bad"]) > 0 {
		t.Errorf("refused MX hosts received mail: %v", got)
	}

	// The queue keeps the deferred recipients with the policy that held
	// them, and only them: read until every outcome logged is committed.
	eventually(t, func() []string {
		out, err := r.cli("queue", "list", "--json")
		if err != nil {
			return []string{err.Error()}
		}
		var msgs []queue.Message
		if err := json.Unmarshal([]byte(out), &msgs); err != nil {
			return []string{fmt.Sprintf("%v\n%s", err, out)}
		}
		var problems []string
		deferred := 0
		for _, m := range msgs {
			for _, rc := range m.Recipients {
				w := wants[rc.Address]
				if rc.Status != queue.Deferred || rc.TLS != w.tls || !strings.Contains(rc.LastResponse, "4.7.5") {
					problems = append(problems, fmt.Sprintf("queue: %+v, want deferred with tls=%s and 4.7.5", rc, w.tls))
				}
				deferred++
			}
		}
		if want := map[bool]int{true: 5, false: 2}[withSTS]; deferred != want {
			problems = append(problems, fmt.Sprintf("%d deferred recipients in the queue, want %d:\n%s", deferred, want, out))
		}
		return problems
	})

	// Metrics count deliveries by protection, once each is committed.
	eventually(t, func() []string {
		metrics, err := r.metrics()
		if err != nil {
			return []string{err.Error()}
		}
		want := []string{`facteur_tls_deliveries_total{tls="dane"} 1`, `facteur_tls_deliveries_total{tls="opportunistic"}`}
		if withSTS {
			want = append(want, `facteur_tls_deliveries_total{tls="mta-sts"} 1`)
		}
		var problems []string
		for _, m := range want {
			if !strings.Contains(metrics, m) {
				problems = append(problems, "metrics lack "+m)
			}
		}
		return problems
	})
}

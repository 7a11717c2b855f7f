package scheduler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"facteur/queue"
	"facteur/relay/mtasts"
	"facteur/relay/relaytest"
	"facteur/relay/resolver"
	"facteur/relay/tlspolicy"
)

// mxSpec is one MX host of a TLS test: its name, its address (127.0.15.N)
// and what its sink presents.
type mxSpec struct {
	name string
	pref uint16
	// kind: "ca" (a certificate from the test CA for name), "self"
	// (self-signed for name), "wrong" (from the CA for another name),
	// "expired" (from the CA for name, expired), "plain" (no STARTTLS: the
	// attacker stripped it).
	kind string
}

type tlsCase struct {
	name   string
	mx     []mxSpec
	secure bool   // the zone is DNSSEC-signed: answers carry AD
	dane   bool   // DANE trusted
	sts    string // MTA-STS policy body; "" for no _mta-sts record
	// tlsa gives the TLSA records of an MX host from the certificates its
	// sink presents (leaf first) and the CA.
	tlsa     func(host string, chain []*x509.Certificate, ca *x509.Certificate) []relaytest.TLSA
	tlsaFail bool   // the TLSA lookup of every MX host gets SERVFAIL (bogus)
	pin      string // routes tls pin for example.org
	// want is the event ("delivered" or "deferred"), wantTLS its tls
	// value (the queue's for a deferral), wantMsgs the MX hosts that must
	// have received the message (all others must have nothing).
	want       string
	wantTLS    string
	wantMsgs   []string
	wantInResp string // for a deferral, in the last response
	wantReport bool   // the log has a tls_report (testing mode)
}

const stsEnforce = "version: STSv1\nmode: enforce\nmx: mx.example.org\nmx: *.mx.example.org\nmax_age: 86400\n"
const stsTesting = "version: STSv1\nmode: testing\nmx: mx.example.org\nmax_age: 86400\n"

func eeRecord(t *testing.T) func(string, []*x509.Certificate, *x509.Certificate) []relaytest.TLSA {
	return func(_ string, chain []*x509.Certificate, _ *x509.Certificate) []relaytest.TLSA {
		return []relaytest.TLSA{relaytest.TLSAFor(t, 3, 1, 1, chain[0])}
	}
}

func TestTLSPolicies(t *testing.T) {
	strangerCA := relaytest.NewCA(t)
	cases := []tlsCase{
		{name: "no policy stays opportunistic", mx: []mxSpec{{name: "mx.example.org", kind: "self"}},
			want: "delivered", wantTLS: "opportunistic", wantMsgs: []string{"mx.example.org"}},
		{name: "no policy, no STARTTLS, delivers in clear as today", mx: []mxSpec{{name: "mx.example.org", kind: "plain"}},
			want: "delivered", wantTLS: "none", wantMsgs: []string{"mx.example.org"}},
		{name: "enforce with a valid certificate", mx: []mxSpec{{name: "mx.example.org", kind: "ca"}}, sts: stsEnforce,
			want: "delivered", wantTLS: "mta-sts", wantMsgs: []string{"mx.example.org"}},
		{name: "enforce, wildcard pattern", mx: []mxSpec{{name: "a.mx.example.org", kind: "ca"}}, sts: stsEnforce,
			want: "delivered", wantTLS: "mta-sts", wantMsgs: []string{"a.mx.example.org"}},
		{name: "enforce, self-signed certificate defers", mx: []mxSpec{{name: "mx.example.org", kind: "self"}}, sts: stsEnforce,
			want: "deferred", wantTLS: "mta-sts", wantInResp: "certificate"},
		{name: "enforce, certificate for another name defers", mx: []mxSpec{{name: "mx.example.org", kind: "wrong"}}, sts: stsEnforce,
			want: "deferred", wantTLS: "mta-sts", wantInResp: "certificate"},
		{name: "enforce, STARTTLS stripped defers and nothing goes in clear", mx: []mxSpec{{name: "mx.example.org", kind: "plain"}}, sts: stsEnforce,
			want: "deferred", wantTLS: "mta-sts", wantInResp: "STARTTLS"},
		{name: "enforce, only MX not in the policy is never contacted", mx: []mxSpec{{name: "evil.example.net", kind: "plain"}}, sts: stsEnforce,
			want: "deferred", wantTLS: "mta-sts", wantInResp: "not in the domain's policy"},
		{name: "enforce, MX outside the policy skipped for the one inside",
			mx:  []mxSpec{{name: "evil.example.net", pref: 5, kind: "plain"}, {name: "mx.example.org", pref: 10, kind: "ca"}},
			sts: stsEnforce, want: "delivered", wantTLS: "mta-sts", wantMsgs: []string{"mx.example.org"}},
		{name: "testing, self-signed still delivers and reports", mx: []mxSpec{{name: "mx.example.org", kind: "self"}}, sts: stsTesting,
			want: "delivered", wantTLS: "opportunistic", wantMsgs: []string{"mx.example.org"}, wantReport: true},
		{name: "testing, MX outside the policy in clear still delivers and reports", mx: []mxSpec{{name: "other.example.net", kind: "plain"}}, sts: stsTesting,
			want: "delivered", wantTLS: "none", wantMsgs: []string{"other.example.net"}, wantReport: true},
		{name: "mode none is no policy", mx: []mxSpec{{name: "other.example.net", kind: "plain"}}, sts: "version: STSv1\nmode: none\nmax_age: 86400\n",
			want: "delivered", wantTLS: "none", wantMsgs: []string{"other.example.net"}},
		{name: "DANE-EE match delivers", mx: []mxSpec{{name: "mx.example.org", kind: "self"}}, secure: true, dane: true, tlsa: eeRecord(t),
			want: "delivered", wantTLS: "dane", wantMsgs: []string{"mx.example.org"}},
		{name: "DANE-EE ignores name and expiry", mx: []mxSpec{{name: "mx.example.org", kind: "expired"}}, secure: true, dane: true,
			tlsa: func(_ string, chain []*x509.Certificate, _ *x509.Certificate) []relaytest.TLSA {
				return []relaytest.TLSA{relaytest.TLSAFor(t, 3, 0, 2, chain[0])}
			},
			want: "delivered", wantTLS: "dane", wantMsgs: []string{"mx.example.org"}},
		{name: "DANE-TA match delivers", mx: []mxSpec{{name: "mx.example.org", kind: "ca"}}, secure: true, dane: true,
			tlsa: func(_ string, _ []*x509.Certificate, ca *x509.Certificate) []relaytest.TLSA {
				return []relaytest.TLSA{relaytest.TLSAFor(t, 2, 0, 1, ca)}
			},
			want: "delivered", wantTLS: "dane", wantMsgs: []string{"mx.example.org"}},
		{name: "DANE-TA with a certificate for another name defers", mx: []mxSpec{{name: "mx.example.org", kind: "wrong"}}, secure: true, dane: true,
			tlsa: func(_ string, _ []*x509.Certificate, ca *x509.Certificate) []relaytest.TLSA {
				return []relaytest.TLSA{relaytest.TLSAFor(t, 2, 1, 1, ca)}
			},
			want: "deferred", wantTLS: "dane", wantInResp: "TLSA"},
		{name: "DANE-EE mismatch defers", mx: []mxSpec{{name: "mx.example.org", kind: "self"}}, secure: true, dane: true,
			tlsa: func(_ string, _ []*x509.Certificate, _ *x509.Certificate) []relaytest.TLSA {
				return []relaytest.TLSA{relaytest.TLSAFor(t, 3, 1, 1, strangerCA.Cert())}
			},
			want: "deferred", wantTLS: "dane", wantInResp: "TLSA"},
		{name: "DANE, STARTTLS stripped defers", mx: []mxSpec{{name: "mx.example.org", kind: "plain"}}, secure: true, dane: true,
			tlsa: func(_ string, _ []*x509.Certificate, _ *x509.Certificate) []relaytest.TLSA {
				return []relaytest.TLSA{relaytest.TLSAFor(t, 3, 1, 1, strangerCA.Cert())}
			},
			want: "deferred", wantTLS: "dane", wantInResp: "STARTTLS"},
		{name: "DANE, bogus TLSA answer defers", mx: []mxSpec{{name: "mx.example.org", kind: "plain"}}, secure: true, dane: true, tlsaFail: true,
			want: "deferred", wantTLS: "dane", wantInResp: "TLSA lookup"},
		{name: "DANE, no usable TLSA: TLS without authentication", mx: []mxSpec{{name: "mx.example.org", kind: "self"}}, secure: true, dane: true,
			tlsa: func(_ string, chain []*x509.Certificate, _ *x509.Certificate) []relaytest.TLSA {
				return []relaytest.TLSA{relaytest.TLSAFor(t, 1, 1, 1, chain[0])} // PKIX-EE: unusable for SMTP
			},
			want: "delivered", wantTLS: "encrypt", wantMsgs: []string{"mx.example.org"}},
		{name: "DANE, no usable TLSA and no STARTTLS defers", mx: []mxSpec{{name: "mx.example.org", kind: "plain"}}, secure: true, dane: true,
			tlsa: func(_ string, _ []*x509.Certificate, _ *x509.Certificate) []relaytest.TLSA {
				return []relaytest.TLSA{{Usage: 0, Selector: 0, MatchingType: 1, Data: strings.Repeat("ab", 32)}}
			},
			want: "deferred", wantTLS: "encrypt", wantInResp: "STARTTLS"},
		{name: "DANE, authenticated denial stays opportunistic", mx: []mxSpec{{name: "mx.example.org", kind: "plain"}}, secure: true, dane: true,
			want: "delivered", wantTLS: "none", wantMsgs: []string{"mx.example.org"}},
		{name: "DANE, unsigned zone ignores TLSA", mx: []mxSpec{{name: "mx.example.org", kind: "self"}}, secure: false, dane: true,
			tlsa: func(_ string, _ []*x509.Certificate, _ *x509.Certificate) []relaytest.TLSA {
				return []relaytest.TLSA{relaytest.TLSAFor(t, 3, 1, 1, strangerCA.Cert())}
			},
			want: "delivered", wantTLS: "opportunistic", wantMsgs: []string{"mx.example.org"}},
		{name: "DANE untrusted (off) ignores TLSA", mx: []mxSpec{{name: "mx.example.org", kind: "self"}}, secure: true, dane: false,
			tlsa: func(_ string, _ []*x509.Certificate, _ *x509.Certificate) []relaytest.TLSA {
				return []relaytest.TLSA{relaytest.TLSAFor(t, 3, 1, 1, strangerCA.Cert())}
			},
			want: "delivered", wantTLS: "opportunistic", wantMsgs: []string{"mx.example.org"}},
		{name: "DANE takes precedence over MTA-STS", mx: []mxSpec{{name: "dane.example.net", kind: "self"}}, secure: true, dane: true,
			sts: stsEnforce, tlsa: eeRecord(t),
			want: "delivered", wantTLS: "dane", wantMsgs: []string{"dane.example.net"}},
		{name: "route pin verify refuses a self-signed certificate", mx: []mxSpec{{name: "mx.example.org", kind: "self"}}, pin: "verify",
			want: "deferred", wantTLS: "verify", wantInResp: "certificate"},
		{name: "route pin encrypt refuses plaintext", mx: []mxSpec{{name: "mx.example.org", kind: "plain"}}, pin: "encrypt",
			want: "deferred", wantTLS: "encrypt", wantInResp: "STARTTLS"},
		{name: "route pin may overrides an enforce policy", mx: []mxSpec{{name: "mx.example.org", kind: "self"}}, pin: "may", sts: stsEnforce,
			want: "delivered", wantTLS: "opportunistic", wantMsgs: []string{"mx.example.org"}},
		{name: "route pin none never starts TLS", mx: []mxSpec{{name: "mx.example.org", kind: "ca"}}, pin: "none",
			want: "delivered", wantTLS: "none", wantMsgs: []string{"mx.example.org"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) { runTLSCase(t, i, c) })
	}
}

func runTLSCase(t *testing.T, n int, c tlsCase) {
	ca := relaytest.NewCA(t)
	sinks := map[string]*relaytest.Sink{}
	zones := map[string]relaytest.Zone{}
	port := 0
	var mxs []relaytest.MX
	for j, m := range c.mx {
		ip := fmt.Sprintf("127.0.15.%d", 10+n*4+j)
		var cert tls.Certificate
		switch m.kind {
		case "ca":
			cert = ca.Issue(m.name)
		case "self":
			cert = relaytest.SelfSignedCert(t, m.name)
		case "wrong":
			cert = ca.Issue("somebody-else.example.net")
		case "expired":
			cert = ca.IssueExpired(m.name)
		case "plain":
		default:
			t.Fatalf("kind %q", m.kind)
		}
		opts := relaytest.SinkOptions{Domain: m.name}
		if m.kind != "plain" {
			opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		}
		addr := ip + ":0"
		if port != 0 {
			addr = ip + ":" + strconv.Itoa(port)
		}
		sink := relaytest.NewSink(t, addr, opts)
		port = sink.Port()
		sinks[m.name] = sink
		mxs = append(mxs, relaytest.MX{Host: m.name, Pref: m.pref})
		zones[m.name] = relaytest.Zone{A: []string{ip}, Secure: c.secure}
		if c.tlsa != nil || c.tlsaFail || c.secure {
			tlsaName := fmt.Sprintf("_%d._tcp.%s", port, m.name)
			z := relaytest.Zone{Secure: c.secure, ServFail: c.tlsaFail}
			if c.tlsa != nil {
				var chain []*x509.Certificate
				for _, der := range cert.Certificate {
					x, err := x509.ParseCertificate(der)
					if err != nil {
						t.Fatal(err)
					}
					chain = append(chain, x)
				}
				if len(chain) == 0 { // a plain sink: records for a key it does not have
					chain = []*x509.Certificate{ca.Cert()}
				}
				z.TLSA = c.tlsa(m.name, chain, ca.Cert())
			}
			zones[tlsaName] = z
		}
	}
	zones["example.org"] = relaytest.Zone{MX: mxs, Secure: c.secure}
	var policyHits atomic.Int32
	stsPort := ""
	if c.sts != "" {
		zones["_mta-sts.example.org"] = relaytest.Zone{TXT: []string{"v=STSv1; id=20261207;"}}
		httpsIP := fmt.Sprintf("127.0.15.%d", 10+n*4+3)
		zones["mta-sts.example.org"] = relaytest.Zone{A: []string{httpsIP}}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/.well-known/mta-sts.txt" {
				http.NotFound(w, r)
				return
			}
			policyHits.Add(1)
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, c.sts)
		}))
		ln, err := net.Listen("tcp", httpsIP+":0")
		if err != nil {
			t.Fatal(err)
		}
		srv.Listener.Close()
		srv.Listener = ln
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue("mta-sts.example.org")}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		_, stsPort, _ = net.SplitHostPort(ln.Addr().String())
	}
	h := newHarnessWith(t, port, zones, func(h *harness, res *resolver.Resolver, o *Options) {
		src, err := mtasts.New(mtasts.Options{Resolver: res, Store: h.store, RootCAs: ca.Pool(), Clock: h.clock,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, p, err := net.SplitHostPort(addr)
				if err != nil || p != "443" || !net.ParseIP(host).IsLoopback() {
					return nil, fmt.Errorf("test dialer: refusing %s", addr)
				}
				// The policy server listens on a free port, not 443.
				return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(host, stsPort))
			}})
		if err != nil {
			t.Fatal(err)
		}
		tp, err := tlspolicy.New(tlspolicy.Options{Resolver: res, DANE: c.dane, MTASTS: src, Port: port})
		if err != nil {
			t.Fatal(err)
		}
		o.TLSPolicy = tp
		o.Dial.RootCAs = ca.Pool()
		if c.pin != "" {
			o.RouteTLS = map[string]string{"example.org": c.pin}
		}
	})
	id := h.enqueue("app@example.com", []string{"user@example.org"}, msgBody)
	ev := h.expect(1)[0]
	h.logMu.Lock()
	log := h.log.String()
	h.logMu.Unlock()
	t.Logf("log:\n%s", log)
	if ev.Event != c.want {
		t.Fatalf("event %s (%s), want %s\nlog:\n%s", ev.Event, ev.Response, c.want, log)
	}
	if c.want == "delivered" && ev.TLS != c.wantTLS {
		t.Errorf("delivered with tls=%q, want %q\nlog:\n%s", ev.TLS, c.wantTLS, log)
	}
	if !strings.Contains(log, " tls="+c.wantTLS+" ") {
		t.Errorf("log lacks tls=%s:\n%s", c.wantTLS, log)
	}
	if got := strings.Contains(log, "tls_report="); got != c.wantReport {
		t.Errorf("tls_report in log: %v, want %v\n%s", got, c.wantReport, log)
	}
	if c.want == "deferred" {
		m, err := h.store.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		r := m.Recipients[0]
		if r.Status != queue.Deferred || !strings.Contains(r.LastResponse, "4.7.5") || !strings.Contains(r.LastResponse, c.wantInResp) {
			t.Errorf("recipient %+v: want deferred with 4.7.5 and %q", r, c.wantInResp)
		}
		if r.TLS != c.wantTLS {
			t.Errorf("queue tls %q, want %q", r.TLS, c.wantTLS)
		}
	}
	for name, s := range sinks {
		want := 0
		for _, w := range c.wantMsgs {
			if w == name {
				want = 1
			}
		}
		if got := len(s.Messages()); got != want {
			t.Errorf("MX %s received %d messages, want %d\nlog:\n%s", name, got, want, log)
		}
	}
	if c.sts != "" && c.pin == "" && !strings.Contains(c.name, "precedence") && policyHits.Load() != 1 {
		t.Errorf("policy fetched %d times, want 1", policyHits.Load())
	}
}

// A TLS policy refusal does not mark the destination dead (dead.go): every
// later message is still tried and deferred with the policy's 4.7.5 reason,
// not a bulk "temporarily suspended".
func TestTLSRefusalIsNotDeadDestination(t *testing.T) {
	sink := relaytest.NewSink(t, "127.0.15.9:0", relaytest.SinkOptions{TLS: &tls.Config{Certificates: []tls.Certificate{relaytest.SelfSignedCert(t, "mx.example.org")}}})
	h := newHarness(t, sink.Port(), map[string]relaytest.Zone{
		"example.org":    {MX: []relaytest.MX{{Host: "mx.example.org", Pref: 10}}},
		"mx.example.org": {A: []string{"127.0.15.9"}},
	}, func(o *Options) { o.RouteTLS = map[string]string{"example.org": "verify"} })
	for i := range 3 {
		h.enqueue("app@example.com", []string{fmt.Sprintf("u%d@example.org", i)}, msgBody)
		ev := h.expect(1)[0]
		if ev.Event != "deferred" || !strings.Contains(ev.Response, "4.7.5 TLS policy verify") || ev.TLS != "verify" {
			t.Fatalf("message %d: %+v, want deferred with the TLS policy's 4.7.5", i, ev)
		}
	}
	if n := sink.Connections(); n != 3 {
		t.Errorf("%d connections, want one per message", n)
	}
}

package mtasts

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"facteur/queue"
	"facteur/relay/clock"
	"facteur/relay/relaytest"
	"facteur/relay/resolver"
)

// policyServer is mta-sts.example.org on loopback, its answer scripted.
type policyServer struct {
	mu          sync.Mutex // guards the fields below
	body        string
	status      int
	contentType string
	redirect    string
	hits        atomic.Int32
	port        string
}

func (p *policyServer) set(body string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.body, p.status, p.contentType, p.redirect = body, 200, "text/plain; charset=utf-8", ""
}

func (p *policyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.hits.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts.example.org" {
		http.NotFound(w, r)
		return
	}
	if p.redirect != "" {
		http.Redirect(w, r, p.redirect, http.StatusFound)
		return
	}
	w.Header().Set("Content-Type", p.contentType)
	w.WriteHeader(p.status)
	fmt.Fprint(w, p.body)
}

type env struct {
	t     *testing.T
	dns   *relaytest.DNSServer
	srv   *policyServer
	ca    *relaytest.CA
	src   *Source
	store *queue.Store
	clk   *clock.Fake
}

func (e *env) advance(d time.Duration) {
	e.clk.Advance(d)
}

const policyIP = "127.0.15.200"

func newEnv(t *testing.T, certName string, withPool bool) *env {
	e := &env{t: t, clk: clock.NewFake(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)), srv: &policyServer{}, ca: relaytest.NewCA(t)}
	e.srv.set("version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 86400\n")
	e.dns = relaytest.NewDNS(t, map[string]relaytest.Zone{
		"_mta-sts.example.org": {TXT: []string{"v=spf1 -all", "v=STSv1; id=one;"}, TTL: 1},
		"mta-sts.example.org":  {A: []string{policyIP}},
	})
	hs := httptest.NewUnstartedServer(e.srv)
	ln, err := net.Listen("tcp", policyIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	hs.Listener.Close()
	hs.Listener = ln
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{e.ca.Issue(certName)}}
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point of some tests
	hs.StartTLS()
	t.Cleanup(hs.Close)
	_, e.srv.port, _ = net.SplitHostPort(ln.Addr().String())

	res, err := resolver.New(resolver.Options{Server: e.dns.Addr(), Timeout: 2 * time.Second, Clock: e.clk})
	if err != nil {
		t.Fatal(err)
	}
	e.store, err = queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	opts := Options{Resolver: res, Store: e.store, Clock: e.clk, Timeout: 5 * time.Second, Dial: e.dial}
	if withPool {
		opts.RootCAs = e.ca.Pool()
	}
	e.src, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// dial sends the fetch, meant for port 443, to the test server's port;
// it refuses anything but loopback.
func (e *env) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port != "443" || !net.ParseIP(host).IsLoopback() {
		return nil, fmt.Errorf("test dialer: refusing %s", addr)
	}
	return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(host, e.srv.port))
}

func (e *env) get() Result {
	e.t.Helper()
	return e.src.Get(e.t.Context(), "Example.org.")
}

func mode(r Result) string {
	if r.Policy == nil {
		return "no policy"
	}
	return string(r.Policy.Mode)
}

func TestFetchAndCache(t *testing.T) {
	e := newEnv(t, "mta-sts.example.org", true)
	r := e.get()
	if mode(r) != "enforce" || r.Cached || r.ID != "one" || r.Note != "" {
		t.Fatalf("first Get = %+v", r)
	}
	if r := e.get(); mode(r) != "enforce" || !r.Cached || e.srv.hits.Load() != 1 {
		t.Fatalf("same id: %+v after %d fetches, want the cached policy", r, e.srv.hits.Load())
	}

	// A changed id refetches.
	e.srv.set("version: STSv1\nmode: testing\nmx: mx.example.org\nmax_age: 86400\n")
	e.dns.Set("_mta-sts.example.org", relaytest.Zone{TXT: []string{"v=STSv1; id=two;"}, TTL: 1})
	e.advance(2 * time.Second) // past the TXT's TTL
	if r := e.get(); mode(r) != "testing" || r.Cached || r.ID != "two" {
		t.Fatalf("after an id change: %+v", r)
	}

	// A new id whose fetch fails keeps the cached policy.
	e.srv.set("this is not a policy")
	e.dns.Set("_mta-sts.example.org", relaytest.Zone{TXT: []string{"v=STSv1; id=three;"}, TTL: 1})
	e.advance(2 * time.Second)
	if r := e.get(); mode(r) != "testing" || !r.Cached || !strings.Contains(r.Note, "refetch failed") {
		t.Fatalf("failed refetch: %+v", r)
	}

	// The TXT record vanishes: the cached policy holds until max_age.
	e.dns.Delete("_mta-sts.example.org")
	e.advance(2 * time.Second)
	if r := e.get(); mode(r) != "testing" || !r.Cached {
		t.Fatalf("without a record: %+v", r)
	}
	e.advance(24 * time.Hour)
	if r := e.get(); r.Policy != nil {
		t.Fatalf("after max_age without a record: %+v, want no policy", r)
	}
}

func TestProactiveRefresh(t *testing.T) {
	e := newEnv(t, "mta-sts.example.org", true)
	if r := e.get(); mode(r) != "enforce" {
		t.Fatalf("%+v", r)
	}
	// Past half of max_age, the same id refetches (the server now says
	// testing), at most once an hour.
	e.srv.set("version: STSv1\nmode: testing\nmx: mx.example.org\nmax_age: 86400\n")
	e.advance(11 * time.Hour)
	if r := e.get(); mode(r) != "enforce" || e.srv.hits.Load() != 1 {
		t.Fatalf("before half of max_age: %+v after %d fetches", r, e.srv.hits.Load())
	}
	e.advance(2 * time.Hour)
	if r := e.get(); mode(r) != "testing" || r.Cached {
		t.Fatalf("past half of max_age: %+v", r)
	}
	// The refreshed policy runs a new max_age; a failing server keeps it.
	e.srv.mu.Lock()
	e.srv.status = 503
	e.srv.mu.Unlock()
	e.advance(13 * time.Hour)
	if r := e.get(); mode(r) != "testing" || !strings.Contains(r.Note, "refetch failed") {
		t.Fatalf("failed refresh: %+v", r)
	}
	hits := e.srv.hits.Load()
	e.advance(time.Minute)
	if r := e.get(); mode(r) != "testing" || e.srv.hits.Load() != hits {
		t.Fatalf("refresh retried within the hour: %+v, %d fetches", r, e.srv.hits.Load()-hits)
	}
	// Expired, the entry is gone from the store.
	e.advance(24 * time.Hour)
	e.get()
	if _, err := e.store.State(t.Context(), "mta-sts/example.org"); err == nil {
		t.Error("expired policy still in the store")
	}
}

func TestCacheSurvivesRestart(t *testing.T) {
	e := newEnv(t, "mta-sts.example.org", true)
	if r := e.get(); mode(r) != "enforce" {
		t.Fatalf("%+v", r)
	}
	// A new Source over the same store (a restart) uses the cached policy
	// although the server now fails.
	e.srv.mu.Lock()
	e.srv.status = 500
	e.srv.mu.Unlock()
	src2, err := New(e.src.opts)
	if err != nil {
		t.Fatal(err)
	}
	if r := src2.Get(t.Context(), "example.org"); mode(r) != "enforce" || !r.Cached {
		t.Fatalf("after restart: %+v", r)
	}
}

func TestFetchRefusals(t *testing.T) {
	tests := []struct {
		name   string
		script func(*policyServer)
		cert   string
		txt    []string
		note   string
	}{
		{"redirect not followed", func(p *policyServer) { p.redirect = "https://mta-sts.example.org/other" }, "", nil, "302"},
		{"HTTP 404", func(p *policyServer) { p.status = 404 }, "", nil, "404"},
		{"content type", func(p *policyServer) { p.contentType = "text/html" }, "", nil, "content type"},
		{"too large", func(p *policyServer) {
			p.body = "version: STSv1\nmode: none\nmax_age: 1\nx: " + strings.Repeat("a", MaxPolicySize)
		}, "", nil, "larger"},
		{"bad syntax", func(p *policyServer) { p.body = "version: STSv1\nmode: enforce\nmax_age: 1\n" }, "", nil, "syntax"},
		{"certificate for another name", nil, "www.example.org", nil, "certificate"},
		{"two STSv1 records", nil, "", []string{"v=STSv1; id=a;", "v=STSv1; id=b;"}, "want one"},
		{"bad record", nil, "", []string{"v=STSv1; id=a-b;"}, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := "mta-sts.example.org"
			if tt.cert != "" {
				cert = tt.cert
			}
			e := newEnv(t, cert, true)
			if tt.script != nil {
				e.srv.mu.Lock()
				tt.script(e.srv)
				e.srv.mu.Unlock()
			}
			if tt.txt != nil {
				e.dns.Set("_mta-sts.example.org", relaytest.Zone{TXT: tt.txt})
			}
			r := e.get()
			if r.Policy != nil || !strings.Contains(r.Note, tt.note) {
				t.Fatalf("Get = %+v, want no policy and a note with %q", r, tt.note)
			}
		})
	}
}

func TestNoRecordIsQuiet(t *testing.T) {
	e := newEnv(t, "mta-sts.example.org", true)
	e.dns.Delete("_mta-sts.example.org")
	if r := e.get(); r.Policy != nil || r.Note != "" || e.srv.hits.Load() != 0 {
		t.Fatalf("Get = %+v after %d fetches, want nothing", r, e.srv.hits.Load())
	}
}

// The system's roots are honoured, SSL_CERT_FILE included. Go loads them
// once per process, so the check runs in a child process that sets
// SSL_CERT_FILE to its test CA before anything loads them.
func TestSystemRootsFromSSLCertFile(t *testing.T) {
	if os.Getenv("MTASTS_TEST_CHILD") == "1" {
		e := newEnv(t, "mta-sts.example.org", false)
		t.Setenv("SSL_CERT_FILE", e.ca.PEMFile())
		t.Setenv("SSL_CERT_DIR", t.TempDir())
		if r := e.get(); mode(r) != "enforce" {
			t.Fatalf("the CA named by SSL_CERT_FILE was not trusted: %+v", r)
		}
		return
	}
	e := newEnv(t, "mta-sts.example.org", false)
	if r := e.get(); r.Policy != nil {
		t.Fatalf("a CA outside the system roots was trusted: %+v", r)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSystemRootsFromSSLCertFile$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "MTASTS_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// A failed fetch is not retried for the same id within retryFetch, so that
// a policy host that is down does not slow every delivery; a new id, or
// the end of the wait, tries again.
func TestFailedFetchNotRetriedAtOnce(t *testing.T) {
	e := newEnv(t, "mta-sts.example.org", true)
	e.srv.mu.Lock()
	e.srv.status = 503
	e.srv.mu.Unlock()
	if r := e.get(); r.Policy != nil || !strings.Contains(r.Note, "503") {
		t.Fatalf("%+v", r)
	}
	if r := e.get(); r.Policy != nil || r.Note != "" || e.srv.hits.Load() != 1 {
		t.Fatalf("second Get: %+v after %d fetches, want no fetch and no note", r, e.srv.hits.Load())
	}
	e.advance(retryFetch)
	e.srv.set("version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 86400\n")
	if r := e.get(); mode(r) != "enforce" || e.srv.hits.Load() != 2 {
		t.Fatalf("after %v: %+v after %d fetches", retryFetch, r, e.srv.hits.Load())
	}
}

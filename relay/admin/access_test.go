package admin

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"facteur/queue"
	"facteur/relay/unixsock"
)

func testServer(t *testing.T, token string, pprof bool) *Server {
	t.Helper()
	st, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Server{Store: st, Token: token, Log: slog.New(slog.DiscardHandler), Pprof: pprof,
		Extra: map[string]http.Handler{"GET /metrics": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "facteur_up 1\n")
		})}}
}

// The TCP listener's checks (issue 11 §4): what an attacker with code
// execution as www-data, or a web page through the browser, can send.
func TestTCPHandler(t *testing.T) {
	const addr = "127.0.0.1:8025"
	const tok = "0123456789abcdef0123"
	tests := []struct {
		name        string
		token       string
		pprof       bool
		method, url string
		host        string
		header      map[string]string
		want        int
	}{
		{"no token: metrics", "", false, "GET", "/metrics", addr, nil, 200},
		{"no token: healthz", "", false, "GET", "/healthz", addr, nil, 200},
		{"no token: queue listing refused", "", false, "GET", "/queue", addr, nil, 403},
		{"no token: delete all refused", "", false, "POST", "/queue/delete?all=1", addr, map[string]string{"Content-Type": "application/json"}, 403},
		{"no token: suppressions refused", "", false, "POST", "/suppressions", addr, nil, 403},
		{"no token: pprof refused", "", false, "GET", "/debug/pprof/", addr, nil, 403},
		{"no token: a guessed token does not help", "", false, "GET", "/queue", addr, map[string]string{"Authorization": "Bearer "}, 403},
		{"no token: metrics by the machine's name", "", false, "GET", "/metrics", "relay.example:8025", nil, 200},
		{"no token: foreign Host on the queue", "", false, "GET", "/queue", "evil.example:8025", nil, 421},
		{"token: queue without it", tok, false, "GET", "/queue", addr, nil, 401},
		{"token: wrong one", tok, false, "GET", "/queue", addr, map[string]string{"Authorization": "Bearer nope"}, 401},
		{"token: queue with it", tok, false, "GET", "/queue", addr, map[string]string{"Authorization": "Bearer " + tok}, 200},
		{"token: localhost Host", tok, false, "GET", "/queue", "localhost:8025", map[string]string{"Authorization": "Bearer " + tok}, 200},
		{"token: DNS rebinding Host", tok, false, "GET", "/queue", "evil.example:8025", map[string]string{"Authorization": "Bearer " + tok}, 421},
		{"token: Host with another port", tok, false, "GET", "/queue", "127.0.0.1:80", map[string]string{"Authorization": "Bearer " + tok}, 421},
		{"token: Host another IP", tok, false, "GET", "/queue", "127.0.0.2:8025", map[string]string{"Authorization": "Bearer " + tok}, 421},
		{"token: form POST (CSRF)", tok, false, "POST", "/queue/delete?all=1", addr,
			map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"token: text/plain POST (CSRF)", tok, false, "POST", "/queue/delete?all=1", addr,
			map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "text/plain"}, 415},
		{"token: POST without content type", tok, false, "POST", "/queue/delete?all=1", addr, map[string]string{"Authorization": "Bearer " + tok}, 415},
		{"token: JSON POST", tok, false, "POST", "/queue/delete?all=1", addr,
			map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json; charset=utf-8"}, 200},
		{"token: pprof off by default", tok, false, "GET", "/debug/pprof/", addr, map[string]string{"Authorization": "Bearer " + tok}, 404},
		{"token: pprof with admin_pprof", tok, true, "GET", "/debug/pprof/", addr, map[string]string{"Authorization": "Bearer " + tok}, 200},
		{"token: pprof with admin_pprof needs the token", tok, true, "GET", "/debug/pprof/", addr, nil, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := testServer(t, tc.token, tc.pprof).TCPHandler(addr)
			req := httptest.NewRequest(tc.method, tc.url, strings.NewReader("{}"))
			req.Host = tc.host
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("%s %s Host %s: %d %s, want %d", tc.method, tc.url, tc.host, rec.Code, rec.Body, tc.want)
			}
		})
	}
}

func TestHostMatches(t *testing.T) {
	tests := []struct {
		host, addr string
		want       bool
	}{
		{"127.0.0.1:8025", "127.0.0.1:8025", true},
		{"localhost:8025", "127.0.0.1:8025", true},
		{"LOCALHOST:8025", "127.0.0.1:8025", true},
		{"[::1]:8025", "[::1]:8025", true},
		{"127.0.0.1:8025", "localhost:8025", true},
		{"192.0.2.7:8025", "0.0.0.0:8025", true},
		{"admin.example:8025", "0.0.0.0:8025", false},
		{"evil.example:8025", "127.0.0.1:8025", false},
		{"127.0.0.1", "127.0.0.1:8025", false},
		{"", "127.0.0.1:8025", false},
		{"192.0.2.7:8025", "192.0.2.8:8025", false},
	}
	for _, tc := range tests {
		if got := hostMatches(tc.host, tc.addr); got != tc.want {
			t.Errorf("hostMatches(%q, %q) = %v, want %v", tc.host, tc.addr, got, tc.want)
		}
	}
}

// The socket serves everything to an allowed peer (the test process is
// root or the daemon's own uid) and nothing to another uid.
func TestUnixHandler(t *testing.T) {
	s := testServer(t, "", false)
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := unixsock.Listen(path, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for _, tc := range []struct {
		name  string
		peers Peers
		want  int
	}{
		{"daemon's uid", Peers{DaemonUID: uidOf(t), GID: -1}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- s.Serve(ctx, ln, s.UnixHandler(tc.peers)) }()
			c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			}}}
			resp, err := c.Post("http://x/queue/delete?all=1", "text/plain", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			cancel()
			<-done
		})
	}
}

func TestPeersAllowed(t *testing.T) {
	tests := []struct {
		name  string
		peers Peers
		cred  unixsock.Cred
		ok    bool
	}{
		{"root", Peers{DaemonUID: 999, GID: -1}, unixsock.Cred{UID: 0}, true},
		{"daemon's user", Peers{DaemonUID: 999, GID: -1}, unixsock.Cred{UID: 999, GID: 999}, true},
		{"www-data", Peers{DaemonUID: 999, GID: -1}, unixsock.Cred{UID: 33, GID: 33}, false},
		{"admin_group's primary gid", Peers{DaemonUID: 999, GID: 4242}, unixsock.Cred{UID: 1000, GID: 4242}, true},
		{"not in admin_group", Peers{DaemonUID: 999, GID: 4242}, unixsock.Cred{UID: 33, GID: 33}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.peers.Allowed(tc.cred); (err == nil) != tc.ok {
				t.Errorf("Allowed(%+v) = %v, want ok=%v", tc.cred, err, tc.ok)
			}
		})
	}
}

func uidOf(t *testing.T) int {
	t.Helper()
	return os.Geteuid()
}

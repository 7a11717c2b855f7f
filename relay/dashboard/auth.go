package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"facteur/relay/unixsock"
)

const (
	sessionCookie = "facteur_session"
	// sessionTTL: a shift on call; the login is asked again after it.
	sessionTTL  = 12 * time.Hour
	maxSessions = 1000
)

// sessions are the browser sessions opened by a login. They are in
// memory: a restart logs everyone out, which is fine for an admin page.
type sessions struct {
	mu     sync.Mutex // guards byID and fails
	byID   map[string]time.Time
	secret []byte // keys the CSRF tokens
	// fails counts each client's wrong tokens in a row: past loginTries,
	// that client's logins are refused unchecked until a minute after its
	// last failure, so that a local process cannot guess the token at
	// network speed. Per client (loginClient), not one count for all: a
	// hacked site posting a wrong token every ten seconds would otherwise
	// keep the operator locked out for good.
	fails map[string]failCount
}

type failCount struct {
	n    int
	last time.Time
}

const (
	loginTries   = 5
	loginPenalty = time.Minute
	// maxFailing bounds the clients remembered; past it those whose
	// penalty is over are forgotten first.
	maxFailing = 10000
)

// attempt counts a login attempt of client at now, before its token is
// checked, and reports whether it may be checked at all: past loginTries
// attempts, refused until loginPenalty after the last one. Counted first,
// in one locked step, so that guesses posted in parallel cannot all pass
// the check before any is counted; a right token (ok) clears the count.
func (s *sessions) attempt(client string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fails[client]
	if f.n >= loginTries && now.Before(f.last.Add(loginPenalty)) {
		return false
	}
	if len(s.fails) >= maxFailing {
		for k, f := range s.fails {
			if !now.Before(f.last.Add(loginPenalty)) {
				delete(s.fails, k)
			}
		}
		if len(s.fails) >= maxFailing {
			// Still full: as many clients guessing within a minute. Start
			// over rather than grow; each is throttled again after
			// loginTries more guesses.
			clear(s.fails)
		}
	}
	s.fails[client] = failCount{n: f.n + 1, last: now}
	return true
}

func (s *sessions) ok(client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.fails, client)
}

// loginClient names what a login attempt counts against. A loopback client
// is the local account owning its socket, as the kernel tells it
// (sock_diag), so that www-data's guesses throttle www-data and not the
// operator's browser on the same 127.0.0.1; any other client is its
// address. A loopback client whose owner cannot be learnt shares one count.
func loginClient(r *http.Request) string {
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	ip := remote.Addr().Unmap()
	if !ip.IsLoopback() {
		return ip.String()
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	if !ok {
		return "loopback"
	}
	uid, err := unixsock.TCPOwner(net.TCPAddrFromAddrPort(remote), local)
	if err != nil {
		return "loopback"
	}
	return "uid:" + strconv.FormatUint(uint64(uid), 10)
}

func newSessions() *sessions {
	s := &sessions{byID: map[string]time.Time{}, fails: map[string]failCount{}, secret: make([]byte, 32)}
	rand.Read(s.secret)
	return s
}

func (s *sessions) open(now time.Time) string {
	b := make([]byte, 32)
	rand.Read(b)
	id := base64.RawURLEncoding.EncodeToString(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, exp := range s.byID {
		if !now.Before(exp) || len(s.byID) >= maxSessions {
			delete(s.byID, k)
		}
	}
	s.byID[id] = now.Add(sessionTTL)
	return id
}

func (s *sessions) valid(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.byID[id]
	return ok && now.Before(exp)
}

func (s *sessions) close(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// csrf is the token of a session's forms: an HMAC of its ID, so nothing
// more is stored, and a token from another session is worthless.
func (s *sessions) csrf(id string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("csrf\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// hostAllowed is the DNS-rebinding check: a page from evil.example that
// its DNS points at 127.0.0.1 reaches us with Host: evil.example. Only the
// admin address itself is accepted, and localhost for a loopback one.
func (d *Dashboard) hostAllowed(host string) bool {
	d.hostsMu.Lock()
	defer d.hostsMu.Unlock()
	if len(d.Hosts) == 0 {
		// A Unix socket: no browser reaches it through DNS.
		return true
	}
	for _, h := range d.Hosts {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	return false
}

// SetHosts replaces Hosts while the dashboard serves (the listener was
// bound again, on another port).
func (d *Dashboard) SetHosts(hosts []string) {
	d.hostsMu.Lock()
	defer d.hostsMu.Unlock()
	d.Hosts = hosts
}

// AllowedHosts returns the Host values for an admin listener at addr: the
// address, and for a loopback one "localhost" with its port.
func AllowedHosts(addr string) []string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return []string{addr}
	}
	out := []string{addr}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		out = append(out, net.JoinHostPort("localhost", port))
	}
	return out
}

// sameOrigin checks a POST's Origin (or, without one, its Referer)
// against the Host it was sent to: a form on another site cannot post
// here even with the browser's cookie (SameSite=Strict is the first
// fence, this the second).
func sameOrigin(r *http.Request) bool {
	want := "http://" + r.Host
	if r.TLS != nil {
		want = "https://" + r.Host
	}
	if o := r.Header.Get("Origin"); o != "" {
		return o == want
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		return err == nil && u.Scheme+"://"+u.Host == want
	}
	return false
}

// bearer reports a request carrying the admin token as the admin API's
// clients do: not a browser's ambient credential, so no CSRF token needed.
func (d *Dashboard) bearer(r *http.Request) bool {
	got := r.Header.Get("Authorization")
	return d.Token != "" && subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+d.Token)) == 1
}

func (d *Dashboard) session(r *http.Request) (string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return "", false
	}
	return c.Value, d.sess.valid(c.Value, d.Now())
}

// safeNext keeps a post-login redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/"
	}
	// Browsers drop tabs and line breaks anywhere in a URL before reading it
	// (WHATWG URL), so "/\t/evil.example" is "//evil.example" to them: a
	// protocol-relative jump off the site. No control character passes.
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x20 || c == 0x7f {
			return "/"
		}
	}
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}

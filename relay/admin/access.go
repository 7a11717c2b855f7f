package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"facteur/relay/maillog"
	"facteur/relay/unixsock"
)

type connKey struct{}

// connContext keeps the connection in the request's context, for the
// socket's peer check.
func connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// Peers says who may use the admin socket: root, the daemon's own uid, and
// the members of one group (admin_group; GID < 0: none).
type Peers struct {
	DaemonUID int
	GID       int
}

// Allowed reports whether the peer may act, and why not.
func (p Peers) Allowed(c unixsock.Cred) error {
	if c.UID == 0 || c.UID == p.DaemonUID {
		return nil
	}
	if p.GID >= 0 {
		if c.GID == p.GID {
			return nil
		}
		// A supplementary group counts too, as for file access; looked up
		// now, so that a member removed from the group loses access.
		if u, err := user.LookupId(strconv.Itoa(c.UID)); err == nil {
			if gids, err := u.GroupIds(); err == nil && slices.Contains(gids, strconv.Itoa(p.GID)) {
				return nil
			}
		}
	}
	return fmt.Errorf("uid %d may not use the admin socket (root, the daemon's user and admin_group only)", c.UID)
}

// UnixHandler is the admin socket's handler: every route, to a peer that
// Peers allows. The directory's mode keeps others from connecting at all;
// the check is for a socket path an admin moved somewhere more open.
func (s *Server) UnixHandler(p Peers) http.Handler {
	h := s.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(connKey{}).(net.Conn)
		cred, err := unixsock.Peer(c)
		if err == nil {
			err = p.Allowed(cred)
		}
		if err != nil {
			s.Log.Warn(maillog.AdminRefused, "client", "admin-socket", "err", err.Error())
			WriteError(w, http.StatusForbidden, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// publicRoutes are what the TCP listener serves without a token: read-only
// and without mail addresses, for Prometheus and a health check.
var publicRoutes = map[string]bool{"/metrics": true, "/healthz": true}

// errNoToken is the answer to an admin action on the TCP listener when no
// token is configured.
var errNoToken = errors.New("admin actions go through the admin socket (facteur CLI as root or the facteur user); over TCP they need admin_token")

// TCPHandler is the TCP listener's handler; addr is the address it is
// bound to (for the Host check).
func (s *Server) TCPHandler(addr string) http.Handler {
	h := s.Handler()
	want := []byte("Bearer " + s.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Metrics and health are read-only and name no address: any Host,
		// so that Prometheus may scrape by the machine's name.
		if publicRoutes[r.URL.Path] && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			h.ServeHTTP(w, r)
			return
		}
		// DNS rebinding: a page of evil.example whose name now resolves to
		// 127.0.0.1 sends Host: evil.example.
		if !hostMatches(r.Host, addr) {
			WriteError(w, http.StatusMisdirectedRequest, fmt.Errorf("Host %q is not this listener's address %s", r.Host, addr))
			return
		}
		if s.Token == "" {
			WriteError(w, http.StatusForbidden, errNoToken)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			s.Log.Warn(maillog.AdminRefused, "client", r.RemoteAddr, "err", "bad or missing token")
			WriteError(w, http.StatusUnauthorized, errors.New("admin token required"))
			return
		}
		// CSRF: a browser sends a cross-site form as urlencoded, multipart
		// or text/plain; application/json needs a CORS preflight that this
		// endpoint never grants.
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				WriteError(w, http.StatusUnsupportedMediaType, errors.New("a change needs Content-Type: application/json"))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// hostMatches tells whether the Host header names the listener: its own
// address, or "localhost" for a loopback listener. When the listener is
// bound to every address (0.0.0.0, ::), any IP literal with its port is
// its own; a name never is, except localhost.
func hostMatches(host, addr string) bool {
	lh, lp, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	hh, hp, err := net.SplitHostPort(host)
	if err != nil {
		// No port: only for a listener on port 80.
		hh, hp = host, "80"
	}
	hh = strings.TrimSuffix(strings.TrimPrefix(hh, "["), "]")
	if hp != lp {
		return false
	}
	la, lerr := netip.ParseAddr(lh)
	if strings.EqualFold(hh, "localhost") {
		return lh == "localhost" || (lerr == nil && (la.IsLoopback() || la.IsUnspecified()))
	}
	ha, err := netip.ParseAddr(hh)
	if err != nil {
		return false
	}
	if lerr != nil {
		return lh == "localhost" && ha.IsLoopback()
	}
	return la.IsUnspecified() || ha.Unmap() == la.Unmap()
}

package admin

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"facteur/queue"
	"facteur/relay/unixsock"
)

// The stored message (queue show --body: GET /queue/ID/message?part=all,
// and its header alone) is for root and admins only (issue 13 §2): the
// admin socket to an allowed peer, the TCP listener with the token. Never
// the TCP listener without it, never showq (which any user reaches), never
// the admin socket to another uid.
func TestMessageBodyAccess(t *testing.T) {
	const addr = "127.0.0.1:8025"
	const tok = "0123456789abcdef0123"
	const secret = "password-reset-link-9Zq"
	newServer := func(t *testing.T, token string) (*Server, queue.ID) {
		s := testServer(t, token, false)
		id, err := s.Store.Enqueue(t.Context(), queue.Envelope{Sender: "app@example.com", Recipients: []string{"bob@example.org"}},
			[]byte("Subject: reset\r\n\r\n"+secret+"\r\n"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s, id
	}

	t.Run("TCP", func(t *testing.T) {
		tests := []struct {
			name, token, auth, part string
			want                    int
		}{
			{"no token configured, body", "", "", "all", http.StatusForbidden},
			{"no token configured, header", "", "", "header", http.StatusForbidden},
			{"no token configured, a Bearer sent", "", "Bearer ", "all", http.StatusForbidden},
			{"token, none sent", tok, "", "all", http.StatusUnauthorized},
			{"token, wrong one", tok, "Bearer " + tok[:len(tok)-1] + "x", "all", http.StatusUnauthorized},
			{"token, right one", tok, "Bearer " + tok, "all", http.StatusOK},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				s, id := newServer(t, tc.token)
				req := httptest.NewRequest("GET", "/queue/"+string(id)+"/message?part="+tc.part, nil)
				req.Host = addr
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				rec := httptest.NewRecorder()
				s.TCPHandler(addr).ServeHTTP(rec, req)
				if rec.Code != tc.want {
					t.Errorf("status %d, want %d (%s)", rec.Code, tc.want, rec.Body)
				}
				if got := strings.Contains(rec.Body.String(), secret); got != (tc.want == http.StatusOK) {
					t.Errorf("body served: %v, answer %q", got, rec.Body)
				}
			})
		}
	})

	t.Run("showq", func(t *testing.T) {
		s, id := newServer(t, "")
		path := filepath.Join(t.TempDir(), "showq.sock")
		ln, err := unixsock.Listen(path, 0o666, -1)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- (&Showq{Store: s.Store}).Serve(ctx, ln) }()
		defer func() { cancel(); <-done }()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /queue/"+string(id)+"/message?part=all HTTP/1.1\r\nHost: x\r\n\r\n")
		b, _ := io.ReadAll(c)
		c.Close()
		if !strings.Contains(string(b), string(id)) || strings.Contains(string(b), secret) || strings.Contains(string(b), "Subject: reset") {
			t.Errorf("showq answered %q: want the listing, without header or body", b)
		}
	})

	t.Run("admin socket", func(t *testing.T) {
		// The system's python3: a per-user install (pyenv) is not
		// reachable by the other uids.
		python := "/usr/bin/python3"
		if _, err := os.Stat(python); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("python3 is missing (apt-get install python3)")
			}
			t.Skip("python3 is missing")
		}
		if os.Getuid() != 0 {
			t.Skip("relay/admin: needs root to connect as another uid")
		}
		s, id := newServer(t, "")
		// A directory every uid may enter: the socket's own mode (0666)
		// lets the other uid connect, so that the peer check is what says no.
		dir, err := os.MkdirTemp("", "i13b-admin-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "admin.sock")
		ln, err := unixsock.Listen(path, 0o666, -1)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, ln, s.UnixHandler(Peers{DaemonUID: 999, GID: -1})) }()
		defer func() { cancel(); <-done }()
		const client = `
import socket, sys
c = socket.socket(socket.AF_UNIX)
c.connect(sys.argv[1])
c.sendall(("GET /queue/%s/message?part=all HTTP/1.0\r\nHost: x\r\n\r\n" % sys.argv[2]).encode())
out = b""
while True:
    b = c.recv(65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode())
`
		for _, tc := range []struct {
			name string
			uid  uint32
			want string
		}{
			{"root", 0, "HTTP/1.0 200"},
			{"www-data", 33, "HTTP/1.0 403"},
			{"nobody", 65534, "HTTP/1.0 403"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cmd := exec.CommandContext(t.Context(), python, "-c", client, path, string(id))
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tc.uid, Gid: tc.uid}}
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("python3 as uid %d: %v", tc.uid, err)
				}
				if !strings.HasPrefix(string(out), tc.want) {
					t.Errorf("uid %d got %.80q, want %s", tc.uid, out, tc.want)
				}
				if got := strings.Contains(string(out), secret); got != (tc.want == "HTTP/1.0 200") {
					t.Errorf("uid %d: body served: %v", tc.uid, got)
				}
			})
		}
	})
}

package submission

// Issue 11: a shared web server is hostile ground. These tests drive the
// server over real loopback sockets (and its Unix socket) as an attacker
// would: idle floods, NOOP keep-alives, AUTH brute force, malformed DATA.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/cleanup"
	"facteur/relay/guard"
	"facteur/relay/maillog"
	"facteur/relay/relaytest"
)

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type hostile struct {
	addr  string
	store *queue.Store
	log   *logBuf
	srv   *Server
}

// startHostile runs a server with opts on a loopback listener (and, when
// local is set, on a Unix socket whose path it returns in addr).
func startHostile(t *testing.T, opts Options, l Listener) hostile {
	t.Helper()
	return startHostileOn(t, opts, l, nil)
}

// startHostileOn is startHostile serving ln when it is not nil.
func startHostileOn(t *testing.T, opts Options, l Listener, ln net.Listener) hostile {
	t.Helper()
	st, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	lb := &logBuf{}
	log := maillog.New(lb, "text")
	c := cleanup.New(cleanup.Options{Hostname: "relay.test", LocalDomain: "example.com", MaxHops: 50}, st, nil, log)
	if opts.Hostname == "" {
		opts.Hostname = "relay.test"
	}
	if opts.MaxMessageSize == 0 {
		opts.MaxMessageSize = 10 << 20
	}
	if opts.MaxRecipients == 0 {
		opts.MaxRecipients = 100
	}
	if opts.Trusted == nil {
		opts.Trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}
	if opts.SpoolDir == "" {
		opts.SpoolDir = t.TempDir()
	}
	srv := New(opts, c, log)
	switch {
	case ln != nil:
	case l.Local:
		ln, err = ListenLocal(filepath.Join(t.TempDir(), "public"), -1)
	default:
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(t.Context(), ln, l) }()
	t.Cleanup(func() {
		ln.Close()
		srv.Shutdown(t.Context())
		<-done
		st.Close()
	})
	return hostile{addr: ln.Addr().String(), store: st, log: lb, srv: srv}
}

// rawDial connects from src and returns the connection and its reader.
func rawDial(t *testing.T, src, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func sendMessage(t *testing.T, c *smtp.Client, from, to, body string) error {
	t.Helper()
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	io.WriteString(w, body)
	return w.Close()
}

// 2,000 idle connections from an untrusted address end at the per-IP limit
// with 421 4.7.0; a local client still gets through, and the global limit
// holds too (issue 11 §3's check).
func TestConnectionLimits(t *testing.T) {
	h := startHostile(t, Options{MaxConnections: 200, MaxConnectionsPerIP: 20}, Listener{})
	var held []net.Conn
	accepted, refused := 0, 0
	for i := range 2000 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}
		c, err := d.Dial("tcp", h.addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		switch {
		case strings.HasPrefix(line, "220 "):
			accepted++
			held = append(held, c)
		case strings.HasPrefix(line, "421 4.7.0 "):
			refused++
			c.Close()
		default:
			t.Fatalf("connection %d: %q, %v", i, line, err)
		}
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	if accepted != 20 || refused != 1980 {
		t.Fatalf("accepted %d, refused %d; want 20 and 1980", accepted, refused)
	}
	// A local client (trusted, loopback) is not held by the per-IP limit.
	c := dialFrom(t, "127.0.0.1", h.addr)
	if err := sendMessage(t, c, "app@example.com", "bob@example.org", "Subject: x\r\n\r\nstill here\r\n"); err != nil {
		t.Fatalf("local client during the flood: %v", err)
	}
	if n := strings.Count(h.log.String(), "421 4.7.0"); n != 1980 {
		t.Errorf("%d refusals logged, want 1980", n)
	}

	// The global limit: 200 connections from anywhere.
	g := startHostile(t, Options{MaxConnections: 5, MaxConnectionsPerIP: 20}, Listener{})
	for i := range 5 {
		c, r := rawDial(t, fmt.Sprintf("127.0.0.%d", 10+i), g.addr)
		_ = c
		if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "220 ") {
			t.Fatalf("connection %d: %q", i, line)
		}
	}
	_, r := rawDial(t, "127.0.0.1", g.addr)
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "421 4.7.0 ") || !strings.Contains(line, "max_connections") {
		t.Fatalf("past max_connections: %q", line)
	}
}

// NOOP and RSET do not keep an idle connection open (issue 11 §3).
func TestIdleTimeoutIgnoresNOOP(t *testing.T) {
	h := startHostile(t, Options{ReadTimeout: 300 * time.Millisecond}, Listener{})
	c, r := rawDial(t, "127.0.0.1", h.addr)
	r.ReadString('\n')
	start := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lines := make(chan string, 100)
	go func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- line
		}
	}()
	var last string
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				if !strings.HasPrefix(last, "421 4.4.2") {
					t.Fatalf("closed after %q, want 421 4.4.2", last)
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Fatalf("closed after %v", d)
				}
				return
			}
			last = line
		case <-tick.C:
			if time.Since(start) > 5*time.Second {
				t.Fatal("NOOP kept the connection open")
			}
			io.WriteString(c, "NOOP\r\nRSET\r\n")
		}
	}
}

// A header line over 998 octets is refused for good, a bare-LF end of data
// is answered at once (never a timeout), and a large message is spooled
// and queued intact.
func TestDataEdges(t *testing.T) {
	h := startHostile(t, Options{ReadTimeout: time.Minute}, Listener{})
	script := func(data string) string {
		c, r := rawDial(t, "127.0.0.1", h.addr)
		c.SetDeadline(time.Now().Add(5 * time.Second)) // far below ReadTimeout
		io.WriteString(c, "EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("before 354: %v", err)
			}
			if strings.HasPrefix(line, "354") {
				break
			}
		}
		io.WriteString(c, data)
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no answer to the end of data: %v", err)
		}
		return line
	}
	for _, tc := range []struct {
		name, data, want string
	}{
		{"header line of 999 octets", "Subject: " + strings.Repeat("x", 990) + "\r\n\r\nbody\r\n.\r\n", "552 5.6.0 "},
		{"header line of 998 octets", "Subject: " + strings.Repeat("x", 989) + "\r\n\r\nbody\r\n.\r\n", "250 "},
		{"long body line is fine", "Subject: x\r\n\r\n" + strings.Repeat("y", 2000) + "\r\n.\r\n", "250 "},
		{"bare LF end", "Subject: x\n\nbody\n.\n", "550 5.5.2 Bare LF"},
		{"CRLF then dot LF", "Subject: x\r\n\r\nbody\r\n.\n", "550 5.5.2 Bare LF"},
		{"bare LF dot CRLF", "Subject: x\r\n\r\nbody\n.\r\n", "550 5.5.2 Bare LF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := script(tc.data); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if !strings.Contains(h.log.String(), `resp="550 5.5.2 Bare LF`) || !strings.Contains(h.log.String(), `resp="552 5.6.0 Header line`) {
		t.Errorf("refusals not logged with their reply:\n%s", h.log)
	}

	// 3 MB: past the in-memory part of the spool.
	body := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("z", 76)+"\r\n", 3<<20/78)
	c := dialFrom(t, "127.0.0.1", h.addr)
	if err := sendMessage(t, c, "a@example.com", "b@example.org", body); err != nil {
		t.Fatal(err)
	}
	msgs, _ := h.store.List(t.Context(), queue.Filter{})
	var big []byte
	for _, m := range msgs {
		b, _ := h.store.Body(t.Context(), m.ID)
		if bytes.Contains(b, []byte("Subject: big")) {
			big = b
		}
	}
	if !bytes.HasSuffix(big, []byte(body[len("Subject: big\r\n\r\n"):])) {
		t.Fatalf("spooled message altered (%d bytes)", len(big))
	}
}

// Every refusal is logged once, with the reply the client saw, whether the
// session or go-smtp decided it (issue 13 §4).
func TestRefusalsLogged(t *testing.T) {
	h := startHostile(t, Options{MaxMessageSize: 1000}, Listener{})
	c, r := rawDial(t, "127.0.0.5", h.addr) // untrusted
	r.ReadString('\n')
	io.WriteString(c, "EHLO x\r\nMAIL FROM:<a@example.com> SIZE=5000\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nQUIT\r\n")
	io.ReadAll(r)
	c2, r2 := rawDial(t, "127.0.0.1", h.addr)
	r2.ReadString('\n')
	io.WriteString(c2, "EHLO x\r\nMAIL FROM:<nodomain>\r\nMAIL FROM:<a@-bad.example>\r\nQUIT\r\n")
	io.ReadAll(r2)
	log := h.log.String()
	for _, want := range []string{
		`refused level=warn client=127.0.0.5 resp="552 5.3.4 Max message size exceeded"`,
		`client=127.0.0.5 from=<a@example.com> rcpt=<victim@example.org> resp="554 5.7.1 <victim@example.org>: Relay access denied"`,
		`refused level=warn client=127.0.0.5 resp="502 5.5.1 Missing RCPT TO command."`,
		`client=127.0.0.1 resp="501 5.5.2 Was expecting MAIL arg syntax`,
		`client=127.0.0.1 from=<a@-bad.example> resp="501 5.1.3 Bad sender address syntax`,
	} {
		if strings.Count(log, want) != 1 {
			t.Errorf("want one %q in:\n%s", want, log)
		}
	}
	if n := strings.Count(log, " refused "); n != 5 {
		t.Errorf("%d refusal lines, want 5:\n%s", n, log)
	}
}

// The kernel names the submitter: SO_PEERCRED on the Unix socket, the
// socket's owner (sock_diag) on loopback TCP (issue 11 §1).
func TestSubmitterKnown(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(me.Uid)
	for _, tc := range []struct {
		name  string
		local bool
		proto string
	}{
		{"unix socket", true, "with local"},
		{"loopback TCP", false, "with ESMTP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHostile(t, Options{}, Listener{Local: tc.local})
			var conn net.Conn
			if tc.local {
				conn, err = net.Dial("unix", h.addr)
			} else {
				conn, err = net.Dial("tcp", h.addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			c := smtp.NewClient(conn)
			defer c.Close()
			if err := sendMessage(t, c, "app@example.com", "bob@example.org", "Subject: x\r\nX-PHP-Originating-Script: 33:contact.php\r\n\r\nhi\r\n"); err != nil {
				t.Fatal(err)
			}
			msgs, _ := h.store.List(t.Context(), queue.Filter{})
			if len(msgs) != 1 || msgs[0].User != me.Username || msgs[0].UID == nil || *msgs[0].UID != uid {
				t.Fatalf("queued %+v, want user %s uid %d", msgs, me.Username, uid)
			}
			body, _ := h.store.Body(t.Context(), msgs[0].ID)
			if want := fmt.Sprintf("(facteur, from userid %d)", uid); !bytes.Contains(body, []byte(want)) || !bytes.Contains(body, []byte(tc.proto)) {
				t.Errorf("Received lacks %q / %q:\n%s", want, tc.proto, body)
			}
			log := h.log.String()
			for _, want := range []string{fmt.Sprintf(" uid=%d user=%s ", uid, me.Username), " script=33:contact.php ", " message-id=<"} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
		})
	}
}

// per_user counts recipients of local users; an abandoned transaction
// gives them back; sender_login holds a user to its senders.
func TestPerUserAndSenderLogin(t *testing.T) {
	me, _ := user.Current()
	r, _ := policy.ParseRate("3/h")
	g := guard.New(guard.Options{PerUser: r})
	h := startHostile(t, Options{Guard: g, SenderLogin: map[string][]string{me.Username: {"*@shop.example", "<>"}}}, Listener{Local: true})
	dial := func() *smtp.Client {
		conn, err := net.Dial("unix", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		c := smtp.NewClient(conn)
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := dial()
	if err := c.Mail("owner@other.example", nil); code(err) != 553 {
		t.Fatalf("foreign sender: %v, want 553", err)
	}
	if err := c.Mail("", nil); err != nil {
		t.Fatalf("null sender: %v", err)
	}
	if err := c.Mail("orders@shop.example", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Rcpt(fmt.Sprintf("r%d@example.org", i), nil); err != nil {
			t.Fatalf("rcpt %d: %v", i, err)
		}
	}
	err := c.Rcpt("r3@example.org", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) {
		t.Fatalf("4th recipient: %v, want 451 4.7.1", err)
	}
	// RSET: the three recipients are given back.
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("orders@shop.example", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Rcpt(fmt.Sprintf("r%d@example.org", i), nil); err != nil {
			t.Fatalf("after RSET, rcpt %d: %v", i, err)
		}
	}
}

// AUTH brute force: each failure logged for fail2ban, cut after
// max_auth_failures in a session and 10 per address and hour; an unknown
// user costs a real bcrypt comparison (issue 11 §6).
func TestAuthBruteForce(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), 6)
	cert := relaytest.SelfSignedCert(t, "relay.test")
	users := map[string][]byte{"bob": hash}
	h := startHostile(t, Options{MaxAuthFailures: 3}, Listener{ImplicitTLS: true, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Users: users})
	dial := func() *smtp.Client {
		c, err := smtp.DialTLS(h.addr, &tls.Config{InsecureSkipVerify: true}) // a test's own self-signed certificate
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Hello("x"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := dial()
	for i, name := range []string{"bob", "alice", "bob"} {
		err := c.Auth(sasl.NewPlainClient("", name, "wrong"))
		want := 535
		if i == 2 {
			want = 421
		}
		if code(err) != want {
			t.Fatalf("failure %d: %v, want %d", i+1, err, want)
		}
	}
	if err := c.Noop(); err == nil {
		t.Fatal("connection still open after the session limit")
	}
	// Seven more from the same address, two per session: the 10th in the
	// hour closes that session, and the next session is refused at once,
	// right password or not.
	for n := 3; n < 10; {
		c := dial()
		for range 2 {
			err := c.Auth(sasl.NewPlainClient("", "bob", "wrong"))
			n++
			if n == 10 {
				if code(err) != 421 {
					t.Fatalf("10th failure: %v, want 421", err)
				}
				break
			}
			if code(err) != 535 {
				t.Fatalf("failure %d: %v", n, err)
			}
		}
	}
	if err := dial().Auth(sasl.NewPlainClient("", "bob", "right")); code(err) != 421 {
		t.Fatalf("after 10 failures in the hour: %v, want 421", err)
	}
	log := h.log.String()
	if n := strings.Count(log, "auth failed client=127.0.0.1 user=bob mech=PLAIN"); n != 9 {
		t.Errorf("%d bob failures logged, want 9:\n%s", n, log)
	}
	if !strings.Contains(log, "auth failed client=127.0.0.1 user=alice mech=PLAIN") {
		t.Errorf("unknown user's failure not logged:\n%s", log)
	}
	if cost, err := bcrypt.Cost(dummyHashFor(users)); err != nil || cost != 6 {
		t.Errorf("unknown users cost %d, want the users' cost 6 (%v)", cost, err)
	}
}

// The shim's socket directory is for the drop group only (Postfix's public/).
func TestListenLocalPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "public")
	ln, err := ListenLocal(dir, os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o710 {
		t.Errorf("public/ is %v, want 0710", fi.Mode().Perm())
	}
	// A stale socket from a killed daemon does not stop a restart.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := ListenLocal(dir, -1)
	if err != nil {
		t.Fatalf("restart over a stale socket: %v", err)
	}
	ln2.Close()
}

// STARTTLS: the watch under TLS stops at the go-ahead, AUTH then works and
// a message goes, with no spurious refusal read from ciphertext.
func TestStartTLSSubmission(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), 4)
	cert := relaytest.SelfSignedCert(t, "relay.test")
	h := startHostile(t, Options{}, Listener{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Users: map[string][]byte{"bob": hash}})
	c, err := smtp.DialStartTLS(h.addr, &tls.Config{InsecureSkipVerify: true}) // the test's own certificate
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "bob", "right")); err != nil {
		t.Fatal(err)
	}
	body := "Subject: x\r\n\r\n" + strings.Repeat("line\r\n", 20000)
	if err := sendMessage(t, c, "bob@example.com", "carol@example.org", body); err != nil {
		t.Fatal(err)
	}
	msgs, _ := h.store.List(t.Context(), queue.Filter{})
	if len(msgs) != 1 || msgs[0].AuthUser != "bob" {
		t.Fatalf("queued %+v", msgs)
	}
	if strings.Contains(h.log.String(), " refused ") {
		t.Errorf("spurious refusal:\n%s", h.log)
	}
}

// gatedListener accepts only when the test says so: a connection can then
// wait, whole, in the kernel's backlog, as under a flood.
type gatedListener struct {
	net.Listener
	gate   chan struct{}
	closed chan struct{}
	once   *sync.Once
}

func newGated(ln net.Listener) gatedListener {
	return gatedListener{ln, make(chan struct{}, 2), make(chan struct{}), &sync.Once{}}
}

func (g gatedListener) Accept() (net.Conn, error) {
	select {
	case <-g.gate:
		return g.Listener.Accept()
	case <-g.closed:
		return nil, net.ErrClosed
	}
}

func (g gatedListener) Close() error {
	g.once.Do(func() { close(g.closed) })
	return g.Listener.Close()
}

// A loopback client that sends a whole pipelined transaction and hangs up
// before the daemon asks the kernel who it is used to pass as root (the
// kernel names an orphaned socket uid 0): root's sender_login and budget,
// or none, for anyone who closes fast. It is dropped unanswered; the next
// client is served.
func TestClosedBeforeItsOwnerIsKnown(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := newGated(inner)
	h := startHostileOn(t, Options{}, Listener{}, g)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "EHLO fast\r\nMAIL FROM:<ceo@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"+
		"Subject: forged\r\n\r\nx\r\n.\r\nQUIT\r\n")
	c.Close()
	g.gate <- struct{}{} // the closed one
	g.gate <- struct{}{} // the next, served
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	sc := smtp.NewClient(conn)
	defer sc.Close()
	if err := sendMessage(t, sc, "app@example.com", "bob@example.org", "Subject: ok\r\n\r\nhi\r\n"); err != nil {
		t.Fatal(err)
	}
	msgs, _ := h.store.List(t.Context(), queue.Filter{})
	if len(msgs) != 1 || msgs[0].Sender != "app@example.com" {
		t.Fatalf("queued %+v, want the second client's message only", msgs)
	}
	if !strings.Contains(h.log.String(), "closed before its local account could be learnt") {
		t.Errorf("the drop is not logged:\n%s", h.log.String())
	}
}

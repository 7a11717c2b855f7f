package submission

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/relay/cleanup"
)

type fixture struct {
	addr  string
	store *queue.Store
}

type staticSuppressions map[string]string

func (s staticSuppressions) Suppressed(_ context.Context, addr string, _ time.Time) (string, bool) {
	w, ok := s[addr]
	return w, ok
}

func startServer(t *testing.T, trusted string, sup Suppressions) fixture {
	return startServerWith(t, trusted, sup, nil)
}

func startServerWith(t *testing.T, trusted string, sup Suppressions, aliases map[string]string) fixture {
	t.Helper()
	st, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := cleanup.New(cleanup.Options{Hostname: "relay.test", LocalDomain: "example.com", MaxHops: 50, Aliases: aliases}, st, nil, log)
	srv := New(Options{
		Hostname:       "relay.test",
		MaxMessageSize: 2000,
		MaxRecipients:  3,
		Trusted:        []netip.Prefix{netip.MustParsePrefix(trusted)},
		Suppressions:   sup,
	}, c, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(t.Context(), ln, Listener{}) }()
	t.Cleanup(func() {
		ln.Close()
		srv.Shutdown(t.Context())
		<-done
		st.Close()
	})
	return fixture{addr: ln.Addr().String(), store: st}
}

func dialFrom(t *testing.T, src, addr string) *smtp.Client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	if err == nil {
		return 250
	}
	return -1
}

// Open-relay probes come from 127.0.0.5 while only 127.0.0.1 is trusted
// (issue 3's check): every recipient form must get 554 5.7.1.
func TestNoOpenRelay(t *testing.T) {
	f := startServer(t, "127.0.0.1/32", nil)
	for _, rcpt := range []string{
		"victim@example.org",
		"root@example.com", // local_domain
		"postmaster@relay.test",
		"victim%example.org@example.com", // %-hack
		"@relay.test:victim@example.org", // source route
		"victim@[127.0.0.1]",
		`"victim@example.org"@example.com`,
	} {
		t.Run(rcpt, func(t *testing.T) {
			c := dialFrom(t, "127.0.0.5", f.addr)
			if err := c.Mail("spammer@example.net", nil); err != nil {
				t.Fatal(err)
			}
			err := c.Rcpt(rcpt, nil)
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
				// A source route may also be refused as a syntax error: any
				// 5xx is a refusal, but we want 554 5.7.1 everywhere.
				t.Fatalf("RCPT %s from untrusted = %v, want 554 5.7.1", rcpt, err)
			}
		})
	}
	// The same probes from the trusted address are accepted.
	c := dialFrom(t, "127.0.0.1", f.addr)
	if err := c.Mail("app@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("someone@example.org", nil); err != nil {
		t.Fatalf("trusted client refused: %v", err)
	}
}

func TestEnvelopeErrors(t *testing.T) {
	f := startServer(t, "127.0.0.0/8", staticSuppressions{"gone@example.org": "recipient is suppressed (user unknown since 2026-11-01)"})
	tests := []struct {
		name string
		run  func(c *smtp.Client) error
		want int
	}{
		{"malformed sender", func(c *smtp.Client) error { return c.Mail("a..b@example.com", nil) }, 501},
		{"malformed recipient", func(c *smtp.Client) error {
			c.Mail("a@example.com", nil)
			return c.Rcpt("x@exa mple.com", nil)
		}, 501},
		{"recipient without domain", func(c *smtp.Client) error {
			c.Mail("a@example.com", nil)
			return c.Rcpt("root", nil)
		}, 501},
		{"suppressed recipient", func(c *smtp.Client) error {
			c.Mail("a@example.com", nil)
			return c.Rcpt("gone@example.org", nil)
		}, 550},
		{"too many recipients", func(c *smtp.Client) error {
			c.Mail("a@example.com", nil)
			for i := range 3 {
				if err := c.Rcpt("r"+string(rune('a'+i))+"@example.org", nil); err != nil {
					return err
				}
			}
			return c.Rcpt("rd@example.org", nil)
		}, 452},
		{"oversize declared", func(c *smtp.Client) error { return c.Mail("a@example.com", &smtp.MailOptions{Size: 5000}) }, 552},
		{"oversize sent", func(c *smtp.Client) error {
			c.Mail("a@example.com", nil)
			c.Rcpt("b@example.org", nil)
			w, err := c.Data()
			if err != nil {
				return err
			}
			w.Write([]byte("Subject: big\r\n\r\n" + strings.Repeat("x", 3000) + "\r\n"))
			return w.Close()
		}, 552},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialFrom(t, "127.0.0.1", f.addr)
			if got := code(tt.run(c)); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

// TestSmugglingOverTheWire sends each variant through a raw socket: go-smtp
// must not end DATA early, and facteur must refuse the message.
func TestSmugglingOverTheWire(t *testing.T) {
	f := startServer(t, "127.0.0.0/8", nil)
	variants := map[string]string{
		"<LF>.<LF>": "\n.\n", "<CR>.<CR>": "\r.\r", "<CR>.<LF>": "\r.\n", "<LF>.<CR>": "\n.\r",
		"<LF>.<CR><LF>": "\n.\r\n", "<CR><LF>.<LF>": "\r\n.\n", "<CR>.<CR><LF>": "\r.\r\n",
		"<CR><LF>.<CR>": "\r\n.\r", "<CR><LF>.<NUL><CR><LF>": "\r\n.\x00\r\n",
	}
	for name, v := range variants {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			script := "EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n" +
				"Subject: s\r\n\r\nhello" + v + "MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n"
			if _, err := conn.Write([]byte(script)); err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(conn)
			replies := string(out)
			if strings.Contains(replies, "queued as") {
				t.Fatalf("smuggled message accepted:\n%s", replies)
			}
			if !strings.Contains(replies, "550 5.") && !strings.Contains(replies, "554 5.") {
				t.Fatalf("no refusal:\n%s", replies)
			}
		})
	}
	msgs, err := f.store.List(t.Context(), queue.Filter{})
	if err != nil || len(msgs) != 0 {
		t.Fatalf("queue holds %d messages (%v)", len(msgs), err)
	}
}

// BDAT chunks are taken as they are (RFC 3030: no dot-stuffing, any
// boundary): a chunk that ends between the CR and LF of a "." line made the
// smuggling watch, which sees "<CR><LF>.<CR>BDAT" on the wire, refuse a
// legitimate message with 550 5.5.2. What is smuggling in the message
// itself is still refused, by cleanup.
func TestBDATChunks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
		want   string // the stored body's end; "" for a refusal
	}{
		{"dot line cut after its CR", []string{"Subject: s\r\n\r\nhello\r\n.\r", "\nbye\r\n"}, "hello\r\n.\r\nbye\r\n"},
		{"dot line cut before its dot", []string{"Subject: s\r\n\r\nhello\r\n", ".\r\n..\r\n"}, "hello\r\n.\r\n..\r\n"},
		{"bare LF around a dot", []string{"Subject: s\r\n\r\nhello\n.\nsmuggled\r\n"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startServer(t, "127.0.0.0/8", nil)
			conn, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			script := "EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
			for i, c := range tc.chunks {
				last := ""
				if i == len(tc.chunks)-1 {
					last = " LAST"
				}
				script += fmt.Sprintf("BDAT %d%s\r\n%s", len(c), last, c)
			}
			if _, err := conn.Write([]byte(script + "QUIT\r\n")); err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(conn)
			msgs, err := f.store.List(t.Context(), queue.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if len(msgs) != 0 || !strings.Contains(string(out), "550 5.5.2") {
					t.Fatalf("want 550 5.5.2 and nothing queued; %d queued, replies:\n%s", len(msgs), out)
				}
				return
			}
			if len(msgs) != 1 {
				t.Fatalf("%d messages queued, want 1; replies:\n%s", len(msgs), out)
			}
			body, err := f.store.Body(t.Context(), msgs[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(string(body), tc.want) {
				t.Errorf("stored body %q, want it to end with %q", body, tc.want)
			}
		})
	}
}

// A client that aborts a BDAT transaction (RSET after a chunk) and sends
// the next message on the same connection, pipelined, gets that message's
// own reply: go-smtp runs the aborted transaction's Data in a goroutine
// that hands its result on through a connection field after Data returns,
// and without waitData the next transaction received "554 message
// transmission aborted" for a message queued all the same (the client then
// sends it again), and the two Data calls shared the session's fields.
func TestBDATAbortThenReuse(t *testing.T) {
	f := startServer(t, "127.0.0.0/8", nil)
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	const rounds = 40
	aborted, kept := "Subject: aborted\r\n\r\nhalf", "Subject: kept\r\n\r\nwhole\r\n"
	script := "EHLO x\r\n"
	for i := range rounds {
		// Not an empty chunk (BDAT 0): go-smtp then goes on before the
		// aborted Data starts, and its own goroutine races it (package bdat).
		chunk := aborted
		script += fmt.Sprintf("MAIL FROM:<a@example.com>\r\nRCPT TO:<b%d@example.org>\r\nBDAT %d\r\n%sRSET\r\n", i, len(chunk), chunk)
		script += fmt.Sprintf("MAIL FROM:<a@example.com>\r\nRCPT TO:<c%d@example.org>\r\nBDAT %d LAST\r\n%s", i, len(kept), kept)
	}
	go conn.Write([]byte(script + "QUIT\r\n"))
	out, _ := io.ReadAll(conn)
	if n := strings.Count(string(out), "250 2.0.0 Ok: queued as "); n != rounds || strings.Contains(string(out), "aborted") {
		t.Errorf("%d of %d messages told queued; replies:\n%s", n, rounds, out)
	}
	msgs, err := f.store.List(t.Context(), queue.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != rounds {
		t.Errorf("%d messages queued, want %d", len(msgs), rounds)
	}
	for _, m := range msgs {
		if r := m.Recipients[0].Address; !strings.HasPrefix(r, "c") {
			t.Errorf("the aborted transaction's recipient %s was queued", r)
		}
	}
}

func TestHELOAndQueuedReply(t *testing.T) {
	f := startServer(t, "127.0.0.0/8", nil)
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write([]byte("HELO smtp-source\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"))
	out, _ := io.ReadAll(conn)
	if !strings.Contains(string(out), "250 2.0.0 Ok: queued as ") {
		t.Fatalf("replies:\n%s", out)
	}
	msgs, _ := f.store.List(t.Context(), queue.Filter{})
	if len(msgs) != 1 || msgs[0].Recipients[0].Status != queue.Queued {
		t.Fatalf("queue: %+v", msgs)
	}
}

// A suppressed member of an alias is left out alone; the others still get
// the mail, and an alias whose members are all suppressed is refused.
func TestSuppressedAliasMember(t *testing.T) {
	sup := staticSuppressions{"gone@example.org": "recipient is suppressed (user unknown since 2026-11-01)", "old@example.net": "recipient is suppressed (user unknown since 2026-11-01)"}
	f := startServerWith(t, "127.0.0.0/8", sup, map[string]string{"root": "ops@example.org, gone@example.org", "legacy": "gone@example.org, old@example.net"})
	c := dialFrom(t, "127.0.0.1", f.addr)
	if err := c.Mail("cron@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("root@example.com", nil); err != nil {
		t.Fatalf("alias with one good member refused: %v", err)
	}
	if got := code(c.Rcpt("legacy@example.com", nil)); got != 550 {
		t.Fatalf("alias with only suppressed members: %d, want 550", got)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: x\r\n\r\ny\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	msgs, _ := f.store.List(t.Context(), queue.Filter{})
	if len(msgs) != 1 || len(msgs[0].Recipients) != 1 || msgs[0].Recipients[0].Address != "ops@example.org" {
		t.Fatalf("queued %+v, want ops@example.org only", msgs)
	}
}

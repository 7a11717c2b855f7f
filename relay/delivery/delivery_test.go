package delivery_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/relay/delivery"
	"facteur/relay/relaytest"
)

const hostname = "relay.facteur.test"

// body has lines starting with a dot, a lone dot and 8-bit bytes, so that
// dot-stuffing and byte fidelity are both exercised.
var body = []byte("From: a@facteur.test\r\nTo: b@dest.test\r\nSubject: t\r\n\r\n" +
	"line one\r\n.leading dot\r\n.\r\n..two dots\r\ncaf\xc3\xa9\r\n")

func opts(port int) delivery.Options {
	return delivery.Options{Hostname: hostname, Port: port}
}

func dial(t *testing.T, s *relaytest.Sink, host string, o delivery.Options) *delivery.Conn {
	t.Helper()
	ap := netip.MustParseAddrPort(s.Addr())
	o.Port = int(ap.Port())
	c, err := delivery.Dial(t.Context(), host, ap.Addr(), o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func msg(rcpts ...string) delivery.Message {
	return delivery.Message{From: "app@facteur.test", Rcpts: rcpts, Body: body}
}

func selfSignedTLS(t *testing.T, names ...string) (*tls.Config, *x509.CertPool) {
	cert := relaytest.SelfSignedCert(t, names...)
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, pool
}

func TestPlainDelivery(t *testing.T) {
	s := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{})
	o := opts(0)
	o.SourceIP = netip.MustParseAddr("127.0.0.3")
	c := dial(t, s, "mx.dest.test.", o)

	res, err := c.Send(t.Context(), msg("b@dest.test"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !res.Rcpts[0].Delivered() {
		t.Fatalf("not delivered: %+v", res)
	}
	if got := res.Data.String(); got != "250 2.0.0 OK: queued" {
		t.Errorf("Data reply %q, want %q", got, "250 2.0.0 OK: queued")
	}
	if res.Note != "" {
		t.Errorf("Note %q, want none", res.Note)
	}
	if c.Host() != "mx.dest.test" {
		t.Errorf("Host %q", c.Host())
	}
	if _, ok := c.TLS(); ok {
		t.Error("TLS reported on a plaintext session")
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("sink got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if !bytes.Equal(m.Body, body) {
		t.Errorf("body differs:\n got %q\nwant %q", m.Body, body)
	}
	if m.From != "app@facteur.test" || len(m.Rcpts) != 1 || m.Rcpts[0] != "b@dest.test" {
		t.Errorf("envelope %q %q", m.From, m.Rcpts)
	}
	if m.EHLO != hostname {
		t.Errorf("EHLO %q, want %q", m.EHLO, hostname)
	}
	if host, _, _ := net.SplitHostPort(m.RemoteAddr); host != "127.0.0.3" {
		t.Errorf("connection from %s, want source 127.0.0.3", m.RemoteAddr)
	}
	if m.TLS {
		t.Error("sink saw TLS")
	}
}

func TestMixedRecipientReplies(t *testing.T) {
	replies := map[string]error{
		"temp@dest.test":   &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"},
		"nobody@dest.test": &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
	}
	s := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{
		Rcpt: func(a string) error { return replies[a] },
	})
	c := dial(t, s, "mx.dest.test", opts(0))

	res, err := c.Send(t.Context(), msg("ok1@dest.test", "temp@dest.test", "nobody@dest.test", "ok2@dest.test", "bad\r\nRSET@dest.test"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	want := []struct {
		reply     string
		delivered bool
		local     bool
	}{
		{"250 2.0.0 OK: queued", true, false},
		{"450 4.2.1 mailbox busy", false, false},
		{"550 5.1.1 no such user", false, false},
		{"250 2.0.0 OK: queued", true, false},
		{"501 5.1.3 bad recipient address: control character", false, true},
	}
	for i, w := range want {
		r := res.Rcpts[i]
		if r.Reply.String() != w.reply || r.Delivered() != w.delivered || r.Reply.Local != w.local {
			t.Errorf("rcpt %q: reply %q delivered=%v local=%v, want %q %v %v", r.Addr, r.Reply, r.Delivered(), r.Reply.Local, w.reply, w.delivered, w.local)
		}
	}
	if !res.Rcpts[1].Reply.Temporary() || !res.Rcpts[2].Reply.Permanent() {
		t.Error("450 should be temporary and 550 permanent")
	}
	msgs := s.Messages()
	if len(msgs) != 1 || strings.Join(msgs[0].Rcpts, ",") != "ok1@dest.test,ok2@dest.test" {
		t.Fatalf("sink got %+v, want one message to ok1, ok2", msgs)
	}
}

func TestAllRecipientsRefusedThenReuse(t *testing.T) {
	s := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{
		Rcpt: func(a string) error {
			if strings.HasPrefix(a, "gone") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "gone"}
			}
			return nil
		},
	})
	c := dial(t, s, "mx.dest.test", opts(0))
	res, err := c.Send(t.Context(), msg("gone1@dest.test", "gone2@dest.test"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if res.Data.Known() {
		t.Errorf("DATA sent with no recipient accepted: %v", res.Data)
	}
	// The transaction is open (MAIL accepted): Send refuses until Reset.
	if _, err := c.Send(t.Context(), msg("here@dest.test")); err == nil {
		t.Fatal("Send with an open transaction succeeded")
	}
	if err := c.Reset(); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	res, err = c.Send(t.Context(), msg("here@dest.test"))
	if err != nil || !res.Rcpts[0].Delivered() {
		t.Fatalf("second Send: %+v, %v", res, err)
	}
	if n := s.Connections(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestMessageRefusedAfterData(t *testing.T) {
	s := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{
		Data: func(rcpts []string, body []byte) error {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "[TSS09] spam"}
		},
		Rcpt: func(a string) error {
			if a == "gone@dest.test" {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "gone"}
			}
			return nil
		},
	})
	c := dial(t, s, "mx.dest.test", opts(0))
	res, err := c.Send(t.Context(), msg("a@dest.test", "gone@dest.test", "b@dest.test"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	want := []string{"554 5.7.1 [TSS09] spam", "550 5.1.1 gone", "554 5.7.1 [TSS09] spam"}
	for i, r := range res.Rcpts {
		if r.Delivered() || r.Reply.String() != want[i] {
			t.Errorf("%s: %q delivered=%v, want %q", r.Addr, r.Reply, r.Delivered(), want[i])
		}
	}
	if res.Data.String() != want[0] || c.Messages() != 1 || !c.Usable() {
		t.Errorf("Data %q Messages %d Usable %v", res.Data, c.Messages(), c.Usable())
	}
}

func TestConnectionReuse(t *testing.T) {
	s := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{})
	c := dial(t, s, "mx.dest.test", opts(0))
	for i := range 3 {
		if i > 0 {
			if err := c.Reset(); err != nil {
				t.Fatalf("Reset: %v", err)
			}
		}
		res, err := c.Send(t.Context(), msg(fmt.Sprintf("r%d@dest.test", i)))
		if err != nil || !res.Rcpts[0].Delivered() {
			t.Fatalf("Send %d: %+v, %v", i, res, err)
		}
	}
	if c.Messages() != 3 || !c.Usable() {
		t.Errorf("Messages %d Usable %v, want 3 true", c.Messages(), c.Usable())
	}
	for _, m := range s.Messages() {
		if m.Conn != 1 {
			t.Errorf("message to %v on connection %d, want 1", m.Rcpts, m.Conn)
		}
	}
	if n := s.Connections(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func Test421ClosesConnection(t *testing.T) {
	rp001 := &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "[RP-001] try later"}
	tests := []struct {
		name string
		sink relaytest.SinkOptions
		// first message, then second message on the same connection
		wantFirst  string
		wantSecond string
	}{
		{"at RCPT", relaytest.SinkOptions{Rcpt: func(a string) error {
			if a == "b@dest.test" {
				return rp001
			}
			return nil
		}}, "421 4.7.0 [RP-001] try later", ""},
		{"after MaxMessages", relaytest.SinkOptions{MaxMessages: 1}, "250 2.0.0 OK: queued", "421 4.7.0 Too many messages on this connection"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := relaytest.NewSink(t, "127.0.0.2:0", tc.sink)
			c := dial(t, s, "mx.dest.test", opts(0))
			res, err := c.Send(t.Context(), msg("a@dest.test", "b@dest.test", "c@dest.test"))
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			for _, r := range res.Rcpts {
				if r.Reply.String() != tc.wantFirst {
					t.Errorf("%s: %q, want %q", r.Addr, r.Reply, tc.wantFirst)
				}
			}
			if tc.wantSecond == "" {
				if c.Usable() {
					t.Error("Usable after 421")
				}
				return
			}
			if err := c.Reset(); err != nil {
				t.Fatal(err)
			}
			res, err = c.Send(t.Context(), msg("d@dest.test"))
			if err != nil {
				t.Fatalf("second Send: %v", err)
			}
			if got := res.Rcpts[0].Reply.String(); got != tc.wantSecond || res.Mail.String() != tc.wantSecond {
				t.Errorf("second: rcpt %q mail %q, want %q", got, res.Mail, tc.wantSecond)
			}
			if c.Usable() {
				t.Error("Usable after 421")
			}
			if _, err := c.Send(t.Context(), msg("e@dest.test")); !errors.Is(err, delivery.ErrUnusable) {
				t.Errorf("Send after 421: %v, want ErrUnusable", err)
			}
		})
	}
}

func TestBrokenTransaction(t *testing.T) {
	// Hooks block on release, closed before the sink's cleanup waits for
	// its connections; reached tells the test that the sink holds the
	// message.
	tests := []struct {
		name     string
		sink     func(release <-chan struct{}, reached chan<- struct{}) relaytest.SinkOptions
		timeouts delivery.Timeouts
		cancel   bool // cancel ctx once reached is closed
		bigBody  bool // 4 MiB instead of a few lines
		phases   []delivery.Phase
		is       error
	}{
		{"drop mid-DATA", func(<-chan struct{}, chan<- struct{}) relaytest.SinkOptions {
			return relaytest.SinkOptions{DropMidData: true}
		}, delivery.Timeouts{}, false, false, []delivery.Phase{delivery.PhaseBody, delivery.PhaseDataEnd}, nil},
		{"stall past data_end", func(release <-chan struct{}, _ chan<- struct{}) relaytest.SinkOptions {
			return relaytest.SinkOptions{StallData: release}
		}, delivery.Timeouts{DataEnd: 100 * time.Millisecond}, false, false, []delivery.Phase{delivery.PhaseDataEnd}, delivery.ErrTimeout},
		{"stall past rcpt", func(release <-chan struct{}, _ chan<- struct{}) relaytest.SinkOptions {
			return relaytest.SinkOptions{Rcpt: func(string) error { <-release; return nil }}
		}, delivery.Timeouts{Rcpt: 100 * time.Millisecond}, false, false, []delivery.Phase{delivery.PhaseRcpt}, delivery.ErrTimeout},
		{"ctx cancelled while the server holds the message", func(release <-chan struct{}, reached chan<- struct{}) relaytest.SinkOptions {
			return relaytest.SinkOptions{Data: func([]string, []byte) error {
				close(reached)
				<-release
				return nil
			}}
		}, delivery.Timeouts{}, true, false, []delivery.Phase{delivery.PhaseDataEnd}, context.Canceled},
		{"server stops reading: block timeout", func(release <-chan struct{}, _ chan<- struct{}) relaytest.SinkOptions {
			return relaytest.SinkOptions{StallReading: release}
		}, delivery.Timeouts{Block: 100 * time.Millisecond}, false, true, []delivery.Phase{delivery.PhaseBody}, delivery.ErrTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release, reached := make(chan struct{}), make(chan struct{})
			s := relaytest.NewSink(t, "127.0.0.2:0", tc.sink(release, reached))
			t.Cleanup(func() { close(release) }) // runs before the sink's cleanup
			o := opts(0)
			o.Timeouts = tc.timeouts
			c := dial(t, s, "mx.dest.test", o)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.cancel {
				go func() {
					select {
					case <-reached:
						cancel()
					case <-ctx.Done():
					}
				}()
			}
			m := msg("a@dest.test", "b@dest.test")
			if tc.bigBody {
				// Far more than the sink's small receive window and our
				// send buffer: a server that does not read blocks the writes.
				m.Body = bytes.Repeat([]byte(strings.Repeat("x", 1022)+"\r\n"), 4<<10)
			}
			res, err := c.Send(ctx, m)
			var de *delivery.Error
			if !errors.As(err, &de) {
				t.Fatalf("Send error %v, want *delivery.Error", err)
			}
			if !contains(tc.phases, de.Phase) {
				t.Errorf("phase %s, want one of %v (%v)", de.Phase, tc.phases, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v, want %v", err, tc.is)
			}
			for _, r := range res.Rcpts {
				if r.Delivered() || r.Reply.Known() {
					t.Errorf("%s: %v delivered=%v, want unknown", r.Addr, r.Reply, r.Delivered())
				}
			}
			if c.Usable() {
				t.Error("Usable after a broken transaction")
			}
			if n := len(s.Messages()); n != 0 {
				t.Errorf("sink recorded %d messages", n)
			}
		})
	}
}

func contains(ps []delivery.Phase, p delivery.Phase) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func TestDialFailures(t *testing.T) {
	never := make(chan struct{})
	t.Cleanup(func() { close(never) })
	tests := []struct {
		name     string
		sink     relaytest.SinkOptions
		timeouts delivery.Timeouts
		phase    delivery.Phase
		code     int // the *smtp.SMTPError expected, 0 for none
		is       error
	}{
		{"554 banner", relaytest.SinkOptions{Greeting: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no mail from you"}},
			delivery.Timeouts{}, delivery.PhaseGreeting, 554, nil},
		{"421 greeting", relaytest.SinkOptions{Greeting: &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "busy"}},
			delivery.Timeouts{}, delivery.PhaseGreeting, 421, nil},
		{"greeting stalls", relaytest.SinkOptions{GreetingStall: never},
			delivery.Timeouts{Greeting: 100 * time.Millisecond}, delivery.PhaseGreeting, 0, delivery.ErrTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := relaytest.NewSink(t, "127.0.0.2:0", tc.sink)
			o := opts(int(netip.MustParseAddrPort(s.Addr()).Port()))
			o.Timeouts = tc.timeouts
			_, err := delivery.Dial(t.Context(), "mx.dest.test", netip.MustParseAddr("127.0.0.2"), o)
			var de *delivery.Error
			if !errors.As(err, &de) || de.Phase != tc.phase {
				t.Fatalf("Dial: %v, want a %s error", err, tc.phase)
			}
			var se *smtp.SMTPError
			if got := errors.As(err, &se); got != (tc.code != 0) || (got && se.Code != tc.code) {
				t.Errorf("Dial: %v, want SMTP code %d", err, tc.code)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Dial: %v, want %v", err, tc.is)
			}
		})
	}

	t.Run("ctx deadline while the greeting stalls", func(t *testing.T) {
		s := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{GreetingStall: never})
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := delivery.Dial(ctx, "mx.dest.test", netip.MustParseAddr("127.0.0.2"), opts(int(netip.MustParseAddrPort(s.Addr()).Port())))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial: %v, want context.DeadlineExceeded", err)
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		// Held bound, never listening: refused for the whole subtest.
		port := int(netip.MustParseAddrPort(relaytest.RefusingAddr(t, "127.0.0.2")).Port())
		_, err := delivery.Dial(t.Context(), "mx.dest.test", netip.MustParseAddr("127.0.0.2"), opts(port))
		var de *delivery.Error
		if !errors.As(err, &de) || de.Phase != delivery.PhaseConnect {
			t.Fatalf("Dial: %v, want a connect error", err)
		}
	})
}

func TestOptionsRejected(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.2")
	tests := []struct {
		name string
		o    delivery.Options
	}{
		{"no hostname", delivery.Options{}},
		{"hostname with CRLF", delivery.Options{Hostname: "a\r\nMAIL FROM:<x>"}},
		{"NoTLS and RequireTLS", delivery.Options{Hostname: hostname, NoTLS: true, RequireTLS: true}},
		{"negative timeout", delivery.Options{Hostname: hostname, Timeouts: delivery.Timeouts{Rcpt: -time.Second}}},
		{"port out of range", delivery.Options{Hostname: hostname, Port: 70000}},
		{"auth without username", delivery.Options{Hostname: hostname, Auth: &delivery.Auth{Password: "x"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := delivery.Dial(t.Context(), "mx", ip, tc.o); err == nil {
				c.Close()
				t.Fatal("Dial accepted bad options")
			}
		})
	}
}

func TestSTARTTLS(t *testing.T) {
	cfg, pool := selfSignedTLS(t, "mx.dest.test")
	tests := []struct {
		name         string
		o            delivery.Options
		wantVerified bool
		wantErr      error
	}{
		{"self-signed, opportunistic", delivery.Options{}, false, nil},
		{"trusted root", delivery.Options{RootCAs: pool}, true, nil},
		{"trusted root, verification required", delivery.Options{RootCAs: pool, VerifyTLS: true}, true, nil},
		{"self-signed, verification required", delivery.Options{VerifyTLS: true}, false, delivery.ErrCertificate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{TLS: cfg})
			o := tc.o
			o.Hostname = hostname
			o.Port = int(netip.MustParseAddrPort(s.Addr()).Port())
			c, err := delivery.Dial(t.Context(), "mx.dest.test.", netip.MustParseAddr("127.0.0.2"), o)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Dial: %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			info, ok := c.TLS()
			if !ok {
				t.Fatal("no TLS")
			}
			if info.Version != "TLS1.3" || info.Cipher == "" || info.Verified != tc.wantVerified ||
				info.PeerDN != "CN=mx.dest.test,O=facteur relaytest" || (info.VerifyError == "") != tc.wantVerified {
				t.Errorf("TLS info %+v", info)
			}
			if c.TLSFallback() != nil {
				t.Errorf("TLSFallback %v", c.TLSFallback())
			}
			res, err := c.Send(t.Context(), msg("b@dest.test"))
			if err != nil || !res.Rcpts[0].Delivered() {
				t.Fatalf("Send: %+v %v", res, err)
			}
			m := s.Messages()[0]
			if !m.TLS || m.TLSVersion != tls.VersionTLS13 || m.EHLO != hostname || !bytes.Equal(m.Body, body) {
				t.Errorf("sink saw TLS=%v version=%x EHLO=%q", m.TLS, m.TLSVersion, m.EHLO)
			}
		})
	}
}

func TestTLSFailureFallsBackToPlaintext(t *testing.T) {
	tests := []struct {
		name      string
		o         delivery.Options
		wantErr   error
		wantConns int
	}{
		{"opportunistic: plaintext retry", delivery.Options{}, nil, 2},
		{"TLS required: no retry", delivery.Options{RequireTLS: true}, delivery.ErrTLSFailed, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{BreakTLS: true})
			o := tc.o
			o.Hostname = hostname
			o.Port = int(netip.MustParseAddrPort(s.Addr()).Port())
			c, err := delivery.Dial(t.Context(), "mx.dest.test", netip.MustParseAddr("127.0.0.2"), o)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Dial: %v, want %v", err, tc.wantErr)
				}
			} else {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.Close()
				if _, ok := c.TLS(); ok {
					t.Error("TLS reported after fallback")
				}
				if !errors.Is(c.TLSFallback(), delivery.ErrTLSFailed) {
					t.Errorf("TLSFallback %v, want ErrTLSFailed", c.TLSFallback())
				}
				res, err := c.Send(t.Context(), msg("b@dest.test"))
				if err != nil || !res.Rcpts[0].Delivered() {
					t.Fatalf("Send: %+v %v", res, err)
				}
				if m := s.Messages()[0]; m.TLS || m.Conn != 2 {
					t.Errorf("delivered with TLS=%v on connection %d, want plaintext on 2", m.TLS, m.Conn)
				}
			}
			if n := s.Connections(); n != tc.wantConns {
				t.Errorf("%d connections, want %d", n, tc.wantConns)
			}
		})
	}
}

func TestTLSModes(t *testing.T) {
	cfg, _ := selfSignedTLS(t, "mx.dest.test")
	tests := []struct {
		name    string
		sink    relaytest.SinkOptions
		o       delivery.Options
		wantTLS bool
		wantErr error
	}{
		{"NoTLS ignores STARTTLS", relaytest.SinkOptions{TLS: cfg}, delivery.Options{NoTLS: true}, false, nil},
		{"STARTTLS not offered", relaytest.SinkOptions{}, delivery.Options{}, false, nil},
		{"STARTTLS not offered but required", relaytest.SinkOptions{}, delivery.Options{RequireTLS: true}, false, delivery.ErrTLSRequired},
		{"implicit TLS", relaytest.SinkOptions{TLS: cfg, ImplicitTLS: true}, delivery.Options{ImplicitTLS: true}, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := relaytest.NewSink(t, "127.0.0.2:0", tc.sink)
			o := tc.o
			o.Hostname = hostname
			o.Port = int(netip.MustParseAddrPort(s.Addr()).Port())
			c, err := delivery.Dial(t.Context(), "mx.dest.test", netip.MustParseAddr("127.0.0.2"), o)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Dial: %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if _, ok := c.TLS(); ok != tc.wantTLS {
				t.Errorf("TLS %v, want %v", ok, tc.wantTLS)
			}
			res, err := c.Send(t.Context(), msg("b@dest.test"))
			if err != nil || !res.Rcpts[0].Delivered() {
				t.Fatalf("Send: %+v %v", res, err)
			}
			if m := s.Messages()[0]; m.TLS != tc.wantTLS {
				t.Errorf("sink TLS %v, want %v", m.TLS, tc.wantTLS)
			}
		})
	}
}

func TestRelayhostAuth(t *testing.T) {
	cfg, pool := selfSignedTLS(t, "smtp.provider.test")
	var auths atomic.Int32 // AUTH commands the sinks saw
	check := func(u, p string) error {
		auths.Add(1)
		if u == "web1" && p == "s3cret" {
			return nil
		}
		return errors.New("bad credentials")
	}
	tests := []struct {
		name      string
		sink      relaytest.SinkOptions
		o         delivery.Options
		wantErr   error
		wantCode  int
		wantPhase delivery.Phase
	}{
		{"implicit TLS", relaytest.SinkOptions{TLS: cfg, ImplicitTLS: true, Auth: check},
			delivery.Options{ImplicitTLS: true, RootCAs: pool, VerifyTLS: true, Auth: &delivery.Auth{Username: "web1", Password: "s3cret"}}, nil, 0, ""},
		{"STARTTLS", relaytest.SinkOptions{TLS: cfg, Auth: check},
			delivery.Options{RequireTLS: true, RootCAs: pool, Auth: &delivery.Auth{Username: "web1", Password: "s3cret"}}, nil, 0, ""},
		{"STARTTLS, TLS 1.2 minimum", relaytest.SinkOptions{TLS: cfg, Auth: check},
			delivery.Options{RequireTLS: true, RootCAs: pool, VerifyTLS: true, MinTLSVersion: tls.VersionTLS12, Auth: &delivery.Auth{Username: "web1", Password: "s3cret"}}, nil, 0, ""},
		{"certificate not verified: credentials withheld", relaytest.SinkOptions{TLS: cfg, Auth: check},
			delivery.Options{RequireTLS: true, Auth: &delivery.Auth{Username: "web1", Password: "s3cret"}}, delivery.ErrAuthUnavailable, 0, delivery.PhaseAuth},
		{"certificate not verified, AuthUnverified", relaytest.SinkOptions{TLS: cfg, Auth: check},
			delivery.Options{RequireTLS: true, AuthUnverified: true, Auth: &delivery.Auth{Username: "web1", Password: "s3cret"}}, nil, 0, ""},
		{"wrong password", relaytest.SinkOptions{TLS: cfg, Auth: check},
			delivery.Options{RequireTLS: true, RootCAs: pool, Auth: &delivery.Auth{Username: "web1", Password: "guess"}}, nil, 535, delivery.PhaseAuth},
		{"no TLS: credentials withheld", relaytest.SinkOptions{Auth: check},
			delivery.Options{Auth: &delivery.Auth{Username: "web1", Password: "s3cret"}}, delivery.ErrAuthUnavailable, 0, delivery.PhaseAuth},
		{"server without AUTH", relaytest.SinkOptions{TLS: cfg},
			delivery.Options{RootCAs: pool, Auth: &delivery.Auth{Username: "web1", Password: "s3cret"}}, delivery.ErrAuthUnavailable, 0, delivery.PhaseAuth},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := relaytest.NewSink(t, "127.0.0.2:0", tc.sink)
			o := tc.o
			o.Hostname = hostname
			o.Port = int(netip.MustParseAddrPort(s.Addr()).Port())
			before := auths.Load()
			c, err := delivery.Dial(t.Context(), "smtp.provider.test", netip.MustParseAddr("127.0.0.2"), o)
			if errors.Is(tc.wantErr, delivery.ErrAuthUnavailable) && auths.Load() != before {
				t.Errorf("the server saw AUTH although the client withheld it")
			}
			if tc.wantPhase != "" {
				var de *delivery.Error
				if !errors.As(err, &de) || de.Phase != tc.wantPhase {
					t.Fatalf("Dial: %v, want a %s error", err, tc.wantPhase)
				}
				var se *smtp.SMTPError
				if tc.wantCode != 0 && (!errors.As(err, &se) || se.Code != tc.wantCode) {
					t.Errorf("Dial: %v, want code %d", err, tc.wantCode)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("Dial: %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			res, err := c.Send(t.Context(), msg("b@dest.test"))
			if err != nil || !res.Rcpts[0].Delivered() {
				t.Fatalf("Send: %+v %v", res, err)
			}
			if m := s.Messages()[0]; m.AuthUser != "web1" || !m.TLS {
				t.Errorf("sink: AuthUser %q TLS %v", m.AuthUser, m.TLS)
			}
		})
	}
}

func TestSMTPUTF8And8BITMIME(t *testing.T) {
	tests := []struct {
		name      string
		sink      relaytest.SinkOptions
		m         delivery.Message
		wantReply string // every recipient's
		wantLocal bool
		wantNote  bool
		wantUTF8  bool // MAIL FROM carried SMTPUTF8
		want8Bit  bool // MAIL FROM carried BODY=8BITMIME
	}{
		{"UTF-8 recipient, server without SMTPUTF8", relaytest.SinkOptions{},
			delivery.Message{From: "app@facteur.test", Rcpts: []string{"josé@dest.test"}, Body: body},
			"553 5.6.7 message needs SMTPUTF8 but mx.dest.test[127.0.0.2] does not support SMTPUTF8", true, false, false, false},
		{"flagged SMTPUTF8, server without it", relaytest.SinkOptions{},
			delivery.Message{From: "app@facteur.test", Rcpts: []string{"b@dest.test"}, Body: body, SMTPUTF8: true},
			"553 5.6.7 message needs SMTPUTF8 but mx.dest.test[127.0.0.2] does not support SMTPUTF8", true, false, false, false},
		{"UTF-8 recipient, server with SMTPUTF8", relaytest.SinkOptions{SMTPUTF8: true},
			delivery.Message{From: "app@facteur.test", Rcpts: []string{"josé@dest.test"}, Body: body},
			"250 2.0.0 OK: queued", false, false, true, true},
		{"8-bit body, server with 8BITMIME", relaytest.SinkOptions{},
			delivery.Message{From: "app@facteur.test", Rcpts: []string{"b@dest.test"}, Body: body, EightBit: true},
			"250 2.0.0 OK: queued", false, false, false, true},
		{"8-bit body, server without 8BITMIME", relaytest.SinkOptions{No8BITMIME: true},
			delivery.Message{From: "app@facteur.test", Rcpts: []string{"b@dest.test"}, Body: body, EightBit: true},
			"250 2.0.0 OK: queued", false, true, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := relaytest.NewSink(t, "127.0.0.2:0", tc.sink)
			c := dial(t, s, "mx.dest.test", opts(0))
			res, err := c.Send(t.Context(), tc.m)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			for _, r := range res.Rcpts {
				if r.Reply.String() != tc.wantReply || r.Reply.Local != tc.wantLocal {
					t.Errorf("%s: %q local=%v, want %q local=%v", r.Addr, r.Reply, r.Reply.Local, tc.wantReply, tc.wantLocal)
				}
			}
			if (res.Note != "") != tc.wantNote {
				t.Errorf("Note %q, want one: %v", res.Note, tc.wantNote)
			}
			msgs := s.Messages()
			if !res.Rcpts[0].Delivered() {
				if len(msgs) != 0 {
					t.Errorf("sink got %d messages", len(msgs))
				}
				// Nothing was started: the connection goes on.
				if res, err := c.Send(t.Context(), msg("b@dest.test")); err != nil || !res.Rcpts[0].Delivered() {
					t.Errorf("next Send: %+v %v", res, err)
				}
				return
			}
			if m := msgs[0]; m.UTF8 != tc.wantUTF8 || m.Body8Bit != tc.want8Bit || !bytes.Equal(m.Body, body) {
				t.Errorf("sink: UTF8 %v BODY=8BITMIME %v, want %v %v", m.UTF8, m.Body8Bit, tc.wantUTF8, tc.want8Bit)
			}
		})
	}
}

// BenchmarkSendReused measures messages per second over one reused
// connection to a loopback sink, 4 KiB messages, one recipient each.
func BenchmarkSendReused(b *testing.B) {
	s := relaytest.NewSink(b, "127.0.0.2:0", relaytest.SinkOptions{})
	ap := netip.MustParseAddrPort(s.Addr())
	c, err := delivery.Dial(b.Context(), "mx.dest.test", ap.Addr(), opts(int(ap.Port())))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	line := strings.Repeat("x", 76) + "\r\n"
	big := []byte("Subject: bench\r\n\r\n" + strings.Repeat(line, 4096/len(line)))
	m := delivery.Message{From: "app@facteur.test", Rcpts: []string{"b@dest.test"}, Body: big}
	n := 0
	for b.Loop() {
		if err := c.Reset(); err != nil {
			b.Fatal(err)
		}
		res, err := c.Send(b.Context(), m)
		if err != nil || !res.Rcpts[0].Delivered() {
			b.Fatalf("Send: %+v %v", res, err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

package relaytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func sinkClient(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatalf("EHLO %s: %v", addr, err)
	}
	return c
}

func sinkSend(t *testing.T, c *smtp.Client, to, body string) error {
	t.Helper()
	return c.SendMail("from@client.test", []string{to}, strings.NewReader(body))
}

func TestSinkSharedPortOnLoopbackAddresses(t *testing.T) {
	a := NewSink(t, "127.0.0.2:0", SinkOptions{})
	b := NewSink(t, fmt.Sprintf("127.0.0.3:%d", a.Port()), SinkOptions{})
	if a.Port() != b.Port() {
		t.Fatalf("ports %d and %d", a.Port(), b.Port())
	}
	for i, s := range []*Sink{a, b} {
		body := fmt.Sprintf("Subject: %d\r\n\r\n.dot\r\n", i)
		if err := sinkSend(t, sinkClient(t, s.Addr()), "rcpt@dest.test", body); err != nil {
			t.Fatalf("send to %s: %v", s.Addr(), err)
		}
		msgs := s.Messages()
		if len(msgs) != 1 || string(msgs[0].Body) != body || msgs[0].EHLO != "client.test" ||
			msgs[0].From != "from@client.test" || msgs[0].LocalAddr != s.Addr() || msgs[0].Conn != 1 {
			t.Errorf("sink %s got %+v", s.Addr(), msgs)
		}
	}
}

func TestSinkWaitAndConnectionCounts(t *testing.T) {
	s := NewSink(t, "127.0.0.2:0", SinkOptions{})

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on an empty sink: %v", err)
	}

	waited := make(chan error, 1)
	go func() { waited <- s.Wait(t.Context(), 2) }()
	clients := []*smtp.Client{sinkClient(t, s.Addr()), sinkClient(t, s.Addr()), sinkClient(t, s.Addr())}
	for i, c := range clients[:2] {
		if err := sinkSend(t, c, fmt.Sprintf("r%d@dest.test", i), "Subject: x\r\n\r\nx\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-waited; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if s.Connections() != 3 || s.MaxConcurrent() != 3 {
		t.Errorf("Connections %d MaxConcurrent %d, want 3 3", s.Connections(), s.MaxConcurrent())
	}
	for _, c := range clients {
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := sinkSend(t, sinkClient(t, s.Addr()), "r@dest.test", "Subject: y\r\n\r\ny\r\n"); err != nil {
		t.Fatal(err)
	}
	// The QUITs above got their 221 before the server closed its side, so
	// the peak may count them or not; it can never exceed 4.
	if s.Connections() != 4 || s.MaxConcurrent() < 3 || s.MaxConcurrent() > 4 {
		t.Errorf("Connections %d MaxConcurrent %d", s.Connections(), s.MaxConcurrent())
	}
	if m := s.Messages(); len(m) != 3 || m[2].Conn != 4 {
		t.Errorf("messages %+v", m)
	}
}

func TestSinkScripts(t *testing.T) {
	rp001 := &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "RP-001 later"}
	tests := []struct {
		name string
		opts SinkOptions
		run  func(t *testing.T, addr string)
	}{
		{"554 banner", SinkOptions{Greeting: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "go away"}},
			func(t *testing.T, addr string) {
				c, err := smtp.Dial(addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				var se *smtp.SMTPError
				if err := c.Hello("client.test"); !errors.As(err, &se) || se.Code != 554 || se.Message != "go away" {
					t.Errorf("Hello: %v, want the 554 banner", err)
				}
			}},
		{"421 to RCPT closes the connection", SinkOptions{Rcpt: func(string) error { return rp001 }},
			func(t *testing.T, addr string) {
				c := sinkClient(t, addr)
				if err := c.Mail("a@client.test", nil); err != nil {
					t.Fatal(err)
				}
				var se *smtp.SMTPError
				if err := c.Rcpt("b@dest.test", nil); !errors.As(err, &se) || se.Code != 421 {
					t.Fatalf("Rcpt: %v, want 421", err)
				}
				if err := c.Noop(); err == nil || errors.As(err, &se) && se.Code != 421 {
					t.Errorf("NOOP after 421: %v, want a closed connection", err)
				}
			}},
		{"No8BITMIME and SMTPUTF8", SinkOptions{No8BITMIME: true, SMTPUTF8: true},
			func(t *testing.T, addr string) {
				c := sinkClient(t, addr)
				if ok, _ := c.Extension("8BITMIME"); ok {
					t.Error("8BITMIME advertised")
				}
				if ok, _ := c.Extension("SMTPUTF8"); !ok {
					t.Error("SMTPUTF8 not advertised")
				}
				if ok, _ := c.Extension("PIPELINING"); !ok {
					t.Error("other extensions lost")
				}
			}},
		{"Data refusal records nothing", SinkOptions{Data: func(rcpts []string, body []byte) error {
			return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "too big"}
		}},
			func(t *testing.T, addr string) {
				var se *smtp.SMTPError
				if err := sinkSend(t, sinkClient(t, addr), "b@dest.test", "x\r\n"); !errors.As(err, &se) || se.Code != 552 {
					t.Errorf("send: %v, want 552", err)
				}
			}},
		{"drop mid-DATA", SinkOptions{DropMidData: true},
			func(t *testing.T, addr string) {
				var se *smtp.SMTPError
				err := sinkSend(t, sinkClient(t, addr), "b@dest.test", strings.Repeat("x", 100)+"\r\n")
				if err == nil || errors.As(err, &se) {
					t.Errorf("send: %v, want a connection error", err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSink(t, "127.0.0.2:0", tc.opts)
			tc.run(t, s.Addr())
			if n := len(s.Messages()); n != 0 {
				t.Errorf("sink recorded %d messages", n)
			}
		})
	}
}

func TestSinkStallReleasedAtCleanup(t *testing.T) {
	never := make(chan struct{}) // never closed: the sink's cleanup must release it
	var addr string
	t.Run("stalled", func(t *testing.T) {
		s := NewSink(t, "127.0.0.2:0", SinkOptions{StallData: never})
		addr = s.Addr()
		c := sinkClient(t, addr)
		if err := c.Mail("a@client.test", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("b@dest.test", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, "x\r\n"); err != nil {
			t.Fatal(err)
		}
		// Leave the final reply pending: cleanup must not hang.
	})
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("sink %s still listening after cleanup", addr)
	}
}

func TestSelfSignedCert(t *testing.T) {
	cert := SelfSignedCert(t, "mx.dest.test", "127.0.0.2")
	leaf := cert.Leaf
	if leaf.Subject.CommonName != "mx.dest.test" || len(leaf.DNSNames) != 1 || len(leaf.IPAddresses) != 1 {
		t.Fatalf("certificate %v %v %v", leaf.Subject, leaf.DNSNames, leaf.IPAddresses)
	}
	if err := leaf.VerifyHostname("127.0.0.2"); err != nil {
		t.Error(err)
	}
	if _, err := selfSigned(time.Now(), nil); err == nil {
		t.Error("no names accepted")
	}
}

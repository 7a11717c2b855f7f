package delivery_test

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/relay/delivery"
	"facteur/relay/relaytest"
)

// scripted is a loopback SMTP server that answers nothing to a transaction
// until it has read MAIL, every RCPT and DATA: a client that waits for each
// reply before the next command (no pipelining) stalls, and the test fails
// on the server's deadline. With pipeline false it offers no PIPELINING and
// answers command by command.
func scripted(t *testing.T, pipeline bool, rcpts int) (addr netip.AddrPort, got chan []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got = make(chan []string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		line := func() string { s, _ := r.ReadString('\n'); return strings.TrimRight(s, "\r\n") }
		say := func(s string) { c.Write([]byte(s + "\r\n")) }
		say("220 scripted ESMTP")
		line() // EHLO
		if pipeline {
			say("250-scripted\r\n250-8BITMIME\r\n250 PIPELINING")
		} else {
			say("250-scripted\r\n250 8BITMIME")
		}
		var cmds []string
		if pipeline {
			for len(cmds) < rcpts+2 {
				l := line()
				if l == "" {
					got <- append(cmds, "(stalled: commands not pipelined)")
					return
				}
				cmds = append(cmds, l)
			}
			say("250 2.1.0 sender ok")
			for range rcpts {
				say("250 2.1.5 rcpt ok")
			}
			say("354 go ahead")
		} else {
			for _, reply := range append(append([]string{"250 2.1.0 ok"}, repeat("250 2.1.5 ok", rcpts)...), "354 go ahead") {
				cmds = append(cmds, line())
				say(reply)
			}
		}
		for l := line(); l != "."; l = line() {
			if l == "" && r.Buffered() == 0 {
				break
			}
		}
		say("250 2.0.0 queued as X1")
		cmds = append(cmds, line()) // QUIT
		say("221 bye")
		got <- cmds
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), got
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestPipelining(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pipeline bool
	}{
		{"PIPELINING offered: one write", true},
		{"not offered: command by command", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ap, got := scripted(t, tc.pipeline, 2)
			o := opts(int(ap.Port()))
			o.NoTLS = true
			c, err := delivery.Dial(t.Context(), "mx.dest.test", ap.Addr(), o)
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Send(t.Context(), msg("a@dest.test", "b@dest.test"))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Rcpts[0].Delivered() || !res.Rcpts[1].Delivered() || res.Data.String() != "250 2.0.0 queued as X1" {
				t.Fatalf("%+v", res)
			}
			c.Close()
			cmds := <-got
			want := []string{"MAIL FROM:<app@facteur.test> BODY=8BITMIME", "RCPT TO:<a@dest.test>", "RCPT TO:<b@dest.test>", "DATA", "QUIT"}
			if strings.Join(cmds, "|") != strings.Join(want, "|") {
				t.Fatalf("server read %q, want %q", cmds, want)
			}
		})
	}
}

// A refused MAIL, pipelined with its RCPTs and DATA: every recipient gets the
// MAIL reply, the refused RCPT and DATA replies are read, and the connection
// stays in step for the next message.
func TestPipelinedMailRefusedThenReuse(t *testing.T) {
	s := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{
		Mail: func(from string) error {
			if from == "blocked@facteur.test" {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender blocked"}
			}
			return nil
		},
	})
	c := dial(t, s, "mx.dest.test", opts(0))
	m := msg("a@dest.test", "b@dest.test")
	m.From = "blocked@facteur.test"
	res, err := c.Send(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Rcpts {
		if r.Reply.String() != "550 5.7.1 sender blocked" || r.Delivered() {
			t.Errorf("%s: %q", r.Addr, r.Reply)
		}
	}
	if !c.Usable() {
		t.Fatal("connection unusable after a refused MAIL")
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	res, err = c.Send(t.Context(), msg("c@dest.test"))
	if err != nil || !res.Rcpts[0].Delivered() {
		t.Fatalf("next message: %+v %v", res, err)
	}
	if n := s.Connections(); n != 1 {
		t.Errorf("%d connections", n)
	}
}

// Probe checks a connection that sat idle with an RSET: a live server answers
// and the connection goes on; one that closed it meanwhile leaves it
// unusable, before a message is tried on it.
func TestProbe(t *testing.T) {
	t.Run("alive", func(t *testing.T) {
		s := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{})
		c := dial(t, s, "mx.dest.test", opts(0))
		if res, err := c.Send(t.Context(), msg("a@dest.test")); err != nil || !res.Rcpts[0].Delivered() {
			t.Fatalf("%+v %v", res, err)
		}
		if err := c.Probe(); err != nil || !c.Usable() {
			t.Fatalf("probe of a live connection: %v", err)
		}
		if res, err := c.Send(t.Context(), msg("b@dest.test")); err != nil || !res.Rcpts[0].Delivered() {
			t.Fatalf("after the probe: %+v %v", res, err)
		}
	})
	t.Run("closed by the server", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			c.Write([]byte("220 scripted ESMTP\r\n"))
			r.ReadString('\n') // EHLO
			c.Write([]byte("250 scripted\r\n"))
			c.Close() // an idle timeout of zero
		}()
		ap := netip.MustParseAddrPort(ln.Addr().String())
		o := opts(int(ap.Port()))
		o.NoTLS = true
		c, err := delivery.Dial(t.Context(), "mx.dest.test", ap.Addr(), o)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Probe(); err == nil || c.Usable() {
			t.Fatalf("probe of a closed connection: %v, usable %v", err, c.Usable())
		}
	})
}

// A 250 to DATA (or a 3xx to RCPT) is no reply a server can give: the
// conversation is broken and nothing counts as delivered, although the
// body was never sent.
func TestPipelinedNonsenseReply(t *testing.T) {
	for _, tc := range []struct{ name, rcpt, data string }{
		{"250 to DATA", "250 2.1.5 ok", "250 2.0.0 fine"},
		{"354 to RCPT", "354 go on", "354 go ahead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.2:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(c)
				c.Write([]byte("220 scripted ESMTP\r\n"))
				r.ReadString('\n') // EHLO
				c.Write([]byte("250-scripted\r\n250 PIPELINING\r\n"))
				for range 3 { // MAIL, RCPT, DATA
					r.ReadString('\n')
				}
				c.Write([]byte("250 2.1.0 ok\r\n" + tc.rcpt + "\r\n" + tc.data + "\r\n"))
				r.ReadString('\n')
			}()
			ap := netip.MustParseAddrPort(ln.Addr().String())
			o := opts(int(ap.Port()))
			o.NoTLS = true
			c, err := delivery.Dial(t.Context(), "mx.dest.test", ap.Addr(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			res, err := c.Send(t.Context(), msg("a@dest.test"))
			if err == nil || res.Rcpts[0].Delivered() || c.Usable() {
				t.Fatalf("Send: %+v, err %v, usable %v", res, err, c.Usable())
			}
		})
	}
}

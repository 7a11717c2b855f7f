package relaytest

// The SMTP half of relaytest: a real go-smtp server on a loopback address,
// scripted per phase and per recipient, recording every message it accepts
// byte for byte. Several sinks can share one port on different 127.0.0.x
// addresses (Linux routes all of 127/8 to lo), as several MX hosts of one
// domain would on the relay's delivery.port.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SinkOptions scripts a Sink. The zero value accepts everything in plaintext.
//
// Hooks run on the sink's connection goroutines, possibly concurrently: they
// must be safe for concurrent use. A hook that returns an *smtp.SMTPError
// sends that reply; any other error becomes go-smtp's default reply for the
// command (451 for MAIL/RCPT, 554 for DATA). A reply with code 421 closes
// the connection right after it is written, as real servers do.
type SinkOptions struct {
	// Domain is the name in the greeting ("220 Domain ESMTP Service Ready").
	// Default "sink.test".
	Domain string

	// Greeting, when set, replaces the 220 banner (for example a 554 or a
	// 421 banner); the sink closes the connection right after writing it.
	Greeting *smtp.SMTPError
	// GreetingStall, when not nil, holds the banner until it is closed (or
	// the sink or the connection is closed): a server that never greets.
	GreetingStall <-chan struct{}

	// TLS offers STARTTLS with this configuration (see SelfSignedCert).
	TLS *tls.Config
	// BreakTLS advertises STARTTLS, answers 220 to it, then fails the
	// handshake (the server has no usable certificate). TLS is not needed.
	BreakTLS bool
	// ImplicitTLS serves TLS from the first byte (port 465 style) with the
	// TLS configuration; Greeting, GreetingStall and No8BITMIME do not apply.
	ImplicitTLS bool

	// No8BITMIME removes 8BITMIME from the EHLO reply. go-smtp always
	// advertises it, so the sink filters that line out of what it writes on
	// the plaintext connection; after STARTTLS the sink cannot see the
	// plaintext any more, and 8BITMIME is advertised again.
	No8BITMIME bool
	// SMTPUTF8 advertises SMTPUTF8 (RFC 6531).
	SMTPUTF8 bool

	// Auth, when set, advertises AUTH PLAIN (over TLS only) and checks the
	// credentials; it returns nil to accept them.
	Auth func(username, password string) error

	// Mail is called for MAIL FROM; nil accepts.
	Mail func(from string) error
	// MailFrom is Mail with the client's address ("127.0.0.3:41234"),
	// for a server that answers one source IP differently; nil accepts.
	MailFrom func(remote, from string) error
	// Rcpt is called for each RCPT TO; nil accepts.
	Rcpt func(addr string) error
	// Data is called with the accepted recipients and the exact message
	// bytes (dot-unstuffed, CRLF kept); nil accepts. A message is recorded
	// only when Data accepts it.
	Data func(rcpts []string, body []byte) error

	// DropMidData closes the connection after reading the first bytes of
	// DATA, without a reply.
	DropMidData bool
	// StallData, when not nil, holds the reply to the final "." until it is
	// closed (or the sink or the connection is closed), after the whole
	// message was read: a server that stalls past data_end. Close it from
	// the test rather than sleeping.
	StallData <-chan struct{}

	// StallReading, when not nil, holds the server after its 354, before
	// it reads any of the message, until it is closed (or the sink or the
	// connection is closed): a message bigger than the socket buffers then
	// blocks the client's writes (the block timeout).
	StallReading <-chan struct{}

	// MaxMessages, when positive, is the number of messages accepted per
	// connection; the next MAIL gets "421 4.7.0 Too many messages" and the
	// connection is closed.
	MaxMessages int
}

// SinkMessage is one message a Sink accepted.
type SinkMessage struct {
	From       string
	Rcpts      []string
	Body       []byte // exact bytes after dot-unstuffing
	EHLO       string // the name the client gave in EHLO/HELO
	RemoteAddr string // the client's address, "127.0.0.3:41234"
	LocalAddr  string // the sink's address the client connected to
	TLS        bool
	TLSVersion uint16 // tls.VersionTLS13 ...; 0 when TLS is false
	AuthUser   string // the username of a successful AUTH, if any
	Conn       int    // 1-based number of the connection that carried it
	UTF8       bool   // MAIL FROM had SMTPUTF8
	Body8Bit   bool   // MAIL FROM had BODY=8BITMIME
}

// Sink is a scripted go-smtp server listening on a loopback address.
type Sink struct {
	t    testing.TB
	opts SinkOptions
	srv  *smtp.Server
	ln   net.Listener
	addr string
	done chan struct{} // closed at cleanup: releases every stall

	mu       sync.Mutex // mu guards the fields below
	msgs     []SinkMessage
	changed  chan struct{} // closed and replaced whenever msgs grows
	conns    int
	open     int
	peakOpen int
	live     map[*sinkConn]struct{}
}

// NewSink starts a sink on addr ("127.0.0.2:0" for any port, or a fixed
// "127.0.0.3:2525" so that several sinks share a port). It is listening when
// NewSink returns and is closed by t.Cleanup.
func NewSink(t testing.TB, addr string, opts SinkOptions) *Sink {
	t.Helper()
	if opts.Domain == "" {
		opts.Domain = "sink.test"
	}
	if opts.ImplicitTLS && opts.TLS == nil {
		t.Fatalf("relaytest: sink %s: ImplicitTLS needs TLS", addr)
	}
	if opts.ImplicitTLS && (opts.Greeting != nil || opts.GreetingStall != nil || opts.No8BITMIME) {
		t.Fatalf("relaytest: sink %s: Greeting, GreetingStall and No8BITMIME need a plaintext start", addr)
	}
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("relaytest: sink listen %s: %v", addr, err)
	}
	s := &Sink{
		t:       t,
		opts:    opts,
		addr:    raw.Addr().String(),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		live:    make(map[*sinkConn]struct{}),
	}
	var ln net.Listener = &sinkListener{Listener: raw, sink: s}

	srv := smtp.NewServer(sinkBackend{s})
	srv.Domain = opts.Domain
	srv.EnableSMTPUTF8 = opts.SMTPUTF8
	srv.ErrorLog = log.New(io.Discard, "", 0)
	switch {
	case opts.BreakTLS:
		srv.TLSConfig = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errors.New("relaytest: BreakTLS: no certificate")
		}}
	case opts.TLS != nil:
		srv.TLSConfig = opts.TLS
	}
	if opts.ImplicitTLS {
		ln = tls.NewListener(ln, opts.TLS)
		// go-smtp offers STARTTLS whenever TLSConfig is set and the
		// connection is not *tls.Conn; with implicit TLS it always is.
	}
	s.srv, s.ln = srv, ln

	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln) // returns nil once Close is called
	}()
	t.Cleanup(func() {
		close(s.done) // releases the stalls
		// Close the sockets ourselves and let go-smtp's Shutdown wait for
		// its connection goroutines: its Close reads each Conn's socket
		// while a STARTTLS in progress replaces it, a data race.
		s.mu.Lock()
		live := make([]*sinkConn, 0, len(s.live))
		for c := range s.live {
			live = append(live, c)
		}
		s.mu.Unlock()
		for _, c := range live {
			_ = c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), sinkShutdownWait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("relaytest: sink %s: connections still busy %v after close (a hook that never returns?): %v", s.addr, sinkShutdownWait, err)
			return
		}
		<-served
	})
	return s
}

// sinkShutdownWait bounds the wait for connection goroutines at cleanup;
// only a scripted hook that blocks forever can exhaust it.
const sinkShutdownWait = 10 * time.Second

// Addr is the sink's "ip:port".
func (s *Sink) Addr() string { return s.addr }

// Port is the sink's TCP port.
func (s *Sink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Messages returns a copy of the messages accepted so far, in order.
func (s *Sink) Messages() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SinkMessage, len(s.msgs))
	for i, m := range s.msgs {
		m.Rcpts = append([]string(nil), m.Rcpts...)
		m.Body = bytes.Clone(m.Body)
		out[i] = m
	}
	return out
}

// Wait returns once the sink holds at least n messages, or ctx's error.
func (s *Sink) Wait(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		have, ch := len(s.msgs), s.changed
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("relaytest: sink %s: %d of %d messages: %w", s.addr, have, n, ctx.Err())
		case <-ch:
		}
	}
}

// Connections is the number of connections accepted so far.
func (s *Sink) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Open is the number of connections open now.
func (s *Sink) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// MaxConcurrent is the peak number of simultaneously open connections.
func (s *Sink) MaxConcurrent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peakOpen
}

func (s *Sink) record(m SinkMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
}

// sinkListener counts connections and wraps each in a sinkConn.
type sinkListener struct {
	net.Listener
	sink *Sink
}

func (l *sinkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	s := l.sink
	s.mu.Lock()
	select {
	case <-s.done:
		// Closing down: a connection accepted now would escape the
		// cleanup's close; returning an error ends Serve.
		s.mu.Unlock()
		_ = c.Close()
		return nil, net.ErrClosed
	default:
	}
	if tc, ok := c.(*net.TCPConn); ok && s.opts.StallReading != nil {
		// A small receive window makes the client block after a few
		// kilobytes instead of megabytes of autotuned buffers.
		_ = tc.SetReadBuffer(4096)
	}
	s.conns++
	s.open++
	s.peakOpen = max(s.peakOpen, s.open)
	sc := &sinkConn{Conn: c, sink: s, n: s.conns, closed: make(chan struct{}), greeting: !s.opts.ImplicitTLS}
	s.live[sc] = struct{}{}
	s.mu.Unlock()
	return sc, nil
}

// sinkConn is the server side of one connection. It scripts the greeting
// (go-smtp writes a fixed banner with no hook), filters 8BITMIME out of the
// EHLO reply, and closes the connection after a 421 reply.
type sinkConn struct {
	net.Conn
	sink *Sink
	n    int // 1-based connection number

	// Written only by the connection's go-smtp goroutine.
	greeting   bool // the next Write is the banner
	closeAfter bool // close after the next Write (a 421 reply)
	messages   int

	closeOnce sync.Once
	closed    chan struct{}
}

func (c *sinkConn) Write(b []byte) (int, error) {
	if c.greeting {
		c.greeting = false
		if stall := c.sink.opts.GreetingStall; stall != nil {
			select {
			case <-stall:
			case <-c.sink.done:
			case <-c.closed:
				return 0, net.ErrClosed
			}
		}
		if g := c.sink.opts.Greeting; g != nil {
			_, err := fmt.Fprintf(c.Conn, "%d %s\r\n", g.Code, replyText(g))
			c.Close()
			if err != nil {
				return 0, err
			}
			return len(b), nil
		}
	}
	out := b
	if c.sink.opts.No8BITMIME {
		// go-smtp flushes each reply line with its own Write.
		out = bytes.ReplaceAll(b, []byte("250-8BITMIME\r\n"), nil)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	if c.closeAfter {
		c.Close()
	}
	return len(b), nil
}

func (c *sinkConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		err = c.Conn.Close()
		c.sink.mu.Lock()
		c.sink.open--
		delete(c.sink.live, c)
		c.sink.mu.Unlock()
	})
	return err
}

func replyText(e *smtp.SMTPError) string {
	if e.EnhancedCode == smtp.EnhancedCodeNotSet || e.EnhancedCode == smtp.NoEnhancedCode {
		return e.Message
	}
	return fmt.Sprintf("%d.%d.%d %s", e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
}

type sinkBackend struct{ s *Sink }

func (b sinkBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	sess := &sinkSession{sink: b.s, conn: c}
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		sess.tls, sess.tlsVersion = true, st.Version
		nc = tc.NetConn()
	}
	sc, ok := nc.(*sinkConn)
	if !ok {
		return nil, fmt.Errorf("relaytest: unexpected connection type %T", nc)
	}
	sess.sc = sc
	return sess, nil
}

// sinkSession is one go-smtp session: created at EHLO, again after STARTTLS.
type sinkSession struct {
	sink       *Sink
	conn       *smtp.Conn
	sc         *sinkConn
	tls        bool
	tlsVersion uint16
	authUser   string

	from  string
	utf8  bool
	body8 bool
	rcpts []string
}

var errTooManyMessages = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many messages on this connection"}

// reply passes a hook's error to go-smtp, arranging the close after a 421.
func (s *sinkSession) reply(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code == 421 {
		s.sc.closeAfter = true
		return se
	}
	return err
}

func (s *sinkSession) AuthMechanisms() []string {
	if s.sink.opts.Auth == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *sinkSession) Auth(mech string) (sasl.Server, error) {
	if s.sink.opts.Auth == nil || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if err := s.sink.opts.Auth(username, password); err != nil {
			return smtp.ErrAuthFailed
		}
		s.authUser = username
		return nil
	}), nil
}

func (s *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	if max := s.sink.opts.MaxMessages; max > 0 && s.sc.messages >= max {
		return s.reply(errTooManyMessages)
	}
	if f := s.sink.opts.Mail; f != nil {
		if err := f(from); err != nil {
			return s.reply(err)
		}
	}
	if f := s.sink.opts.MailFrom; f != nil {
		if err := f(s.sc.RemoteAddr().String(), from); err != nil {
			return s.reply(err)
		}
	}
	s.from, s.rcpts = from, nil
	s.utf8 = opts != nil && opts.UTF8
	s.body8 = opts != nil && opts.Body == smtp.Body8BitMIME
	return nil
}

func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if f := s.sink.opts.Rcpt; f != nil {
		if err := f(to); err != nil {
			return s.reply(err)
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	opts := &s.sink.opts
	if opts.StallReading != nil {
		select {
		case <-opts.StallReading:
		case <-s.sink.done:
		case <-s.sc.closed:
		}
	}
	if opts.DropMidData {
		// Read a little so the client is committed to DATA, then vanish.
		_, _ = io.ReadFull(r, make([]byte, 16))
		s.sc.Close()
		return errors.New("relaytest: dropped mid-DATA")
	}
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if opts.StallData != nil {
		select {
		case <-opts.StallData:
		case <-s.sink.done:
		case <-s.sc.closed:
		}
	}
	if opts.Data != nil {
		if err := opts.Data(append([]string(nil), s.rcpts...), body); err != nil {
			return s.reply(err)
		}
	}
	s.sc.messages++
	s.sink.record(SinkMessage{
		From:       s.from,
		Rcpts:      append([]string(nil), s.rcpts...),
		Body:       body,
		EHLO:       s.conn.Hostname(),
		RemoteAddr: s.sc.RemoteAddr().String(),
		LocalAddr:  s.sc.LocalAddr().String(),
		TLS:        s.tls,
		TLSVersion: s.tlsVersion,
		AuthUser:   s.authUser,
		Conn:       s.sc.n,
		UTF8:       s.utf8,
		Body8Bit:   s.body8,
	})
	return nil
}

func (s *sinkSession) Reset() {
	s.from, s.rcpts, s.utf8, s.body8 = "", nil, false, false
}

func (s *sinkSession) Logout() error { return nil }

// SelfSignedCert returns a fresh self-signed certificate (ECDSA P-256, valid
// from an hour ago for a day) for names: DNS names, or IP addresses such as
// "127.0.0.2". The subject is "CN=names[0],O=facteur relaytest". Leaf is set,
// so a test can trust it with pool.AddCert(cert.Leaf).
func SelfSignedCert(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	cert, err := selfSigned(time.Now(), names)
	if err != nil {
		t.Fatalf("relaytest: self-signed certificate: %v", err)
	}
	return cert
}

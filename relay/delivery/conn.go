package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"facteur/policy"
	"facteur/relay/config"
)

// Timeouts are the per-phase limits of RFC 5321 §4.5.3.2. A zero field
// takes the value of DefaultTimeouts.
type Timeouts struct {
	Connect  time.Duration // TCP connect
	Greeting time.Duration // the 220 banner, EHLO, STARTTLS and the TLS handshake (§4.5.3.2.1)
	Mail     time.Duration // MAIL FROM, and RSET and AUTH (§4.5.3.2.2)
	Rcpt     time.Duration // each RCPT TO (§4.5.3.2.3)
	Data     time.Duration // DATA until its 354 (§4.5.3.2.4)
	Block    time.Duration // each block of the message written (§4.5.3.2.5)
	DataEnd  time.Duration // the reply after the final "." (§4.5.3.2.6)
	Quit     time.Duration // QUIT: short, nothing depends on its reply
}

// DefaultTimeouts returns the RFC 5321 §4.5.3.2 values of the config's
// delivery.timeouts (config.Default, where they are written).
func DefaultTimeouts() Timeouts { return TimeoutsFrom(config.Default().Delivery.Timeouts) }

// TimeoutsFrom is the config's delivery.timeouts as the client takes them,
// with QUIT's short timeout: nothing depends on its reply.
func TimeoutsFrom(t config.Timeouts) Timeouts {
	return Timeouts{
		Connect:  time.Duration(t.Connect),
		Greeting: time.Duration(t.Greeting),
		Mail:     time.Duration(t.Mail),
		Rcpt:     time.Duration(t.Rcpt),
		Data:     time.Duration(t.Data),
		Block:    time.Duration(t.Block),
		DataEnd:  time.Duration(t.DataEnd),
		Quit:     10 * time.Second,
	}
}

// Auth is a relayhost's credentials, sent with AUTH PLAIN over TLS only.
type Auth struct {
	Username string
	Password string
}

// Options configures Dial. Only Hostname is required.
type Options struct {
	// Hostname is the EHLO name (config hostname). Required: go-smtp would
	// otherwise say "EHLO localhost", which receivers hold against us.
	Hostname string
	// Port is the remote TCP port; 0 means 25.
	Port int
	// SourceIP, when valid, is the local address outbound connections bind.
	SourceIP netip.Addr
	Timeouts Timeouts

	// RootCAs verifies server certificates; nil means the system roots.
	RootCAs *x509.CertPool
	// NoTLS never tries STARTTLS (the caller remembers that TLS failed
	// with this host+ip recently).
	NoTLS bool
	// RequireTLS refuses to continue without TLS: STARTTLS missing,
	// refused or failing is an error, never a plaintext retry (relayhost_tls:
	// starttls). The certificate need not verify unless VerifyTLS is set.
	RequireTLS bool
	// VerifyTLS makes a certificate that does not verify against the host
	// name an error (ErrCertificate) instead of a CV=no note.
	VerifyTLS bool
	// ImplicitTLS starts TLS at connect, before the greeting (port 465,
	// relayhost_tls: implicit). There is no plaintext retry.
	ImplicitTLS bool
	// Auth, when set, authenticates with AUTH PLAIN after TLS, and only
	// when the certificate verified (a peer that could be anyone never gets
	// the password), unless AuthUnverified is set.
	Auth *Auth
	// AuthUnverified sends Auth over TLS whose certificate did not verify
	// (relayhost_tls_verify: false, written by the admin).
	AuthUnverified bool
	// MinTLSVersion is the lowest TLS version accepted (0: TLS 1.0, as
	// opportunistic TLS to MXs wants; the relayhost gets TLS 1.2).
	MinTLSVersion uint16
	// Security, when set, is the TLS policy of an MX connection (issue
	// 15): it sets NoTLS, RequireTLS and VerifyTLS itself (see security.go).
	Security *Security
}

func (o Options) normalize() (Options, error) {
	if o.Hostname == "" {
		return o, errors.New("delivery: Options.Hostname is required (the EHLO name)")
	}
	if strings.ContainsAny(o.Hostname, " \t\r\n") {
		return o, fmt.Errorf("delivery: Options.Hostname %q: not a host name", o.Hostname)
	}
	if o.Port == 0 {
		o.Port = 25
	}
	if o.Port < 0 || o.Port > 65535 {
		return o, fmt.Errorf("delivery: Options.Port %d out of range", o.Port)
	}
	if o.Security != nil {
		if err := o.Security.apply(&o); err != nil {
			return o, err
		}
	}
	if o.NoTLS && (o.RequireTLS || o.ImplicitTLS || o.VerifyTLS || o.Auth != nil) {
		return o, errors.New("delivery: Options.NoTLS contradicts RequireTLS, ImplicitTLS, VerifyTLS and Auth")
	}
	if o.Auth != nil && (o.Auth.Username == "" || strings.ContainsAny(o.Auth.Username+o.Auth.Password, "\x00")) {
		return o, errors.New("delivery: Options.Auth: empty username or NUL in credentials")
	}
	def := DefaultTimeouts()
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"connect", &o.Timeouts.Connect, def.Connect},
		{"greeting", &o.Timeouts.Greeting, def.Greeting},
		{"mail", &o.Timeouts.Mail, def.Mail},
		{"rcpt", &o.Timeouts.Rcpt, def.Rcpt},
		{"data", &o.Timeouts.Data, def.Data},
		{"block", &o.Timeouts.Block, def.Block},
		{"data_end", &o.Timeouts.DataEnd, def.DataEnd},
		{"quit", &o.Timeouts.Quit, def.Quit},
	} {
		if *f.v < 0 {
			return o, fmt.Errorf("delivery: timeout %s %v is negative", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	return o, nil
}

// TLSInfo describes the TLS session of a Conn, as Exim logs it:
// X=TLS1.3:TLS_AES_128_GCM_SHA256 CV=no DN="CN=mx.example.com".
type TLSInfo struct {
	Version  string // "TLS1.3"
	Cipher   string // "TLS_AES_128_GCM_SHA256"
	Verified bool   // the certificate chains to RootCAs and matches the host name
	// VerifyError says why Verified is false; empty when it is true.
	VerifyError string
	// PeerDN is the subject of the server's certificate, RFC 2253 style
	// ("CN=mx.example.com,O=Example"): how ops learn who hosts a domain.
	PeerDN string
}

// Conn is one SMTP client connection to one server, ready for Send.
type Conn struct {
	host string
	ip   netip.Addr
	opts Options

	raw     net.Conn     // the TCP connection: closed to abort anything
	netConn *clientConn  // what go-smtp talks over (raw or TLS); deadlines go here
	client  *smtp.Client // go-smtp's client over netConn

	tls         *TLSInfo
	tlsFallback error // why this session is plaintext although TLS was tried

	smtputf8     bool // the server offers SMTPUTF8 (last EHLO of the session)
	eightBitMIME bool // the server offers 8BITMIME
	sizeExt      bool // the server offers SIZE
	pipelining   bool // the server offers PIPELINING (RFC 2920)
	wire         *wire

	messages int
	inTxn    bool // MAIL accepted and no final reply to DATA yet
	broken   bool // closed, broke, timed out or got a 421
}

// clientConn is the connection handed to go-smtp. After STARTTLS it replays
// a 220 line, because go-smtp's new client reads a greeting first and the
// server sends none after the handshake. It counts bytes written so that a
// failed Hello can be told apart: nothing written means the greeting failed.
type clientConn struct {
	net.Conn
	replay  []byte
	written int64
}

func (c *clientConn) Read(b []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(b, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *clientConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written += int64(n)
	return n, err
}

// Dial connects to ip (the address of host, an MX name or the relayhost,
// used for SNI, certificate checks and errors), reads the greeting, says
// EHLO, and starts TLS when offered. When the TLS negotiation itself fails
// it connects again without TLS (unless RequireTLS) and records why in
// TLSFallback. A rejected greeting or EHLO returns an *Error wrapping the
// *smtp.SMTPError, so that the caller can classify a 554 banner or a 421.
func Dial(ctx context.Context, host string, ip netip.Addr, opts Options) (*Conn, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if !ip.IsValid() {
		return nil, fmt.Errorf("delivery: dial %s: no IP address", host)
	}
	host = strings.TrimSuffix(host, ".")
	c, err := dial(ctx, host, ip, opts, !opts.NoTLS && !opts.ImplicitTLS)
	if err == nil || !errors.Is(err, ErrTLSFailed) || opts.RequireTLS || opts.ImplicitTLS || ctx.Err() != nil {
		return c, err
	}
	// RFC 3207 §4.1 / RFC 7435: a broken TLS stack is no reason not to
	// deliver; the session is unusable after a failed handshake, so start
	// over on a new connection, in plaintext. A certificate that does not
	// verify does not land here: it is recorded as CV=no.
	c, err2 := dial(ctx, host, ip, opts, false)
	if err2 != nil {
		return nil, err2
	}
	c.tlsFallback = err
	return c, nil
}

func dial(ctx context.Context, host string, ip netip.Addr, opts Options, tryTLS bool) (*Conn, error) {
	c := &Conn{host: host, ip: ip, opts: opts}
	// No TCP keepalive: each step has its own deadline, which ends a
	// connection to a vanished peer, as Postfix's smtp client does; Go's
	// keepalive cost four setsockopt calls (and a uname) per connection.
	d := net.Dialer{Timeout: opts.Timeouts.Connect, KeepAlive: -1}
	if opts.SourceIP.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: opts.SourceIP.AsSlice()}
	}
	raw, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(opts.Port)).String())
	if err != nil {
		return nil, c.wrap(ctx, PhaseConnect, opts.Timeouts.Connect, err)
	}
	c.raw = raw
	// Cancelling ctx closes the socket, which ends whatever read or write
	// is blocked; the deadlines below bound each step otherwise.
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	if err := c.setup(ctx, tryTLS); err != nil {
		stop()
		_ = raw.Close()
		return nil, err
	}
	if !stop() {
		_ = raw.Close()
		return nil, c.wrap(ctx, PhaseEHLO, 0, net.ErrClosed)
	}
	return c, nil
}

func (c *Conn) setup(ctx context.Context, tryTLS bool) error {
	var conn net.Conn = c.raw
	if c.opts.ImplicitTLS {
		tc, err := c.handshake(ctx, PhaseTLS)
		if err != nil {
			return err
		}
		conn = tc
	}
	if err := c.hello(ctx, conn, nil); err != nil {
		return err
	}
	if tryTLS {
		if err := c.startTLS(ctx); err != nil {
			return err
		}
	}
	if c.opts.Auth != nil {
		return c.authenticate(ctx)
	}
	return nil
}

// startTLS upgrades the session when the server offers STARTTLS.
func (c *Conn) startTLS(ctx context.Context) error {
	t := c.opts.Timeouts
	if ok, _ := c.client.Extension("STARTTLS"); !ok {
		if c.opts.RequireTLS {
			return &Error{Phase: PhaseSTARTTLS, Host: c.host, IP: c.ip, Err: fmt.Errorf("%w: STARTTLS not offered", ErrTLSRequired)}
		}
		return nil
	}

	// STARTTLS on the raw socket, after go-smtp's EHLO: go-smtp only
	// exports a STARTTLS that says "EHLO localhost" first.
	// Here and below, socket deadlines are wall-clock times (the net
	// poller's): the injected clock decides nothing in delivery.
	_ = c.raw.SetDeadline(time.Now().Add(t.Greeting))
	if _, err := c.raw.Write([]byte("STARTTLS\r\n")); err != nil {
		return c.tlsFailed(ctx, PhaseSTARTTLS, t.Greeting, err)
	}
	br := bufio.NewReader(c.raw)
	code, msg, err := textproto.NewReader(br).ReadResponse(220)
	var te *textproto.Error
	switch {
	case errors.As(err, &te):
		// A refusal (454 TLS not available) leaves a sound plaintext
		// session: RFC 3207 §4 lets the client go on without TLS.
		refused := fmt.Errorf("STARTTLS refused: %s", policy.ReplyOf(code, msg))
		if c.opts.RequireTLS {
			return &Error{Phase: PhaseSTARTTLS, Host: c.host, IP: c.ip, Err: fmt.Errorf("%w: %w", ErrTLSRequired, refused)}
		}
		c.tlsFallback = refused
		return nil
	case err != nil:
		return c.tlsFailed(ctx, PhaseSTARTTLS, t.Greeting, err)
	case br.Buffered() > 0:
		// Bytes after the 220 before our handshake would be a plaintext
		// injection (CVE-2011-0411); go-smtp's buffer, holding any such
		// bytes, is dropped with the old client anyway.
		return c.tlsFailed(ctx, PhaseSTARTTLS, 0, errors.New("data after the STARTTLS reply"))
	}
	tc, err := c.handshake(ctx, PhaseTLS)
	if err != nil {
		return err
	}
	return c.hello(ctx, tc, []byte("220 TLS session started\r\n"))
}

// hello gives go-smtp a client over conn and says EHLO (HELO if EHLO gets
// 500/502, go-smtp's rule and RFC 5321 §4.1.4's "command not recognized").
func (c *Conn) hello(ctx context.Context, conn net.Conn, replay []byte) error {
	c.netConn = &clientConn{Conn: conn, replay: replay}
	c.client = smtp.NewClient(c.netConn)
	c.client.CommandTimeout = c.opts.Timeouts.Greeting
	err := c.client.Hello(c.opts.Hostname)
	if err == nil {
		// Kept now: asking go-smtp later may send EHLO again (after RSET),
		// and a network error there must not read as "not supported".
		c.smtputf8, _ = c.client.Extension("SMTPUTF8")
		c.eightBitMIME, _ = c.client.Extension("8BITMIME")
		c.sizeExt, _ = c.client.Extension("SIZE")
		c.pipelining, _ = c.client.Extension("PIPELINING")
		return nil
	}
	phase := PhaseEHLO
	if c.netConn.written == 0 {
		phase = PhaseGreeting
	}
	return c.wrap(ctx, phase, c.opts.Timeouts.Greeting, err)
}

// handshake runs the TLS client handshake on the raw socket and checks the
// certificate afterwards, so that a certificate that does not verify is
// recorded (CV=no) rather than fatal: Postfix's "may" level, RFC 7435.
func (c *Conn) handshake(ctx context.Context, phase Phase) (*tls.Conn, error) {
	t := c.opts.Timeouts.Greeting
	_ = c.raw.SetDeadline(time.Now().Add(t))
	cfg := &tls.Config{
		ServerName: c.host,
		// Verification happens below, after the handshake: see above.
		InsecureSkipVerify: true,
		// Opportunistic TLS: an old TLS version still beats plaintext.
		MinVersion: tls.VersionTLS10,
	}
	if c.opts.MinTLSVersion != 0 {
		cfg.MinVersion = c.opts.MinTLSVersion
	}
	if _, err := netip.ParseAddr(c.host); err == nil || c.host == "" {
		cfg.ServerName = "" // no SNI for an address literal (RFC 6066 §3)
	}
	tc := tls.Client(c.raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, c.tlsFailed(ctx, phase, t, err)
	}
	_ = c.raw.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	info := &TLSInfo{
		Version: strings.ReplaceAll(tls.VersionName(st.Version), " ", ""),
		Cipher:  tls.CipherSuiteName(st.CipherSuite),
	}
	if len(st.PeerCertificates) == 0 {
		info.VerifyError = "no certificate"
	} else {
		leaf := st.PeerCertificates[0]
		info.PeerDN = leaf.Subject.String()
		inter := x509.NewCertPool()
		for _, ic := range st.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		name := c.host
		if name == "" {
			name = c.ip.String()
		}
		var err error
		if sec := c.opts.Security; sec != nil && sec.VerifyPeer != nil {
			// DANE: the TLSA records decide, not the PKIX roots.
			err = sec.VerifyPeer(st.PeerCertificates)
		} else {
			_, err = leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: c.opts.RootCAs, Intermediates: inter})
		}
		if err != nil {
			info.VerifyError = err.Error()
		}
		info.Verified = err == nil
	}
	if c.opts.VerifyTLS && !info.Verified {
		return nil, &Error{Phase: phase, Host: c.host, IP: c.ip, Err: fmt.Errorf("%w: %s", ErrCertificate, info.VerifyError)}
	}
	c.tls = info
	return tc, nil
}

func (c *Conn) tlsFailed(ctx context.Context, phase Phase, limit time.Duration, err error) error {
	if ctx.Err() == nil && !isTimeout(err) {
		err = fmt.Errorf("%w: %w", ErrTLSFailed, err)
	}
	return c.wrap(ctx, phase, limit, err)
}

// authenticate sends AUTH PLAIN; credentials never go out in plaintext.
func (c *Conn) authenticate(ctx context.Context) error {
	a := c.opts.Auth
	if c.tls == nil {
		return &Error{Phase: PhaseAuth, Host: c.host, IP: c.ip, Err: fmt.Errorf("%w: session not encrypted", ErrAuthUnavailable)}
	}
	if !c.tls.Verified && !c.opts.AuthUnverified {
		return &Error{Phase: PhaseAuth, Host: c.host, IP: c.ip, Err: fmt.Errorf("%w: certificate not verified (%s)", ErrAuthUnavailable, c.tls.VerifyError)}
	}
	if !c.client.SupportsAuth(sasl.Plain) {
		return &Error{Phase: PhaseAuth, Host: c.host, IP: c.ip, Err: fmt.Errorf("%w: server does not offer it", ErrAuthUnavailable)}
	}
	c.client.CommandTimeout = c.opts.Timeouts.Mail
	if err := c.client.Auth(sasl.NewPlainClient("", a.Username, a.Password)); err != nil {
		return c.wrap(ctx, PhaseAuth, c.opts.Timeouts.Mail, err)
	}
	return nil
}

// wrap makes an *Error, naming cancellation and timeouts explicitly.
func (c *Conn) wrap(ctx context.Context, phase Phase, limit time.Duration, err error) error {
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
	case isTimeout(err):
		err = fmt.Errorf("%w: %s %v: %w", ErrTimeout, phase, limit, err)
	}
	return &Error{Phase: phase, Host: c.host, IP: c.ip, Err: err}
}

// Host is the server's name given to Dial (without a trailing dot).
func (c *Conn) Host() string { return c.host }

// IP is the server's address.
func (c *Conn) IP() netip.Addr { return c.ip }

// LocalAddr is the connection's local address (the source IP in use).
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// TLS describes the TLS session; ok is false for a plaintext session.
func (c *Conn) TLS() (info TLSInfo, ok bool) {
	if c.tls == nil {
		return TLSInfo{}, false
	}
	return *c.tls, true
}

// TLSFallback says why this session is plaintext although TLS was tried:
// the handshake failed (errors.Is ErrTLSFailed; Dial reconnected without
// TLS) or the server refused STARTTLS. Nil otherwise.
func (c *Conn) TLSFallback() error { return c.tlsFallback }

// Extension reports whether the server's EHLO reply lists ext, and its
// parameter ("SIZE" → "35882577").
func (c *Conn) Extension(ext string) (bool, string) {
	if c.broken {
		return false, ""
	}
	return c.client.Extension(ext)
}

// Messages is the number of transactions on this connection that got a
// final reply to DATA, whatever it was.
func (c *Conn) Messages() int { return c.messages }

// Usable is false once the connection was closed, broke, timed out or got
// a 421: open a new one.
func (c *Conn) Usable() bool { return !c.broken }

// Reset makes the connection ready for the next message. It sends RSET when
// a transaction is still open (MAIL accepted, no final DATA reply: every
// recipient refused, or DATA refused). After a final DATA reply the server
// has already reset its state (RFC 5321 §4.1.1.4), and go-smtp's Reset
// would cost a RSET and a second EHLO per message, so Reset sends nothing.
func (c *Conn) Reset() error {
	if c.broken {
		return &Error{Phase: PhaseReset, Host: c.host, IP: c.ip, Err: ErrUnusable}
	}
	if !c.inTxn {
		return nil
	}
	if c.wire != nil {
		r, err := c.command("RSET", c.opts.Timeouts.Mail)
		if err == nil && !r.Positive() {
			err = smtpError(r)
		}
		if err != nil {
			c.abort()
			return c.wrap(context.Background(), PhaseReset, c.opts.Timeouts.Mail, err)
		}
		c.inTxn = false
		return nil
	}
	c.client.CommandTimeout = c.opts.Timeouts.Mail
	if err := c.client.Reset(); err != nil {
		// Nothing sensible follows a refused RSET: drop the connection.
		c.abort()
		return c.wrap(context.Background(), PhaseReset, c.opts.Timeouts.Mail, err)
	}
	c.inTxn = false
	return nil
}

// Probe sends RSET whatever the transaction state, to learn that a
// connection that sat idle is still there; on any failure the connection is
// closed and unusable.
func (c *Conn) Probe() error {
	if c.broken {
		return &Error{Phase: PhaseReset, Host: c.host, IP: c.ip, Err: ErrUnusable}
	}
	c.inTxn = true // Reset sends RSET only in a transaction
	return c.Reset()
}

// Close sends QUIT (under Timeouts.Quit) when the connection is sound, and
// closes it. The QUIT's failure is returned for the record only: nothing
// depends on it.
func (c *Conn) Close() error {
	if c.broken {
		_ = c.raw.Close()
		return nil
	}
	c.broken = true
	deadline := time.Now().Add(c.opts.Timeouts.Quit)
	c.client.CommandTimeout = c.opts.Timeouts.Quit
	_ = c.netConn.SetDeadline(deadline)
	var err error
	if c.wire != nil {
		_, err = c.command("QUIT", c.opts.Timeouts.Quit)
	} else {
		err = c.client.Quit()
	}
	_ = c.raw.Close()
	if err != nil {
		return c.wrap(context.Background(), PhaseQuit, c.opts.Timeouts.Quit, err)
	}
	return nil
}

// abort closes the socket without QUIT: after a 421, a timeout or a broken
// conversation there is nothing polite left to say.
func (c *Conn) abort() {
	c.broken = true
	_ = c.raw.Close()
}

// Package submission is facteur's SMTP server for local apps (PHPMailer on
// 127.0.0.1:25, the sendmail shim) and, optionally, authenticated clients on
// ports 587/465. It decides who may relay (trusted_networks or AUTH: never
// an open relay) and checks envelopes; cleanup does the rest. It owns the
// go-smtp servers and their listeners.
package submission

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"facteur/relay/address"
	"facteur/relay/cleanup"
)

// Suppressions answers whether a recipient is suppressed (issue 7). The
// session asks at RCPT time so that the app learns it at once.
type Suppressions interface {
	// Suppressed returns the refusal text when addr is suppressed.
	Suppressed(ctx context.Context, addr string, now time.Time) (why string, ok bool)
}

// Guard is the abuse guard of issue 8 (rate limits per client, sender and
// user; queue and disk floors). A nil Guard allows everything.
type Guard interface {
	// Admit is asked at MAIL FROM; a non-nil error is the reply to send.
	Admit(clientIP, sender, user string, now time.Time) *smtp.SMTPError
}

// Options configure the server.
type Options struct {
	Hostname       string
	MaxMessageSize int64
	MaxRecipients  int
	Trusted        []netip.Prefix
	Suppressions   Suppressions // may be nil
	DropSuppressed bool         // accept and drop suppressed recipients instead of refusing
	Guard          Guard        // may be nil
	Now            func() time.Time
	// ReadTimeout bounds each command and DATA read (RFC 5321 §4.5.3.2.7's
	// server timeout is 5 minutes).
	ReadTimeout time.Duration
}

// Listener describes one listening socket.
type Listener struct {
	Addr        string
	TLS         *tls.Config // offer STARTTLS (or implicit TLS) with this config
	ImplicitTLS bool
	Users       map[string][]byte // user -> bcrypt hash; non-nil enables AUTH PLAIN
}

// Server runs the go-smtp servers.
type Server struct {
	opts    Options
	cleanup *cleanup.Cleanup
	log     *slog.Logger

	mu      sync.Mutex // guards servers
	servers []*smtp.Server
}

// New returns a server; Serve starts it.
func New(opts Options, c *cleanup.Cleanup, log *slog.Logger) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 5 * time.Minute
	}
	return &Server{opts: opts, cleanup: c, log: log}
}

// LoadUsers reads a users file: one "name:bcrypt-hash" per line, # comments.
func LoadUsers(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	users := map[string][]byte{}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s:%d: want name:bcrypt-hash", path, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("%s:%d: user %q: not a bcrypt hash", path, n, name)
		}
		users[name] = []byte(hash)
	}
	return users, sc.Err()
}

func (s *Server) newSMTP(l Listener) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return s.newSession(c, l), nil
	}))
	srv.Domain = s.opts.Hostname
	srv.MaxMessageBytes = s.opts.MaxMessageSize
	srv.MaxRecipients = s.opts.MaxRecipients
	srv.EnableSMTPUTF8 = true
	srv.ReadTimeout = s.opts.ReadTimeout
	srv.WriteTimeout = s.opts.ReadTimeout
	// RFC 5321 §4.5.3.1.5: lines up to 1000 octets; go-smtp's default is 2000;
	// keep a margin for real-world long header lines.
	srv.MaxLineLength = 4000
	srv.TLSConfig = l.TLS
	srv.ErrorLog = slogPrinter{s.log}
	return srv
}

// Serve accepts connections on ln until ctx is done, then shuts down,
// letting sessions in DATA finish within the context given to Shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener, l Listener) error {
	srv := s.newSMTP(l)
	if l.ImplicitTLS && l.TLS != nil {
		ln = tls.NewListener(ln, l.TLS)
	} else {
		ln = smuggleListener{ln}
	}
	s.mu.Lock()
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown closes the listeners and waits for sessions until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) {
	p.log.Debug("smtp", "msg", fmt.Sprintf(format, v...))
}
func (p slogPrinter) Println(v ...any) { p.log.Debug("smtp", "msg", fmt.Sprint(v...)) }

// Replies, declared once with their enhanced codes.
var (
	errRelayDenied = func(rcpt string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: "<" + rcpt + ">: Relay access denied"}
	}
	errBadRcpt = func(err error) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
			Message: "Bad recipient address syntax: " + err.Error()}
	}
	errBadSender = func(err error) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7},
			Message: "Bad sender address syntax: " + err.Error()}
	}
	errSmuggling = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Bare CR or LF next to a lone dot refused (SMTP smuggling)"}
	errSMTPUTF8Needed = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
		Message: "Non-ASCII address requires SMTPUTF8"}
)

type session struct {
	s        *Server
	conn     *smtp.Conn
	listener Listener
	clientIP netip.Addr
	trusted  bool
	user     string
	watch    *smuggleConn // nil once the connection is TLS

	from     string
	fromSet  bool
	utf8     bool
	rcpts    []string
	accepted int
}

func (s *Server) newSession(c *smtp.Conn, l Listener) *session {
	ss := &session{s: s, conn: c, listener: l}
	if w, ok := c.Conn().(*smuggleConn); ok {
		ss.watch = w
	} else if w, ok := c.Conn().(*tls.Conn); ok {
		if sc, ok := w.NetConn().(*smuggleConn); ok {
			sc.stop() // STARTTLS: the stream below is ciphertext now
		}
	}
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		ss.clientIP = ap.Addr().Unmap()
		for _, p := range s.opts.Trusted {
			if p.Contains(ss.clientIP) {
				ss.trusted = true
				break
			}
		}
	}
	return ss
}

// AuthMechanisms offers PLAIN on listeners that have users; go-smtp only
// offers AUTH once TLS is active (AllowInsecureAuth is false).
func (ss *session) AuthMechanisms() []string {
	if ss.listener.Users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.listener.Users == nil || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		hash, ok := ss.listener.Users[username]
		if !ok || (identity != "" && identity != username) {
			// Same cost as a real check, so that timing does not reveal users.
			_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
			return smtp.ErrAuthFailed
		}
		if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
			return smtp.ErrAuthFailed
		}
		ss.user = username
		return nil
	}), nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("facteur-dummy"), bcrypt.MinCost)

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.reset()
	if from != "" {
		// One parser (relay/address) for the daemon and the shim; the wire
		// form keeps a quoted local part quoted.
		mb, err := address.FromSMTP(from)
		if err != nil {
			return errBadSender(err)
		}
		if mb.UTF8() && !opts.UTF8 {
			return errSMTPUTF8Needed
		}
		from = mb.String()
	}
	// The guard counts only clients that may relay: an outsider's MAIL
	// must not spend the app's per-sender budget (it gets 554 at RCPT).
	if g := ss.s.opts.Guard; g != nil && (ss.trusted || ss.user != "") {
		if err := g.Admit(ss.clientIP.String(), from, ss.user, ss.s.opts.Now()); err != nil {
			ss.s.log.Warn("refused", "client", ss.clientIP.String(), "from", "<"+from+">", "resp", fmt.Sprintf("%d %s", err.Code, err.Message))
			return err
		}
	}
	ss.from, ss.fromSet, ss.utf8 = from, true, opts.UTF8
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	// Relay control comes first, before anything that could reveal
	// information: an untrusted, unauthenticated client gets 554 5.7.1 for
	// every recipient, local_domain, %-hacks and source routes included.
	if !ss.trusted && ss.user == "" {
		ss.s.log.Warn("relay denied", "client", ss.clientIP.String(), "rcpt", "<"+to+">")
		return errRelayDenied(to)
	}
	mb, err := address.FromSMTP(to)
	if err != nil {
		return errBadRcpt(err)
	}
	if mb.UTF8() && !ss.utf8 {
		return errSMTPUTF8Needed
	}
	to = mb.String()
	// Aliases are expanded here so that a suppressed member is refused
	// (or dropped) alone: the other members of `root` still get the mail.
	expanded := ss.s.cleanup.ExpandRecipient(to)
	var keep []string
	var refusal *smtp.SMTPError
	for _, r := range expanded {
		if sup := ss.s.opts.Suppressions; sup != nil {
			if why, ok := sup.Suppressed(context.Background(), r, ss.s.opts.Now()); ok {
				if ss.s.opts.DropSuppressed || len(expanded) > 1 {
					ss.s.log.Info("suppressed", "rcpt", "<"+r+">", "client", ss.clientIP.String(), "resp", "accepted and dropped: "+why)
				} else {
					refusal = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + r + ">: " + why}
				}
				continue
			}
		}
		keep = append(keep, r)
	}
	if len(keep) == 0 && refusal != nil {
		return refusal
	}
	if len(keep) == 0 && !ss.s.opts.DropSuppressed && len(expanded) > 1 {
		// Every member of the alias is suppressed: refuse like one.
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: every recipient of this alias is suppressed"}
	}
	ss.rcpts = append(ss.rcpts, keep...)
	ss.accepted++
	return nil
}

func (ss *session) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		// go-smtp maps ErrDataTooLarge to 552; anything else is a broken
		// connection: answer 4xx if the client is still there.
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return smtp.ErrDataTooLarge
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Error reading message"}
	}
	if ss.watch != nil && ss.watch.take() {
		ss.s.log.Warn("refused", "client", ss.clientIP.String(), "from", "<"+ss.from+">", "resp", "550 5.5.2 smuggling")
		return errSmuggling
	}
	if len(ss.rcpts) == 0 {
		// Every recipient was suppressed in drop mode: accept, store nothing.
		return nil
	}
	proto := "ESMTP"
	if _, isTLS := ss.conn.TLSConnectionState(); isTLS {
		proto = "ESMTPS"
	}
	if ss.user != "" {
		proto += "A"
	}
	id, err := ss.s.cleanup.Process(context.Background(), cleanup.Message{
		Sender:     ss.from,
		Recipients: ss.rcpts,
		ClientIP:   ss.clientIP.String(),
		Helo:       ss.conn.Hostname(),
		AuthUser:   ss.user,
		Protocol:   proto,
		SMTPUTF8:   ss.utf8,
		Data:       buf.Bytes(),
	}, ss.s.opts.Now())
	if err != nil {
		return err
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + string(id)}
}

func (ss *session) reset() {
	ss.from, ss.fromSet, ss.utf8, ss.rcpts, ss.accepted = "", false, false, nil, 0
}

func (ss *session) Reset()        { ss.reset() }
func (ss *session) Logout() error { return nil }

// Package submission is facteur's SMTP server for local apps (PHPMailer on
// 127.0.0.1:25, the sendmail shim on DATA_DIR/public/submit.sock) and,
// optionally, authenticated clients on ports 587/465. It decides who may
// relay (trusted_networks, the local socket or AUTH: never an open relay)
// and checks envelopes; cleanup does the rest. It owns the go-smtp servers
// and their listeners.
//
// A shared web server is hostile ground (issue 11): the session learns the
// local account behind a connection from the kernel (peer.go), spends that
// account's per_user budget per recipient, and bounds what one client can
// hold: connections, idle time, memory for DATA (spool.go), AUTH attempts
// (auth.go). conn.go watches the bytes under go-smtp (smuggling, bare-LF
// end of data, idle deadlines, refusal log).
package submission

import (
	"bufio"
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
	"facteur/relay/bdat"
	"facteur/relay/breaker"
	"facteur/relay/cleanup"
	"facteur/relay/clock"
	"facteur/relay/guard"
	"facteur/relay/maillog"
	"facteur/relay/unixsock"
)

// Suppressions answers whether a recipient is suppressed (issue 7). The
// session asks at RCPT time so that the app learns it at once.
type Suppressions interface {
	// Suppressed returns the refusal text when addr is suppressed.
	Suppressed(ctx context.Context, addr string, now time.Time) (why string, ok bool)
}

// Breaker is the per-sender circuit breaker (issue 21): a recipient
// refused (or dropped) at RCPT because it is suppressed counts as failed
// against the sender, as a 5xx would once queued; a hacked site spraying
// suppressed addresses trips it without a single message queued. Sessions
// call it concurrently.
type Breaker interface {
	Suppressed(s breaker.Sender, rcpt, why string, now time.Time)
}

// Guard is the abuse guard of issues 8 and 11 (rate limits per client,
// sender and user; queue and disk floors). A nil Guard allows everything.
// Sessions call it concurrently.
type Guard interface {
	// Admit is asked at MAIL FROM; a non-nil error is the reply to send.
	Admit(c guard.Client, sender string, now time.Time) *smtp.SMTPError
	// Spend is asked at each RCPT: one recipient of user's budget. The
	// Spent is refunded when the transaction ends without a message.
	Spend(user string, n int, now time.Time) (*guard.Spent, *smtp.SMTPError)
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
	Breaker        Breaker      // may be nil
	Clock          clock.Clock  // default clock.Real
	// ReadTimeout bounds each command and DATA read (RFC 5321 §4.5.3.2.7's
	// server timeout is 5 minutes), counted from the last command that made
	// progress (issue 11 §3).
	ReadTimeout time.Duration
	// MaxConnections (all listeners) and MaxConnectionsPerIP (clients
	// outside trusted_networks and loopback): past them, 421 4.7.0.
	MaxConnections, MaxConnectionsPerIP int
	// MaxAuthFailures per session before 421 4.7.0 and disconnection;
	// AuthFailuresPerIP per hour and client address (default 10).
	MaxAuthFailures, AuthFailuresPerIP int
	// SenderLogin: the envelope senders a local user may use (Postfix's
	// local_login_sender_maps); a user not listed may use any.
	SenderLogin map[string][]string
	// SpoolDir receives the temporary files of large messages ("" is
	// os.TempDir).
	SpoolDir string
}

// Listener describes one listening socket.
type Listener struct {
	Addr        string
	TLS         *tls.Config // offer STARTTLS (or implicit TLS) with this config
	ImplicitTLS bool
	Users       map[string][]byte // user -> bcrypt hash; non-nil enables AUTH PLAIN
	// Local marks the shim's Unix socket (DATA_DIR/public/submit.sock):
	// every client is a local user, known by SO_PEERCRED, and may relay.
	Local bool
}

// Server runs the go-smtp servers.
type Server struct {
	opts    Options
	cleanup *cleanup.Cleanup
	log     *slog.Logger

	// mu guards servers, listeners and closed. Serve runs in a goroutine of
	// its own and Shutdown may come first (a SIGTERM during the start):
	// closed makes a late Serve return at once, and Shutdown closes the
	// listeners itself, since go-smtp only closes those its Serve has
	// registered, which it does after Serve is called.
	mu        sync.Mutex
	servers   []*smtp.Server
	listeners []net.Listener
	closed    bool

	limits limits
	names  unixsock.Names
	budget budget
	auth   authFailures
}

// New returns a server; Serve starts it.
func New(opts Options, c *cleanup.Cleanup, log *slog.Logger) *Server {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 5 * time.Minute
	}
	if opts.MaxAuthFailures <= 0 {
		opts.MaxAuthFailures = 3
	}
	if opts.AuthFailuresPerIP <= 0 {
		opts.AuthFailuresPerIP = 10
	}
	return &Server{opts: opts, cleanup: c, log: log,
		limits: limits{max: opts.MaxConnections, perIP: opts.MaxConnectionsPerIP},
		budget: newBudget()}
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
	dummy := dummyHashFor(l.Users)
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return s.newSession(c, l, dummy), nil
	}))
	srv.Domain = s.opts.Hostname
	srv.MaxMessageBytes = s.opts.MaxMessageSize
	srv.MaxRecipients = s.opts.MaxRecipients
	srv.EnableSMTPUTF8 = true
	srv.ReadTimeout = s.opts.ReadTimeout
	srv.WriteTimeout = s.opts.ReadTimeout
	// RFC 5321 §4.5.3.1.5: lines up to 1000 octets; go-smtp's default is 2000.
	// Body lines get a margin for real-world senders; header lines are held
	// to 998 by Data.
	srv.MaxLineLength = maxLine
	srv.TLSConfig = l.TLS
	srv.ErrorLog = slogPrinter{s.log}
	return srv
}

// Serve accepts connections on ln until Shutdown, which lets sessions in
// DATA finish within the context given to it. Called after Shutdown, Serve
// closes ln and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener, l Listener) error {
	srv := s.newSMTP(l)
	ln = &listener{Listener: ln, srv: s, local: l.Local, tls: l.ImplicitTLS && l.TLS != nil}
	if l.ImplicitTLS && l.TLS != nil {
		ln = tls.NewListener(ln, l.TLS)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.servers = append(s.servers, srv)
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown closes the listeners, those of a Serve yet to come included,
// and waits for sessions until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	servers, listeners := s.servers, s.listeners
	s.mu.Unlock()
	for _, ln := range listeners {
		ln.Close()
	}
	var errs []error
	for _, srv := range servers {
		// go-smtp closes the listeners again: already closed is fine.
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
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
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
			Message: "Bad sender address syntax: " + err.Error()}
	}
	errSmuggling = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Bare CR or LF next to a lone dot refused (SMTP smuggling)"}
	// A message ended by "\n.\n" is refused at once and the connection
	// closed, as Postfix ≥ 3.9 does with smtpd_forbid_bare_newline: accepting
	// it would let a bare LF end a message here and not downstream (issue
	// 13 §7).
	errBareLFEnd = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Bare LF next to the end-of-data dot refused: end lines with CRLF (SMTP smuggling guard)"}
	errLongHeader = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: fmt.Sprintf("Header line longer than %d octets (RFC 5322 section 2.1.1)", maxHeaderLine)}
	errBusy = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Temporary failure storing the message, try again later"}
	errSMTPUTF8Needed = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
		Message: "Non-ASCII address requires SMTPUTF8"}
)

// maxLine is the longest line go-smtp reads (body lines; header lines are
// held to 998).
const maxLine = 4000

type session struct {
	s        *Server
	conn     *smtp.Conn
	c        *conn // nil only if a listener was not wrapped (never in Serve)
	listener Listener
	clientIP netip.Addr
	trusted  bool
	user     string // AUTH user
	peer     Peer   // the local account behind the connection, if known
	peerDone bool   // peer was looked up
	dummy    []byte // bcrypt hash of the listener's cost, for unknown users
	authFail int

	from    string
	fromSet bool
	utf8    bool
	rcpts   []string
	spent   []*guard.Spent // per_user tokens of this transaction

	// bdat: go-smtp may run Data in a goroutine of its own (BDAT).
	bdat bdat.Tracker
}

func (s *Server) newSession(c *smtp.Conn, l Listener, dummy []byte) *session {
	ss := &session{s: s, conn: c, listener: l, dummy: dummy}
	switch w := c.Conn().(type) {
	case *conn:
		ss.c = w
	case *tls.Conn:
		if sc, ok := w.NetConn().(*conn); ok {
			ss.c = sc
			sc.stopWatch() // the stream below is ciphertext now
		}
	}
	if ss.c != nil {
		ss.c.touch()
	}
	if l.Local {
		// The shim's socket: a local user, who may always submit (as
		// Postfix's postdrop), known by the kernel.
		ss.trusted = true
		ss.clientIP = netip.MustParseAddr("127.0.0.1")
		if uc, ok := c.Conn().(*conn); ok {
			if u, ok := uc.Conn.(*net.UnixConn); ok {
				if p, err := peerOfUnix(u); err == nil {
					ss.peer = p
					ss.peer.User = s.names.Lookup(p.UID)
				}
			}
		}
		ss.peerDone = true
		return ss
	}
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		ss.clientIP = ap.Addr().Unmap()
		ss.trusted = s.trusted(ss.clientIP)
	}
	return ss
}

// localPeer finds, once per session, the account that owns a loopback
// client's socket; unknown when the kernel cannot say.
func (ss *session) localPeer() Peer {
	if ss.peerDone {
		return ss.peer
	}
	ss.peerDone = true
	if !ss.clientIP.IsLoopback() || ss.c == nil {
		return ss.peer
	}
	if ss.c.peerDone {
		// Looked up at accept (a trusted loopback client).
		ss.peer = ss.c.peer
		return ss.peer
	}
	if p, err := peerOfTCP(ss.c.Conn); err == nil {
		ss.peer = p
		ss.peer.User = ss.s.names.Lookup(p.UID)
	} else {
		ss.s.log.Debug("peer uid unknown", "client", ss.clientIP.String(), "err", err)
	}
	return ss.peer
}

// budgetUser is whose per_user budget a recipient spends: the AUTH user,
// else the local account.
func (ss *session) budgetUser() string {
	if ss.user != "" {
		return ss.user
	}
	if p := ss.localPeer(); p.Known {
		return p.User
	}
	return ""
}

// breakerSender is who the breaker holds this transaction's sender to be:
// the same keys as the queued message would carry (the local user, the
// AUTH user, the envelope sender as cleanup rewrites it).
func (ss *session) breakerSender() breaker.Sender {
	bs := breaker.Sender{AuthUser: ss.user, Address: ss.s.cleanup.RewriteSender(ss.from)}
	if p := ss.localPeer(); p.Known {
		bs.User = p.User
	}
	return bs
}

func (ss *session) client() string {
	if ss.listener.Local {
		return "local"
	}
	return ss.clientIP.String()
}

// refuse logs a refusal with its context and the reply exactly as the
// client sees it, one line, and returns the reply (issue 13 §4).
func (ss *session) refuse(err *smtp.SMTPError, kv ...any) error {
	attrs := []any{"client", ss.client()}
	if p := ss.peer; p.Known {
		attrs = append(attrs, "uid", p.UID, "user", p.User)
	} else if ss.user != "" {
		attrs = append(attrs, "user", ss.user)
	}
	if ss.fromSet {
		attrs = append(attrs, "from", "<"+ss.from+">")
	}
	attrs = append(attrs, kv...)
	attrs = append(attrs, "resp", formatReply(err))
	ss.s.log.Warn(maillog.Refused, attrs...)
	if ss.c != nil {
		ss.c.logged.Store(true)
	}
	return err
}

// formatReply is a reply as it goes on the wire: "451 4.7.1 text".
func formatReply(se *smtp.SMTPError) string {
	e := se.EnhancedCode
	if e == smtp.EnhancedCodeNotSet {
		e = smtp.EnhancedCode{se.Code / 100, 0, 0}
	}
	if e == smtp.NoEnhancedCode {
		return fmt.Sprintf("%d %s", se.Code, se.Message)
	}
	return fmt.Sprintf("%d %d.%d.%d %s", se.Code, e[0], e[1], e[2], se.Message)
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
	if err := ss.authBlocked(); err != nil {
		return nil, err
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		hash, ok := ss.listener.Users[username]
		if !ok || (identity != "" && identity != username) {
			// The same bcrypt cost as a real user's check, so that timing
			// does not tell which users exist (issue 11 §6).
			_ = bcrypt.CompareHashAndPassword(ss.dummy, []byte(password))
			return ss.authFailed(username)
		}
		if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
			return ss.authFailed(username)
		}
		ss.user = username
		if ss.c != nil {
			ss.c.touch()
		}
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
			return ss.refuse(errBadSender(err), "from", "<"+from+">")
		}
		if mb.UTF8() && !opts.UTF8 {
			return ss.refuse(errSMTPUTF8Needed, "from", "<"+from+">")
		}
		from = mb.String()
	}
	if ss.trusted || ss.user != "" {
		if p := ss.localPeer(); p.Known && ss.user == "" {
			if err := ss.s.CheckSenderLogin(p.User, from); err != nil {
				return ss.refuse(err, "from", "<"+from+">")
			}
		}
		// The guard counts only clients that may relay: an outsider's MAIL
		// must not spend the app's per-sender budget (it gets 554 at RCPT).
		if g := ss.s.opts.Guard; g != nil {
			if err := g.Admit(guard.Client{IP: ss.clientIP.String(), Trusted: ss.trusted}, from, ss.s.opts.Clock.Now()); err != nil {
				return ss.refuse(err, "from", "<"+from+">")
			}
		}
	}
	ss.from, ss.fromSet, ss.utf8 = from, true, opts.UTF8
	return nil
}

// CheckSenderLogin applies sender_login (Postfix's local_login_sender_maps)
// to a local user's envelope sender as cleanup will rewrite it (`senders`):
// www-data's bare sender becomes its mapped address before the check. Pickup
// asks it too, for maildrop files.
func (s *Server) CheckSenderLogin(user, from string) *smtp.SMTPError {
	pats, ok := s.opts.SenderLogin[user]
	if !ok {
		return nil
	}
	eff := s.cleanup.RewriteSender(from)
	if SenderAllowed(pats, eff) {
		return nil
	}
	return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "<" + eff + ">: Sender address rejected: not owned by user " + user}
}

// SenderAllowed reports whether sender matches one of pats: an address, a
// "*@domain", a "local@*", or "<>" for the null sender. Domains compare
// without case.
func SenderAllowed(pats []string, sender string) bool {
	for _, p := range pats {
		if p == "<>" {
			if sender == "" {
				return true
			}
			continue
		}
		if sender == "" {
			continue
		}
		pl, pd := address.Split(p)
		sl, sd := address.Split(sender)
		if (pd == "*" || strings.EqualFold(pd, sd)) && (pl == "*" || pl == sl) {
			return true
		}
	}
	return false
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	rcpt := "<" + to + ">"
	// Relay control comes first, before anything that could reveal
	// information: an untrusted, unauthenticated client gets 554 5.7.1 for
	// every recipient, local_domain, %-hacks and source routes included.
	if !ss.trusted && ss.user == "" {
		return ss.refuse(errRelayDenied(to), "rcpt", rcpt)
	}
	mb, err := address.FromSMTP(to)
	if err != nil {
		return ss.refuse(errBadRcpt(err), "rcpt", rcpt)
	}
	if mb.UTF8() && !ss.utf8 {
		return ss.refuse(errSMTPUTF8Needed, "rcpt", rcpt)
	}
	to = mb.String()
	// Aliases are expanded here so that a suppressed member is refused
	// (or dropped) alone: the other members of `root` still get the mail.
	expanded := ss.s.cleanup.ExpandRecipient(to)
	var keep []string
	var refusal *smtp.SMTPError
	for _, r := range expanded {
		if sup := ss.s.opts.Suppressions; sup != nil {
			if why, ok := sup.Suppressed(context.Background(), r, ss.s.opts.Clock.Now()); ok {
				if b := ss.s.opts.Breaker; b != nil {
					b.Suppressed(ss.breakerSender(), r, why, ss.s.opts.Clock.Now())
				}
				if ss.s.opts.DropSuppressed || len(expanded) > 1 {
					ss.s.log.Info(maillog.Suppressed, "rcpt", "<"+r+">", "client", ss.client(), "resp", "accepted and dropped: "+why)
				} else {
					refusal = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + r + ">: " + why}
				}
				continue
			}
		}
		keep = append(keep, r)
	}
	if len(keep) == 0 && refusal != nil {
		return ss.refuse(refusal, "rcpt", rcpt)
	}
	if len(keep) == 0 && !ss.s.opts.DropSuppressed && len(expanded) > 1 {
		// Every member of the alias is suppressed: refuse like one.
		return ss.refuse(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: every recipient of this alias is suppressed"}, "rcpt", rcpt)
	}
	// per_user counts recipients (issue 11 §2), local users included: a
	// hacked site gets 451 while the others still send.
	if g := ss.s.opts.Guard; g != nil {
		sp, err := g.Spend(ss.budgetUser(), 1, ss.s.opts.Clock.Now())
		if err != nil {
			return ss.refuse(err, "rcpt", rcpt)
		}
		if sp != nil {
			ss.spent = append(ss.spent, sp)
		}
	}
	ss.rcpts = append(ss.rcpts, keep...)
	if ss.c != nil {
		ss.c.touch()
	}
	return nil
}

// copyBufs are the buffers DATA is copied through into the spool.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 8<<10); return &b }}

func (ss *session) Data(r io.Reader) error {
	call := ss.bdat.Start(r)
	defer call.End()
	// Whether this message came by DATA (its 354 was written, and the
	// final reply is not yet): BDAT sends no 354. BDAT chunks are taken
	// as they are, no dot removed, so the watch's flag means nothing for
	// them, and its patterns show up in legitimate ones (a chunk that ends
	// between the CR and LF of a "." line reads "<CR><LF>.<CR>BDAT"):
	// cleanup's Normalize, which sees the whole message, is their guard.
	viaDATA := ss.c != nil && ss.c.inData.Load()
	sp := newSpool(ss.s.opts.SpoolDir)
	defer sp.close()
	// Once Data is done with the spooled bytes (Process included), another
	// session may reuse them.
	defer sp.release()
	// io.Copy would allocate 32 KiB per message (neither side has
	// ReadFrom/WriteTo): a third of all the bytes the daemon allocated.
	buf := copyBufs.Get().(*[]byte)
	_, err := io.CopyBuffer(sp, r, *buf)
	copyBufs.Put(buf)
	if err != nil {
		if errors.Is(err, smtp.ErrDataReset) {
			// A BDAT transaction the client aborted, maybe before this
			// goroutine even ran (BDAT 0, RSET): the session may be in its
			// next transaction already, so touch nothing of it, and return
			// only once a Reset has taken this call (package bdat).
			call.Aborted()
			return err
		}
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return ss.refuse(smtp.ErrDataTooLarge, "size", sp.size)
		}
		if errors.Is(err, smtp.ErrTooLongLine) {
			return ss.refuse(&smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
				Message: fmt.Sprintf("Line longer than %d octets", maxLine)})
		}
		// Anything else is a broken connection (or a full disk under the
		// spool): answer 4xx if the client is still there.
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return ss.refuse(se)
		}
		ss.s.log.Warn(maillog.Data, "client", ss.client(), "err", err)
		return ss.refuse(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Error reading message"})
	}
	if ss.c != nil {
		if flagged, bareEnd := ss.c.take(); flagged && viaDATA {
			if bareEnd {
				return ss.refuse(errBareLFEnd)
			}
			return ss.refuse(errSmuggling)
		}
	}
	if sp.longHeader || (sp.inHeader && sp.lineLen > maxHeaderLine+1) {
		return ss.refuse(errLongHeader)
	}
	if len(ss.rcpts) == 0 {
		// Every recipient was suppressed in drop mode: accept, store nothing.
		return nil
	}
	release, err := ss.s.budget.acquire(context.Background(), sp.size)
	if err != nil {
		return ss.refuse(errBusy)
	}
	defer release()
	data, err := sp.bytes()
	if err != nil {
		ss.s.log.Error(maillog.Data, "client", ss.client(), "err", err)
		return ss.refuse(errBusy)
	}
	sp.close()
	proto := "ESMTP"
	if _, isTLS := ss.conn.TLSConnectionState(); isTLS {
		proto = "ESMTPS"
	}
	if ss.user != "" {
		proto += "A"
	}
	if ss.listener.Local {
		proto = "local"
	}
	m := cleanup.Message{
		Sender:     ss.from,
		Recipients: ss.rcpts,
		ClientIP:   ss.clientIP.String(),
		Helo:       ss.conn.Hostname(),
		AuthUser:   ss.user,
		Protocol:   proto,
		SMTPUTF8:   ss.utf8,
		Data:       data,
	}
	if p := ss.localPeer(); p.Known {
		m.User, m.UID = p.User, p.UID
	}
	id, err := ss.s.cleanup.Process(context.Background(), m, ss.s.opts.Clock.Now())
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return ss.refuse(se, "size", len(data), "nrcpt", len(ss.rcpts))
		}
		return err
	}
	ss.spent = nil // the message is queued: its recipients stay spent
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + string(id)}
}

func (ss *session) reset() {
	now := ss.s.opts.Clock.Now()
	for _, sp := range ss.spent {
		sp.Refund(now)
	}
	ss.from, ss.fromSet, ss.utf8, ss.rcpts, ss.spent = "", false, false, nil, nil
}

// Reset and Logout wait for a BDAT transaction's Data (package bdat).
func (ss *session) Reset()        { ss.bdat.Wait(); ss.reset() }
func (ss *session) Logout() error { ss.bdat.Wait(); ss.reset(); return nil }

package submission

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"facteur/relay/maillog"
	"facteur/relay/unixsock"
)

// conn wraps every accepted connection. It is where facteur sees the bytes
// under go-smtp, and it does four things go-smtp cannot:
//
//   - Smuggling. go-smtp's DATA reader ends a message only at
//     <CR><LF>.<CR><LF>, but after a CRLF it drops the leading dot of
//     "<CR><LF>.<LF>" and "<CR><LF>.<CR>x", so those variants reach Data as
//     harmless content whose dot is gone. The conn watches the plaintext
//     stream for a lone dot next to a bare CR or LF (or a NUL) and flags the
//     connection; Data refuses a flagged message. Under TLS the stream is
//     ciphertext, so the watch stops and cleanup's normalisation is the
//     guard.
//   - Bare-LF end of data (issue 13 §7). A client that ends its message
//     with "\n.\n" waits for an answer go-smtp would never give: it still
//     waits for CRLF.CRLF. When the flag rises inside DATA, the conn ends the
//     data for go-smtp right there (it hands it a CRLF.CRLF and then EOF), so
//     the refusal is answered at once and the connection closed after it:
//     nothing after the dot is read as commands.
//   - Idle time (issue 11 §3). go-smtp re-arms the read deadline before
//     every command, so NOOP kept a connection open for ever. The conn
//     caps each deadline at the last progress (session start, an accepted
//     RCPT, DATA bytes, a successful AUTH) plus the timeout.
//   - Refusals that go-smtp writes itself (syntax, SIZE, too many
//     recipients, bad sequence, timeouts) are logged from the reply line, one
//     line each, unless the session logged the refusal already.
type conn struct {
	net.Conn
	srv     *Server
	ip      netip.Addr // invalid on the local socket
	local   bool       // the shim's Unix socket
	release func()     // gives back the connection slot; called once by Close

	// The local account found at accept for a loopback client (peerDone),
	// so that the session does not ask the kernel a second time.
	peer     Peer
	peerDone bool

	// Read side, touched only by go-smtp's reading goroutine.
	w       [3]byte // the last three bytes read, oldest first
	pending []byte  // injected end of data still to hand out
	greeted bool    // the 220 greeting was written (only Write touches it)
	ended   bool    // after pending: EOF

	flagged  atomic.Bool // a smuggling pattern was seen since the last take
	bareEnd  atomic.Bool // the data was ended early on such a pattern
	off      atomic.Bool // TLS started: stop watching the bytes
	inData   atomic.Bool // between the 354 reply and the reply to the final dot
	closeNow atomic.Bool // close the connection after the next reply
	logged   atomic.Bool // the session logged the refusal about to be written
	isClosed atomic.Bool

	mu sync.Mutex // guards progress
	// progress is wall-clock time: it caps the socket's read deadline,
	// which the net poller measures in real time.
	progress time.Time
	idle     time.Duration

	closeOnce sync.Once
}

func (c *conn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.ended {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(b)
	if n > 0 && !c.off.Load() {
		cut := c.scan(b[:n])
		if cut >= 0 && c.inData.Load() {
			// "\r\n\r\n.\r\n" ends go-smtp's DATA from any state of its
			// reader (mid-line, after a CR, after a dot).
			c.pending = []byte("\r\n\r\n.\r\n")
			c.ended = true
			c.bareEnd.Store(true)
			c.closeNow.Store(true)
			m := copy(b[cut:], c.pending)
			c.pending = c.pending[m:]
			return cut + m, nil
		}
	}
	if n > 0 && c.inData.Load() {
		// A message being sent is progress: a slow but live upload is not
		// idle.
		c.touch()
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	return n, err
}

func isBreak(b byte) bool { return b == '\r' || b == '\n' }

// scan flags smuggling patterns and returns the index in b where the first
// flagged dot line starts (0 when it started in an earlier read), or -1.
//
// It runs the exact step only where a pattern can end, and skips the rest
// with bytes.IndexByte (the byte-at-a-time form stays in scan_test.go as
// the reference, FuzzScan). A pattern ends at cur only if w3 is a dot
// after a break (w2 CR or LF) or w2 is a dot after a break (w1). When
// neither holds at b[i], neither holds at any byte up to the next dot d
// (included): at b[i+1], w2 is i's w3 and w1 its w2, the first test that
// just failed; further on, w2 and w3 lie in b[i:d], which has no dot. So
// the scan jumps to b[d+1], the window (carried across reads) refilled
// with the three bytes before it.
func (c *conn) scan(b []byte) int {
	cut := -1
	w1, w2, w3 := c.w[0], c.w[1], c.w[2]
	for i := 0; i < len(b); {
		if !(w3 == '.' && isBreak(w2)) && !(w2 == '.' && isBreak(w1)) {
			end := len(b) // the window moves past b[i:end]
			if d := bytes.IndexByte(b[i:], '.'); d >= 0 {
				end = i + d + 1
			}
			if end-i >= 3 {
				w1, w2, w3 = b[end-3], b[end-2], b[end-1]
			} else {
				for _, ch := range b[i:end] {
					w1, w2, w3 = w2, w3, ch
				}
			}
			i = end
			continue
		}
		cur := b[i]
		hit := -2 // index in b of the dot of a pattern ending at cur
		if w3 == '.' && isBreak(w2) {
			bareBefore := w2 == '\r' || w1 != '\r'
			if cur == '\n' || cur == 0 || (cur == '\r' && bareBefore) {
				hit = i - 1
			}
		}
		if hit == -2 && w3 == '\r' && w2 == '.' && isBreak(w1) && cur != '\n' {
			hit = i - 2
		}
		if hit != -2 {
			c.flagged.Store(true)
			if cut < 0 {
				cut = max(hit, 0)
			}
		}
		w1, w2, w3 = w2, w3, cur
		i++
	}
	c.w = [3]byte{w1, w2, w3}
	return cut
}

// take reports and clears the flag.
func (c *conn) take() (flagged, bareEnd bool) {
	return c.flagged.Swap(false), c.bareEnd.Load()
}

// stopWatch: STARTTLS, the stream below is ciphertext now.
func (c *conn) stopWatch() {
	c.off.Store(true)
	c.flagged.Store(false)
}

func (c *conn) touch() {
	c.mu.Lock()
	c.progress = time.Now()
	c.mu.Unlock()
}

// SetReadDeadline caps go-smtp's deadline (now + timeout before each
// command) at the last progress + timeout.
func (c *conn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && c.idle > 0 {
		c.mu.Lock()
		limit := c.progress.Add(c.idle)
		c.mu.Unlock()
		if t.After(limit) {
			t = limit
		}
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	final := true
	if !c.off.Load() && err == nil {
		final = c.observe(b)
	}
	if final && c.closeNow.Load() {
		c.isClosed.Store(true)
		c.Conn.Close()
	}
	return n, err
}

// observe follows the replies go-smtp writes (one line per Write: it
// flushes after each) and reports whether b ended a reply.
func (c *conn) observe(b []byte) bool {
	final := false
	// SplitSeq, not Split: no slice of lines allocated per reply written.
	for line := range bytes.SplitSeq(bytes.TrimRight(b, "\r\n"), []byte("\r\n")) {
		if len(line) < 4 || line[3] != ' ' {
			continue // a continuation line, or not a reply
		}
		final = true
		switch {
		case bytes.HasPrefix(line, []byte("354")):
			c.inData.Store(true)
			c.touch()
			continue
		case bytes.HasPrefix(line, []byte("220")):
			// The first 220 is the greeting; another one is the go-ahead
			// of STARTTLS: from here on the bytes are ciphertext.
			if c.greeted {
				c.stopWatch()
			}
			c.greeted = true
		case line[0] == '4' || line[0] == '5':
			if !c.logged.Swap(false) && !c.isClosed.Load() {
				c.srv.log.Warn(maillog.Refused, "client", c.client(), "resp", string(line))
			}
		}
		c.inData.Store(false)
	}
	return final
}

func (c *conn) client() string {
	if c.local {
		return "local"
	}
	return c.ip.String()
}

func (c *conn) Close() error {
	c.isClosed.Store(true)
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
	return err
}

// limits counts connections for max_connections and max_connections_per_ip
// (issue 11 §3, Postfix's smtpd_client_connection_count_limit). The
// per-client count is kept per key: a client address outside
// trusted_networks (max_connections_per_ip), or a local user, the uid the
// kernel names for a loopback client or the shim's socket (half of
// max_connections). Every site of a web server connects from 127.0.0.1, so
// loopback is not counted by address; counted by uid, one hacked site
// always leaves half the slots to the others, while a busy site (100 PHP
// workers sending at once) is not cut at the per-address 20.
type limits struct {
	max, perIP int

	mu    sync.Mutex // guards total and byKey
	total int
	byKey map[string]int
}

// clientKey names what a connection is counted under: an address outside
// trusted_networks, or a local user; "" when nothing limits it per client.
type clientKey struct {
	key, who string
	user     bool // a local user, not an address
}

// acquire takes a slot for a client; total says whether it counts against
// max_connections (the shim's socket does not: its users are bounded by
// their own count, and a flood over TCP must not keep cron's mail out). It
// returns the release func, or the reason for refusing.
func (l *limits) acquire(k clientKey, total bool) (func(), string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if total && l.max > 0 && l.total >= l.max {
		return nil, fmt.Sprintf("Too many connections (max_connections %d)", l.max)
	}
	capacity := l.perIP
	if k.user {
		capacity = l.max / 2
	}
	if k.key != "" && capacity > 0 && l.byKey[k.key] >= capacity {
		return nil, "Too many connections from " + k.who
	}
	if total {
		l.total++
	}
	if k.key != "" {
		if l.byKey == nil {
			l.byKey = map[string]int{}
		}
		l.byKey[k.key]++
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if total {
			l.total--
		}
		if k.key != "" {
			if l.byKey[k.key]--; l.byKey[k.key] <= 0 {
				delete(l.byKey, k.key)
			}
		}
	}, ""
}

// listener wraps accepted connections in conn and enforces the limits.
type listener struct {
	net.Listener
	srv   *Server
	local bool
	tls   bool // implicit TLS: the bytes are ciphertext from the start
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &conn{Conn: nc, srv: l.srv, local: l.local, idle: l.srv.opts.ReadTimeout, progress: time.Now()}
		if l.tls {
			c.off.Store(true)
		}
		var k clientKey
		total := true
		if l.local {
			// The shim's socket: the user SO_PEERCRED names.
			total = false
			if u, ok := nc.(*net.UnixConn); ok {
				if p, err := peerOfUnix(u); err == nil {
					k = clientKey{"uid:" + strconv.Itoa(p.UID), "user " + l.srv.names.Lookup(p.UID), true}
				}
			}
		} else {
			if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
				c.ip = ap.Addr().Unmap()
			}
			switch {
			case !l.srv.trusted(c.ip):
				k = clientKey{"ip:" + c.ip.String(), c.ip.String(), false}
			case c.ip.IsLoopback():
				// trusted_networks are exempt by address, as Postfix
				// exempts $mynetworks; a loopback client is counted by
				// the local user that owns its socket (unknown: not
				// counted).
				c.peerDone = true
				p, err := peerOfTCP(nc)
				if errors.Is(err, unixsock.ErrNoOwner) {
					// Hung up before we could ask who it was: no SMTP
					// client closes before the greeting, but one that sent
					// a whole pipelined transaction and closed would pass
					// unknown, with no account's budget or sender_login
					// (the kernel even names such a socket uid 0). Dropped
					// unanswered; nothing it sent is read.
					l.srv.log.Warn(maillog.Refused, "client", c.client(), "reason", "closed before its local account could be learnt")
					nc.Close()
					continue
				}
				if err == nil {
					p.User = l.srv.names.Lookup(p.UID)
					c.peer = p
					k = clientKey{"uid:" + strconv.Itoa(p.UID), "user " + p.User, true}
				}
			}
		}
		release, why := l.srv.limits.acquire(k, total)
		if why != "" {
			// Answered here, before go-smtp sees it: a flood must not cost
			// a session each. The write cannot block long on a fresh socket.
			reply := "421 4.7.0 " + l.srv.opts.Hostname + " " + why + ", try again later"
			l.srv.log.Warn(maillog.Refused, "client", c.client(), "resp", reply)
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			nc.Write([]byte(reply + "\r\n"))
			nc.Close()
			continue
		}
		c.release = release
		return c, nil
	}
}

// trusted reports whether ip is in trusted_networks.
func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.opts.Trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

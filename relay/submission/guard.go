package submission

import (
	"net"
	"sync/atomic"
)

// go-smtp's DATA reader ends a message only at <CR><LF>.<CR><LF>, but after
// a CRLF it drops the leading dot of "<CR><LF>.<LF>" and "<CR><LF>.<CR>x",
// so those two smuggling variants arrive at Data as harmless content whose
// dot is gone. cleanup.Normalize sees and refuses every other variant. To
// refuse all of them alike, smuggleConn watches the plaintext byte stream
// for a lone dot next to a bare CR or LF (or a NUL) and flags the
// connection; Data refuses a flagged message. Under TLS the stream is
// ciphertext, so the watch stops and cleanup's normalisation is the guard.
type smuggleListener struct{ net.Listener }

func (l smuggleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &smuggleConn{Conn: c}, nil
}

type smuggleConn struct {
	net.Conn
	w       [3]byte     // the last three bytes read, oldest first; only Read touches it
	flagged atomic.Bool // a smuggling pattern was seen since the last take
	off     atomic.Bool // TLS started: stop watching
}

func (c *smuggleConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.off.Load() {
		c.scan(b[:n])
	}
	return n, err
}

func isBreak(b byte) bool { return b == '\r' || b == '\n' }

func (c *smuggleConn) scan(b []byte) {
	w1, w2, w3 := c.w[0], c.w[1], c.w[2]
	for _, cur := range b {
		if w3 == '.' && isBreak(w2) {
			bareBefore := w2 == '\r' || w1 != '\r'
			if cur == '\n' || cur == 0 || (cur == '\r' && bareBefore) {
				c.flagged.Store(true)
			}
		}
		if w3 == '\r' && w2 == '.' && isBreak(w1) && cur != '\n' {
			c.flagged.Store(true)
		}
		w1, w2, w3 = w2, w3, cur
	}
	c.w = [3]byte{w1, w2, w3}
}

// take reports and clears the flag.
func (c *smuggleConn) take() bool { return c.flagged.Swap(false) }

func (c *smuggleConn) stop() {
	c.off.Store(true)
	c.flagged.Store(false)
}

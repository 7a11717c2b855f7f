package delivery

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"time"

	"facteur/policy"
)

// errUnexpected is a reply code that makes no sense at its point of the
// conversation (a 3xx to RCPT): after it neither side knows where the other
// stands.
var errUnexpected = errors.New("unexpected reply")

// wire is our own reader and writer on the connection, used once a
// transaction is pipelined (RFC 2920): go-smtp's client sends each command
// and waits for its reply, which costs a round trip and two system calls a
// command. After the first pipelined transaction every command of the
// connection (RSET, QUIT) goes through wire, so that no reply is read by
// the wrong reader.
type wire struct {
	r *textproto.Reader
	w *bufio.Writer
}

// wireOf returns c's wire, made on first use. go-smtp's client has read
// nothing beyond the EHLO reply: the server sends nothing unasked.
func (c *Conn) wireOf() *wire {
	if c.wire == nil {
		c.wire = &wire{
			r: textproto.NewReader(bufio.NewReaderSize(c.netConn, 4096)),
			// Large enough for a typical message and its final dot in
			// one write.
			w: bufio.NewWriterSize(c.netConn, 16<<10),
		}
	}
	return c.wire
}

// read reads one reply under limit (socket deadlines, here and below, are
// wall-clock times, the net poller's).
func (c *Conn) read(limit time.Duration) (policy.Reply, error) {
	return c.readPass(limit, 0)
}

// readPass is read for a step whose reply with code pass (a class, 2 for
// any 2xx, or a whole code, 354) lets the transaction go on and is then
// dropped: that reply comes back as its code alone, its text neither
// copied nor parsed (three of a message's four replies).
func (c *Conn) readPass(limit time.Duration, pass int) (policy.Reply, error) {
	code, msg, err := c.wire.response(func() {
		_ = c.netConn.SetReadDeadline(time.Now().Add(limit))
	}, pass)
	if err != nil {
		var pe textproto.ProtocolError
		if errors.As(err, &pe) || code == 0 {
			return policy.Reply{}, err
		}
	}
	if code < 200 || code > 599 {
		return policy.Reply{}, fmt.Errorf("%w: %d %s", errUnexpected, code, msg)
	}
	if passes(code, pass) {
		return policy.Reply{Code: code}, nil
	}
	return policy.ReplyOf(code, msg), nil
}

// passes reports whether code is pass: a class (2) or a whole code (354);
// pass 0 matches nothing.
func passes(code, pass int) bool {
	if pass >= 100 {
		return code == pass
	}
	return pass > 0 && code/100 == pass
}

// response is textproto's ReadResponse(0) on the wire, the fuzz test holds
// it to that; deadline is called before anything that may read the socket.
// The usual reply, one line whole in the buffer, is parsed in place, and
// its message left empty when its code passes (see readPass).
func (w *wire) response(deadline func(), pass int) (code int, msg string, err error) {
	if code, msg, ok := w.bufferedReply(pass); ok {
		return code, msg, nil
	}
	if !w.lineBuffered() {
		deadline()
	}
	br := w.r.R
	if br.Buffered() == 0 {
		// The read ReadResponse would make first; an error here (with
		// nothing read) is the one it would return.
		if _, err := br.Peek(1); err != nil {
			return 0, "", err
		}
		if code, msg, ok := w.bufferedReply(pass); ok {
			return code, msg, nil
		}
	}
	return w.r.ReadResponse(0)
}

// lineBuffered reports whether the next reply is one line that is already
// in the read buffer (a pipelined server's RCPT and DATA replies often came
// with the MAIL one): ReadResponse then reads no socket, so the deadline
// would bound nothing, and setting it (timer and clock) was ~2 % of the
// send path. Every read that may touch the socket sets its own deadline.
func (w *wire) lineBuffered() bool {
	br := w.r.R
	buf, _ := br.Peek(br.Buffered()) // never reads the socket
	eol := bytes.IndexByte(buf, '\n')
	// Before the LF (line[3], or the CR of "250\r\n") a '-' would announce
	// more lines; a line too short for that ends the reply as an error.
	return eol >= 4 && buf[3] != '-'
}

// bufferedReply takes the next reply when it is the usual kind, a single
// line "ddd text" already whole in the read buffer, and returns what
// textproto's ReadResponse(0) would: ok is false, and nothing is read,
// for anything else (ReadResponse then reads it). ReadResponse made two
// strings a reply (the line and the message built from it); this makes
// one, none for a reply whose code passes.
func (w *wire) bufferedReply(pass int) (code int, msg string, ok bool) {
	br := w.r.R
	buf, _ := br.Peek(br.Buffered()) // never reads the socket
	eol := bytes.IndexByte(buf, '\n')
	if eol < 0 {
		return 0, "", false
	}
	line := buf[:eol] // as bufio.Reader.ReadLine cuts it: one CR dropped
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) < 4 || line[3] != ' ' || line[0] < '1' || line[0] > '9' ||
		line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' {
		return 0, "", false // short, continued, or a code under 100
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if !passes(code, pass) {
		msg = string(line[4:])
	}
	_, _ = br.Discard(eol + 1)
	return code, msg, true
}

// command sends one command and reads its reply (RSET, QUIT on a wire).
func (c *Conn) command(cmd string, limit time.Duration) (policy.Reply, error) {
	_ = c.netConn.SetWriteDeadline(time.Now().Add(limit))
	c.wire.w.WriteString(cmd + "\r\n")
	if err := c.wire.w.Flush(); err != nil {
		return policy.Reply{}, err
	}
	return c.read(limit)
}

// writeMail writes MAIL FROM with the parameters go-smtp's client would
// send for our options, and its CRLF, into w's buffer (building it as a
// string first cost five allocations a message).
func (c *Conn) writeMail(w *bufio.Writer, from string, size int, utf8 bool) {
	w.WriteString("MAIL FROM:<")
	w.WriteString(from)
	w.WriteByte('>')
	if c.eightBitMIME {
		w.WriteString(" BODY=8BITMIME")
	}
	if c.sizeExt && size > 0 {
		w.WriteString(" SIZE=")
		w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(size), 10))
	}
	if utf8 {
		w.WriteString(" SMTPUTF8")
	}
	w.WriteString("\r\n")
}

// sendPipelined is Send's transaction for a server that offers PIPELINING:
// MAIL, every RCPT and DATA go in one write, then the replies are read in
// order (RFC 2920 §3.1); the body follows a 354. The outcome is the one the
// command-by-command path gives.
func (c *Conn) sendPipelined(ctx context.Context, m Message, rcpts []int, needUTF8 bool, res *Result) error {
	t := c.opts.Timeouts
	wr := c.wireOf()
	_ = c.netConn.SetWriteDeadline(time.Now().Add(t.Mail))
	c.writeMail(wr.w, m.From, len(m.Body), needUTF8)
	for _, i := range rcpts {
		wr.w.WriteString("RCPT TO:<")
		wr.w.WriteString(m.Rcpts[i])
		wr.w.WriteString(">\r\n")
	}
	wr.w.WriteString("DATA\r\n")
	if err := wr.w.Flush(); err != nil {
		return c.fail(ctx, PhaseMail, t.Mail, err)
	}

	mail, err := c.readPass(t.Mail, 2)
	if err == nil {
		err = expect(mail, false)
	}
	if err != nil {
		return c.fail(ctx, PhaseMail, t.Mail, err)
	}
	if !mail.Positive() {
		res.Mail = mail
		for i := range res.Rcpts {
			res.Rcpts[i].Reply = mail
		}
		if mail.Code == 421 {
			c.abort()
			return nil
		}
		// The RCPTs and DATA were refused too (503): read their replies so
		// that the next transaction starts in step. A 354 to DATA without
		// a transaction would be the server's bug: end it with a dot.
		c.drainRefused(len(rcpts), t)
		return nil
	}
	res.Mail = policy.Reply{Code: 250}
	c.inTxn = true

	accepted := 0
	for n, i := range rcpts {
		r, err := c.readPass(t.Rcpt, 2)
		if err == nil {
			err = expect(r, false)
		}
		if err != nil {
			return c.fail(ctx, PhaseRcpt, t.Rcpt, err)
		}
		if r.Positive() {
			res.Rcpts[i].Accepted = true
			accepted++
			continue
		}
		res.Rcpts[i].Reply = r
		if r.Code == 421 {
			// The server is closing: recipients not yet answered, and those
			// accepted but not sent, are deferred with its reply.
			for _, j := range rcpts[n+1:] {
				res.Rcpts[j].Reply = r
			}
			for j := range res.Rcpts {
				if res.Rcpts[j].Accepted {
					res.Rcpts[j].Reply = r
				}
			}
			c.abort()
			return nil
		}
	}

	data, err := c.readPass(t.Data, 354)
	if err == nil {
		err = expect(data, true)
	}
	if err != nil {
		return c.fail(ctx, PhaseData, t.Data, err)
	}
	if data.Code != 354 {
		if accepted == 0 {
			// Every recipient refused: the DATA refusal (554 "no valid
			// recipients") says nothing more. The transaction stays open
			// for Reset's RSET, as on the command-by-command path.
			return nil
		}
		res.Data = data
		setAccepted(res, data)
		c.after(data)
		return nil
	}
	if accepted == 0 {
		// A 354 although no recipient was accepted (RFC 2920 §3.1 lets the
		// server answer so): an empty message ends the data phase, which
		// delivers nothing.
		_ = c.netConn.SetWriteDeadline(time.Now().Add(t.Block))
		if _, err := wr.w.WriteString(".\r\n"); err != nil {
			return c.fail(ctx, PhaseDataEnd, t.Block, err)
		}
		if err := wr.w.Flush(); err != nil {
			return c.fail(ctx, PhaseDataEnd, t.Block, err)
		}
		r, err := c.read(t.DataEnd)
		if err != nil {
			return c.fail(ctx, PhaseDataEnd, t.DataEnd, err)
		}
		c.inTxn = false
		c.after(r)
		return nil
	}

	dw := dotWriter{w: wr.w} // textproto's DotWriter encoding, faster
	for off := 0; off < len(m.Body); off += blockSize {
		end := min(off+blockSize, len(m.Body))
		_ = c.netConn.SetWriteDeadline(time.Now().Add(t.Block))
		if _, err := dw.Write(m.Body[off:end]); err != nil {
			return c.fail(ctx, PhaseBody, t.Block, err)
		}
	}
	_ = c.netConn.SetWriteDeadline(time.Now().Add(t.Block))
	if err := dw.Close(); err != nil { // the final dot, flushed
		return c.fail(ctx, PhaseBody, t.Block, err)
	}
	r, err := c.read(t.DataEnd)
	if err != nil {
		return c.fail(ctx, PhaseDataEnd, t.DataEnd, err)
	}
	c.inTxn = false
	c.messages++
	res.Data = r
	setAccepted(res, r)
	c.after(r)
	return nil
}

// expect refuses a reply that makes no sense at its step, as go-smtp's
// command-by-command client does: a 3xx to MAIL or RCPT, anything but 354 or
// a refusal to DATA (a 250 there would count the message delivered although
// its body was never sent).
func expect(r policy.Reply, data bool) error {
	switch {
	case data && (r.Code == 354 || r.Code >= 400):
		return nil
	case !data && r.Code/100 != 3:
		return nil
	}
	return fmt.Errorf("%w: %d %s", errUnexpected, r.Code, r.Text)
}

// drainRefused reads the replies to n RCPTs and a DATA sent after a refused
// MAIL. A reply that does not come, or a 354, leaves the connection unusable.
func (c *Conn) drainRefused(n int, t Timeouts) {
	for range n {
		if r, err := c.read(t.Rcpt); err != nil || r.Code == 421 {
			c.abort()
			return
		}
	}
	if r, err := c.read(t.Data); err != nil || r.Code == 354 || r.Code == 421 {
		c.abort()
	}
}

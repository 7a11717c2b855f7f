package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"facteur/policy"
	"facteur/relay/address"
)

// Message is one transaction: an envelope and the final message bytes.
type Message struct {
	From  string   // envelope sender; "" is the null sender <>
	Rcpts []string // envelope recipients, one transaction (same destination)
	// Body is the message as signed at acceptance, CRLF line endings. It is
	// sent as is, apart from the DATA dot-stuffing.
	Body []byte
	// SMTPUTF8 is set when the message needs SMTPUTF8 (RFC 6531): UTF-8 in
	// addresses or headers. Non-ASCII envelope addresses imply it.
	SMTPUTF8 bool
	// EightBit is set when the body has 8-bit bytes.
	EightBit bool
}

// RcptResult is the outcome for one recipient.
type RcptResult struct {
	Addr string
	// Reply is the recipient's outcome: the RCPT reply when RCPT failed,
	// else the reply to DATA (or to the final "."). Zero when unknown: the
	// connection broke before the server answered for this recipient.
	Reply policy.Reply
	// Accepted is true when the server accepted RCPT.
	Accepted bool
}

// Delivered reports that the server took responsibility for the message
// for this recipient: RCPT accepted and 2xx after the final ".".
func (r RcptResult) Delivered() bool { return r.Accepted && r.Reply.Positive() }

// Result is what happened in one transaction.
type Result struct {
	Mail  policy.Reply // the reply to MAIL FROM (a 2xx has no text: go-smtp keeps it)
	Rcpts []RcptResult
	Data  policy.Reply // the reply to DATA or to the final "."; zero if not reached
	// Note records something the caller should log although it did not
	// stop delivery, such as an 8-bit body sent to a server without 8BITMIME.
	Note string
}

// blockSize is how much of the body is written under one Block deadline.
const blockSize = 64 << 10

// Send runs one transaction: MAIL, one RCPT per recipient, DATA when at
// least one was accepted. Replies, including refusals, are in the Result
// with a nil error. An error means the conversation broke (I/O error,
// timeout, ctx cancelled, nonsense reply): recipients without a reply are
// unknown and stay queued, and the Conn is no longer usable. Between two
// Sends on one Conn, call Reset.
func (c *Conn) Send(ctx context.Context, m Message) (Result, error) {
	res := Result{Rcpts: make([]RcptResult, len(m.Rcpts))}
	for i, a := range m.Rcpts {
		res.Rcpts[i].Addr = a
	}
	if len(m.Rcpts) == 0 {
		return res, &Error{Phase: PhaseMail, Host: c.host, IP: c.ip, Err: errors.New("no recipients")}
	}
	if c.broken {
		return res, &Error{Phase: PhaseMail, Host: c.host, IP: c.ip, Err: ErrUnusable}
	}
	if c.inTxn {
		return res, &Error{Phase: PhaseMail, Host: c.host, IP: c.ip, Err: errors.New("previous transaction still open: call Reset")}
	}
	if err := ctx.Err(); err != nil {
		return res, &Error{Phase: PhaseMail, Host: c.host, IP: c.ip, Err: err}
	}

	// Addresses were checked at acceptance; a bad one here must not reach
	// the wire (CR/LF would inject commands), and is a permanent failure.
	if why := badAddr(m.From); why != "" {
		res.Mail = localReply(501, "5.1.7", "bad sender address: "+why)
		for i := range res.Rcpts {
			res.Rcpts[i].Reply = res.Mail
		}
		return res, nil
	}
	needUTF8 := m.SMTPUTF8 || !address.IsASCII(m.From)
	for _, a := range m.Rcpts {
		needUTF8 = needUTF8 || !address.IsASCII(a)
	}
	if needUTF8 && !c.smtputf8 {
		// RFC 6531 §3.4: without SMTPUTF8 at the server the message cannot
		// be delivered as is, and downgrading would break its signature.
		r := localReply(553, "5.6.7", fmt.Sprintf("message needs SMTPUTF8 but %s[%s] does not support SMTPUTF8", c.host, c.ip))
		for i := range res.Rcpts {
			res.Rcpts[i].Reply = r
		}
		return res, nil
	}
	if m.EightBit && !c.eightBitMIME {
		// Converting to 7 bit would break the DKIM signature made at
		// acceptance; most servers take 8-bit data anyway (issue 4 §2).
		res.Note = "8-bit body sent to a server without 8BITMIME"
	}

	// Cancelling ctx closes the socket (safe from another goroutine), which
	// ends the blocked read or write; the Conn is then marked broken here.
	stop := context.AfterFunc(ctx, func() { _ = c.raw.Close() })
	defer func() {
		if !stop() {
			c.broken = true
		}
	}()
	t := c.opts.Timeouts

	if c.pipelining {
		// On the stack for up to 8 recipients: sendPipelined keeps no
		// reference to it.
		var small [8]int
		sendable := small[:0]
		for i, a := range m.Rcpts {
			if refuseBadRcpt(&res, i, a) {
				continue
			}
			sendable = append(sendable, i)
		}
		if len(sendable) == 0 {
			return res, nil // nothing to send: no transaction was opened
		}
		return res, c.sendPipelined(ctx, m, sendable, needUTF8, &res)
	}

	c.client.CommandTimeout = t.Mail
	if err := c.client.Mail(m.From, &smtp.MailOptions{UTF8: needUTF8, Size: int64(len(m.Body))}); err != nil {
		r, ok := replyOf(err)
		if !ok {
			return res, c.fail(ctx, PhaseMail, t.Mail, err)
		}
		res.Mail = r
		for i := range res.Rcpts {
			res.Rcpts[i].Reply = r
		}
		c.after(r)
		return res, nil
	}
	res.Mail = policy.Reply{Code: 250}
	c.inTxn = true

	accepted := 0
	c.client.CommandTimeout = t.Rcpt
	for i, a := range m.Rcpts {
		if refuseBadRcpt(&res, i, a) {
			continue
		}
		err := c.client.Rcpt(a, nil)
		if err == nil {
			// The outcome is the DATA reply, filled in below.
			res.Rcpts[i].Accepted = true
			accepted++
			continue
		}
		r, ok := replyOf(err)
		if !ok {
			return res, c.fail(ctx, PhaseRcpt, t.Rcpt, err)
		}
		res.Rcpts[i].Reply = r
		if r.Code == 421 {
			// The server is closing: recipients not yet answered, and those
			// accepted but not sent, are deferred with its reply.
			for j := range res.Rcpts {
				if j > i || res.Rcpts[j].Accepted {
					res.Rcpts[j].Reply = r
				}
			}
			c.after(r)
			return res, nil
		}
	}
	if accepted == 0 {
		return res, nil
	}

	c.client.CommandTimeout = t.Data
	w, err := c.client.Data()
	if err != nil {
		r, ok := replyOf(err)
		if !ok {
			return res, c.fail(ctx, PhaseData, t.Data, err)
		}
		res.Data = r
		setAccepted(&res, r)
		c.after(r)
		return res, nil
	}
	for off := 0; off < len(m.Body); off += blockSize {
		end := min(off+blockSize, len(m.Body))
		_ = c.netConn.SetWriteDeadline(time.Now().Add(t.Block))
		if _, err := w.Write(m.Body[off:end]); err != nil {
			return res, c.fail(ctx, PhaseBody, t.Block, err)
		}
	}
	// The final flush and "." are written under Block; go-smtp then waits
	// SubmissionTimeout for the reply: RFC 5321 §4.5.3.2.6's 10 minutes.
	_ = c.netConn.SetWriteDeadline(time.Now().Add(t.Block))
	c.client.SubmissionTimeout = t.DataEnd
	resp, err := w.CloseWithResponse()
	var r policy.Reply
	if err != nil {
		var ok bool
		if r, ok = replyOf(err); !ok {
			return res, c.fail(ctx, PhaseDataEnd, t.DataEnd, err)
		}
	} else {
		r = policy.ReplyOf(250, resp.StatusText)
	}
	c.inTxn = false
	c.messages++
	res.Data = r
	setAccepted(&res, r)
	c.after(r)
	return res, nil
}

func setAccepted(res *Result, r policy.Reply) {
	for i := range res.Rcpts {
		if res.Rcpts[i].Accepted {
			res.Rcpts[i].Reply = r
		}
	}
}

// after closes the connection on a 421: the server is going away (RFC 5321
// §3.8), and any further command would be lost.
func (c *Conn) after(r policy.Reply) {
	if r.Code == 421 {
		c.abort()
	}
}

// fail records a broken conversation: the socket is closed, since neither
// side knows where the other stands, and the cause is wrapped.
func (c *Conn) fail(ctx context.Context, phase Phase, limit time.Duration, err error) error {
	c.abort()
	return c.wrap(ctx, phase, limit, err)
}

func localReply(code int, enhanced, text string) policy.Reply {
	return policy.Reply{Code: code, Enhanced: enhanced, Text: text, Local: true}
}

// refuseBadRcpt answers recipient i locally with a 501 when its address
// cannot be sent (badAddr, or empty) and reports whether it did. The
// pipelined and the one-by-one paths both check here, so that a bad
// address gets the same reply whatever the server offers.
func refuseBadRcpt(res *Result, i int, a string) bool {
	why := badAddr(a)
	if why == "" && a != "" {
		return false
	}
	if why == "" {
		why = "empty"
	}
	res.Rcpts[i].Reply = localReply(501, "5.1.3", "bad recipient address: "+why)
	return true
}

// badAddr says what is wrong with an envelope address, or "" when it can be
// sent between angle brackets.
func badAddr(a string) string {
	switch {
	case !utf8.ValidString(a):
		return "not UTF-8"
	case strings.ContainsAny(a, "\r\n\x00"):
		return "control character"
	case strings.ContainsAny(a, "<>"):
		return "angle bracket"
	case len(a) > 254: // RFC 5321 §4.5.3.1.3 path limit, minus the brackets
		return "too long"
	}
	return ""
}

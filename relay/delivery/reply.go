package delivery

import (
	"errors"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"facteur/policy"
)

// Reply is one SMTP reply, kept as the remote said it so that the
// classifier, the log (resp=) and DSNs read the same text.
//
// The zero Reply means "no reply": the outcome is unknown.
type Reply struct {
	Code     int    // 250, 450, 550 ...; 0 when there was no reply
	Enhanced string // RFC 3463 enhanced status code, "5.1.1"; empty when the server gave none
	Text     string // the text after the codes; lines of a multi-line reply are joined with "\n"
	// Local is true when facteur made this reply up instead of receiving it
	// (for example a message that needs SMTPUTF8 to a server without it).
	Local bool
}

// String is the reply on one line, "550 5.1.1 text", multi-line replies
// joined with spaces, ready for resp="..." in the log.
func (r Reply) String() string {
	if r.Code == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if r.Enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced)
	}
	if r.Text != "" {
		b.WriteByte(' ')
		b.WriteString(strings.ReplaceAll(r.Text, "\n", " "))
	}
	return b.String()
}

// Known reports whether there was a reply at all.
func (r Reply) Known() bool { return r.Code != 0 }

// Positive reports a 2xx reply.
func (r Reply) Positive() bool { return r.Code/100 == 2 }

// Temporary reports a 4xx reply.
func (r Reply) Temporary() bool { return r.Code/100 == 4 }

// Permanent reports a 5xx reply.
func (r Reply) Permanent() bool { return r.Code/100 == 5 }

// SMTPError returns the reply as an *smtp.SMTPError, for a caller that
// relays it (for example as the Diagnostic-Code of a DSN). Nil for a 2xx or
// an unknown reply.
func (r Reply) SMTPError() *smtp.SMTPError {
	if r.Code < 400 {
		return nil
	}
	e := &smtp.SMTPError{Code: r.Code, Message: r.Text}
	if parts := strings.Split(r.Enhanced, "."); len(parts) == 3 {
		for i, p := range parts {
			e.EnhancedCode[i], _ = strconv.Atoi(p)
		}
	} else {
		e.EnhancedCode = smtp.NoEnhancedCode
	}
	return e
}

// replyOf extracts the reply from an error returned by go-smtp's client.
// ok is false for anything that is not a 4xx/5xx reply: an I/O error, or a
// reply code that makes no sense at that point, after which the state of
// the conversation is unknown.
func replyOf(err error) (Reply, bool) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code < 400 || se.Code > 599 {
		return Reply{}, false
	}
	r := Reply{Code: se.Code, Text: se.Message}
	if ec := se.EnhancedCode; ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode {
		r.Enhanced = strconv.Itoa(ec[0]) + "." + strconv.Itoa(ec[1]) + "." + strconv.Itoa(ec[2])
	}
	return r, true
}

// parseReply builds a Reply from a code and the text go-smtp returns for a
// successful command (lines joined with "\n", codes stripped), splitting off
// the enhanced status code when each line carries the same one (RFC 2034 §4)
// and its class is the reply's (RFC 3463 §2).
func parseReply(code int, msg string) Reply {
	r := Reply{Code: code, Text: msg}
	first, rest := policy.SplitEnhanced(msg)
	if first == "" || rest == msg || first[0] != byte('0'+code/100) {
		return r
	}
	r.Enhanced = first
	r.Text = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return r
}

package delivery

import (
	"errors"
	"strings"

	"github.com/emersion/go-smtp"

	"facteur/policy"
)

// replyOf extracts the reply from an error returned by go-smtp's client.
// ok is false for anything that is not a 4xx/5xx reply: an I/O error, or a
// reply code that makes no sense at that point, after which the state of
// the conversation is unknown.
func replyOf(err error) (policy.Reply, bool) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code < 400 || se.Code > 599 {
		return policy.Reply{}, false
	}
	// go-smtp has split the enhanced code off already (and off each line).
	return policy.Reply{Code: se.Code, Enhanced: policy.FormatEnhanced(se.EnhancedCode), Text: strings.ReplaceAll(se.Message, "\n", " ")}, true
}

// ReplyOf is the reply an error of a connection's opening carries: a
// refusing greeting or EHLO (a 421 or 554 banner), judged like any reply,
// at StageConnect. Not ok for an I/O error or any other failure.
func ReplyOf(err error) (policy.Reply, bool) {
	r, ok := replyOf(err)
	r.Stage = policy.StageConnect
	return r, ok
}

// smtpError returns a failing reply as an *smtp.SMTPError, for a caller
// that relays it as an error; nil for a 2xx or an unknown reply.
func smtpError(r policy.Reply) *smtp.SMTPError {
	if r.Code < 400 {
		return nil
	}
	e := &smtp.SMTPError{Code: r.Code, Message: r.Text, EnhancedCode: smtp.NoEnhancedCode}
	if code, ok := policy.ParseEnhanced(r.Enhanced); ok {
		e.EnhancedCode = code
	}
	return e
}

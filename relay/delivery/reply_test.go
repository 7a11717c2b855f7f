package delivery

import (
	"errors"
	"fmt"
	"testing"

	"github.com/emersion/go-smtp"

	"facteur/policy"
)

func TestReplyOf(t *testing.T) {
	gmail := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "The email account that you tried to reach does not exist.\nhttps://support.google.com/mail/?p=NoSuchUser"}
	tests := []struct {
		name     string
		err      error
		ok       bool
		enhanced string
		str      string
	}{
		{"multi-line 550", fmt.Errorf("rcpt: %w", gmail), true, "5.1.1", "550 5.1.1 The email account that you tried to reach does not exist. https://support.google.com/mail/?p=NoSuchUser"},
		{"no enhanced code", &smtp.SMTPError{Code: 421, Message: "closing"}, true, "", "421 closing"},
		{"no enhanced code, go-smtp's none", &smtp.SMTPError{Code: 421, EnhancedCode: smtp.NoEnhancedCode, Message: "closing"}, true, "", "421 closing"},
		{"I/O error", errors.New("connection reset by peer"), false, "", ""},
		{"nonsense code", &smtp.SMTPError{Code: 354, Message: "go ahead"}, false, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := replyOf(tc.err)
			if ok != tc.ok || r.String() != tc.str || r.Enhanced != tc.enhanced || r.Local {
				t.Errorf("replyOf = %+v %q %v, want %q %q %v", r, r, ok, tc.enhanced, tc.str, tc.ok)
			}
			if !ok {
				return
			}
			back := smtpError(r)
			if back == nil || back.Code != r.Code {
				t.Fatalf("smtpError() = %v", back)
			}
			if again, _ := replyOf(back); again != r {
				t.Errorf("round trip %+v, want %+v", again, r)
			}
		})
	}
}

func TestSMTPErrorOfPositive(t *testing.T) {
	if smtpError(policy.Reply{Code: 250}) != nil || smtpError(policy.Reply{}) != nil {
		t.Error("smtpError of a 2xx or unknown reply is not nil")
	}
}

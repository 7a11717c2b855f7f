package cleanup

import (
	"testing"

	"github.com/emersion/go-smtp"
)

func TestReplyLine(t *testing.T) {
	tests := []struct {
		se   *smtp.SMTPError
		want string
	}{
		{&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "stopped"}, "451 4.7.1 stopped"},
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCodeNotSet, Message: "no"}, "554 no"},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.NoEnhancedCode, Message: "no"}, "550 no"},
		{ErrLoop, "554 5.4.6 Too many Received headers: mail loop detected"},
	}
	for _, tt := range tests {
		if got := ReplyLine(tt.se); got != tt.want {
			t.Errorf("ReplyLine(%+v) = %q, want %q", tt.se, got, tt.want)
		}
	}
}

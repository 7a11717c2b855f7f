package delivery

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		name     string
		code     int
		msg      string
		enhanced string
		text     string
		str      string
	}{
		{"enhanced", 250, "2.0.0 Ok: queued as 4XyZ", "2.0.0", "Ok: queued as 4XyZ", "250 2.0.0 Ok: queued as 4XyZ"},
		{"no enhanced", 250, "Ok", "", "Ok", "250 Ok"},
		{"multi-line, code on each line", 250, "2.0.0 OK 1700000000 x1\n2.0.0 second line", "2.0.0", "OK 1700000000 x1\nsecond line", "250 2.0.0 OK 1700000000 x1 second line"},
		{"class mismatch is text", 250, "5.1.1 odd", "", "5.1.1 odd", "250 5.1.1 odd"},
		{"version number is text", 250, "2.0 ready", "", "2.0 ready", "250 2.0 ready"},
		{"empty", 250, "", "", "", "250"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := parseReply(tc.code, tc.msg)
			if r.Enhanced != tc.enhanced || r.Text != tc.text || r.String() != tc.str {
				t.Errorf("parseReply(%d, %q) = %+v %q, want %q %q %q", tc.code, tc.msg, r, r.String(), tc.enhanced, tc.text, tc.str)
			}
		})
	}
}

func TestReplyOf(t *testing.T) {
	gmail := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "The email account that you tried to reach does not exist.\nhttps://support.google.com/mail/?p=NoSuchUser"}
	tests := []struct {
		name string
		err  error
		ok   bool
		str  string
	}{
		{"multi-line 550", fmt.Errorf("rcpt: %w", gmail), true, "550 5.1.1 The email account that you tried to reach does not exist. https://support.google.com/mail/?p=NoSuchUser"},
		{"no enhanced code", &smtp.SMTPError{Code: 421, Message: "closing"}, true, "421 closing"},
		{"I/O error", errors.New("connection reset by peer"), false, ""},
		{"nonsense code", &smtp.SMTPError{Code: 354, Message: "go ahead"}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := replyOf(tc.err)
			if ok != tc.ok || r.String() != tc.str {
				t.Errorf("replyOf = %q %v, want %q %v", r, ok, tc.str, tc.ok)
			}
			if !ok {
				return
			}
			back := r.SMTPError()
			if back == nil || back.Code != r.Code {
				t.Fatalf("SMTPError() = %v", back)
			}
			again, _ := replyOf(back)
			if again != r {
				t.Errorf("round trip %+v, want %+v", again, r)
			}
		})
	}
	if (Reply{Code: 250}).SMTPError() != nil || (Reply{}).SMTPError() != nil {
		t.Error("SMTPError of a 2xx or unknown reply is not nil")
	}
}

// FuzzParseReply: whatever the server says, the reply keeps its code, fits
// on one log line and never loses text.
func FuzzParseReply(f *testing.F) {
	f.Add(250, "2.0.0 Ok: queued")
	f.Add(250, "2.0.0 a\n2.0.0 b")
	f.Add(451, "4.7.1\n")
	f.Fuzz(func(t *testing.T, code int, msg string) {
		if code < 100 || code > 599 {
			return
		}
		r := parseReply(code, msg)
		s := r.String()
		if !strings.HasPrefix(s, strconv.Itoa(code)) || strings.Contains(s, "\n") {
			t.Fatalf("String() = %q", s)
		}
		if r.Enhanced != "" && !strings.HasPrefix(msg, r.Enhanced+" ") {
			t.Fatalf("enhanced %q not at the start of %q", r.Enhanced, msg)
		}
		if !strings.Contains(msg, strings.SplitN(r.Text, "\n", 2)[0]) {
			t.Fatalf("text %q not from %q", r.Text, msg)
		}
	})
}

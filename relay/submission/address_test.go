package submission

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"facteur/queue"
)

// TestAddressSyntax: MAIL and RCPT go through relay/address: a malformed
// mailbox gets 501 and a 5.1.x code, a quoted local part is queued quoted
// (so that it leaves quoted), and a UTF-8 address needs SMTPUTF8.
func TestAddressSyntax(t *testing.T) {
	f := startServer(t, "127.0.0.0/8", nil)
	rcpts := []struct {
		rcpt string
		code int
		enh  smtp.EnhancedCode
	}{
		{"bob@@example.org", 501, smtp.EnhancedCode{5, 1, 3}},
		{"bob@exa_mple.org", 501, smtp.EnhancedCode{5, 1, 3}},
		{"bob@example..org", 501, smtp.EnhancedCode{5, 1, 3}},
		{".bob@example.org", 501, smtp.EnhancedCode{5, 1, 3}},
		{"josé@example.org", 553, smtp.EnhancedCode{5, 6, 7}},
	}
	for _, tt := range rcpts {
		t.Run(tt.rcpt, func(t *testing.T) {
			c := dialFrom(t, "127.0.0.1", f.addr)
			if err := c.Mail("app@example.com", nil); err != nil {
				t.Fatal(err)
			}
			err := c.Rcpt(tt.rcpt, nil)
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != tt.code || se.EnhancedCode != tt.enh {
				t.Errorf("RCPT TO:<%s> = %v, want %d %v", tt.rcpt, err, tt.code, tt.enh)
			}
		})
	}
	t.Run("bad sender", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.1", f.addr)
		var se *smtp.SMTPError
		if err := c.Mail("a@@example.com", nil); !errors.As(err, &se) || se.Code != 501 || se.EnhancedCode[1] != 1 {
			t.Errorf("MAIL FROM:<a@@example.com> = %v, want 501 5.1.x", err)
		}
	})
	t.Run("quoted local part kept quoted", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.1", f.addr)
		if err := c.Mail("app@example.com", nil); err != nil {
			t.Fatal(err)
		}
		// go-smtp's client writes the address verbatim: the quotes are on the wire.
		if err := c.Rcpt(`"quoted user"@example.org`, nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("Subject: q\r\n\r\nx\r\n"))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		msgs, err := f.store.List(t.Context(), queue.Filter{})
		if err != nil || len(msgs) != 1 {
			t.Fatalf("queued %d, %v", len(msgs), err)
		}
		if got := msgs[0].Recipients[0].Address; got != `"quoted user"@example.org` {
			t.Errorf("queued recipient %q, want it quoted", got)
		}
		if strings.Contains(msgs[0].Recipients[0].Address, "quoted user@") {
			t.Error("quotes lost")
		}
	})
}

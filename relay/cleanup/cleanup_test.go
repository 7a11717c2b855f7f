package cleanup

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
		err  error
	}{
		{"clean CRLF", "a\r\nb\r\n", "a\r\nb\r\n", nil},
		{"missing final CRLF", "a\r\nb", "a\r\nb\r\n", nil},
		{"bare LF lines", "a\nb\n", "a\r\nb\r\n", nil},
		{"bare CR lines", "a\rb\r", "a\r\nb\r\n", nil},
		{"mixed", "a\r\nb\nc\rd", "a\r\nb\r\nc\r\nd\r\n", nil},
		{"empty", "", "", nil},
		{"dot line with CRLF is content", "a\r\n.\r\nb\r\n", "a\r\n.\r\nb\r\n", nil},
		// The smuggling variants of issue 3: each hides an end-of-data
		// marker from a server that accepts bare line endings.
		{"<LF>.<LF>", "a\n.\nb\r\n", "", ErrSmuggling},
		{"<CR>.<CR>", "a\r.\rb\r\n", "", ErrSmuggling},
		{"<CR>.<LF>", "a\r.\nb\r\n", "", ErrSmuggling},
		{"<LF>.<CR>", "a\n.\rb\r\n", "", ErrSmuggling},
		{"<LF>.<CR><LF>", "a\n.\r\nb\r\n", "", ErrSmuggling},
		{"<CR><LF>.<LF>", "a\r\n.\nb\r\n", "", ErrSmuggling},
		{"<CR>.<CR><LF>", "a\r.\r\nb\r\n", "", ErrSmuggling},
		{"<CR><LF>.<CR>", "a\r\n.\rb\r\n", "", ErrSmuggling},
		{"<LF>. at end", "a\n.", "", ErrSmuggling},
		{"dot NUL CRLF", "a\r\n.\x00\r\nb\r\n", "", ErrSmuggling},
		{"NUL dot CRLF", "a\r\n\x00.\r\nb\r\n", "", ErrSmuggling},
		{"NUL elsewhere", "a\x00b\r\n", "", ErrNUL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Normalize([]byte(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil && string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"a\r\nb", "a\n.\nb", "x\r\r\n\n", "\r\n.\r\n", ".\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Normalize(in)
		if err != nil {
			return
		}
		// Property: nothing accepted contains a bare CR or LF, or a NUL.
		if !clean(out) || bytes.IndexByte(out, 0) >= 0 {
			t.Fatalf("Normalize(%q) = %q", in, out)
		}
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("no final CRLF: %q", out)
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte("From: a@b\r\nSubject: x\r\n y\r\n\r\nbody\r\n"))
	f.Add([]byte("no header\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		msg, err := Normalize(in)
		if err != nil {
			return
		}
		h := parseHeader(msg)
		// Property: reassembling without changes loses no byte of a message
		// that had a header block and separator.
		if h.hasSep && len(h.fields) > 0 && !bytes.Equal(h.bytes(nil, nil), msg) {
			t.Fatalf("round trip changed %q into %q", msg, h.bytes(nil, nil))
		}
	})
}

func newTestCleanup(t *testing.T, opts Options) (*Cleanup, *queue.Store) {
	t.Helper()
	st, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(opts, st, nil, slog.New(slog.NewTextHandler(io.Discard, nil))), st
}

func TestProcess(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	c, st := newTestCleanup(t, Options{
		Hostname:    "web1.example.com",
		LocalDomain: "example.com",
		Aliases:     map[string]string{"root": "ops@example.net, admin", "admin": "boss@example.org"},
		Senders:     map[string]string{"www-data": "noreply@example.com"},
		MaxHops:     5,
	})
	tests := []struct {
		name      string
		msg       Message
		wantErr   int // SMTP code, 0 = accepted
		wantRcpts []string
		wantFrom  string
		check     func(t *testing.T, body string)
	}{
		{
			name:      "cron mail to root via aliases",
			msg:       Message{Sender: "www-data", Recipients: []string{"root"}, Protocol: "local", User: "www-data", UID: 33, Data: []byte("Subject: cron\n\nout\n")},
			wantRcpts: []string{"ops@example.net", "boss@example.org"},
			wantFrom:  "noreply@example.com",
			check: func(t *testing.T, body string) {
				for _, h := range []string{"Received: by web1.example.com (facteur, from userid 33)\r\n\twith local id ", "Date: ", "Message-ID: <", "From: <noreply@example.com>", "\r\n\r\nout\r\n"} {
					if !strings.Contains(body, h) {
						t.Errorf("missing %q in %q", h, body)
					}
				}
			},
		},
		{
			name:      "existing headers kept, Bcc removed",
			msg:       Message{Sender: "app@example.com", Recipients: []string{"a@example.org"}, ClientIP: "127.0.0.1", Helo: "app", Protocol: "ESMTP", Data: []byte("From: App <app@example.com>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\nBcc: secret@example.org\r\nSubject: hi\r\n\r\nbody\r\n")},
			wantRcpts: []string{"a@example.org"},
			wantFrom:  "app@example.com",
			check: func(t *testing.T, body string) {
				if strings.Contains(body, "Bcc") || strings.Count(body, "Date:") != 1 || strings.Count(body, "Message-ID:") != 1 {
					t.Errorf("headers wrong: %q", body)
				}
				if !strings.HasPrefix(body, "Received: from app ([127.0.0.1])\r\n\tby web1.example.com (facteur) with ESMTP id ") || !strings.Contains(body, "\r\n\tfor <a@example.org>;") {
					t.Errorf("Received wrong: %q", body)
				}
			},
		},
		{
			name:    "loop by hop count",
			msg:     Message{Sender: "a@example.com", Recipients: []string{"b@example.org"}, Data: []byte(strings.Repeat("Received: x\r\n", 5) + "\r\nbody\r\n")},
			wantErr: 554,
		},
		{
			name:    "smuggling refused",
			msg:     Message{Sender: "a@example.com", Recipients: []string{"b@example.org"}, Data: []byte("Subject: x\r\n\r\nhi\n.\nMAIL FROM:<x@y>\r\n")},
			wantErr: 550,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := c.Process(t.Context(), tt.msg, now)
			if tt.wantErr != 0 {
				var se *smtp.SMTPError
				if !errors.As(err, &se) || se.Code != tt.wantErr {
					t.Fatalf("err = %v, want %d", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m, err := st.Get(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := st.Body(t.Context(), id); !strings.Contains(string(b), " id "+string(id)) {
				t.Errorf("Received does not name the queue ID %s", id)
			}
			if m.Sender != tt.wantFrom {
				t.Errorf("sender = %q, want %q", m.Sender, tt.wantFrom)
			}
			var got []string
			for _, r := range m.Recipients {
				got = append(got, r.Address)
			}
			if strings.Join(got, ",") != strings.Join(tt.wantRcpts, ",") {
				t.Errorf("rcpts = %v, want %v", got, tt.wantRcpts)
			}
			body, err := st.Body(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if !clean(body) {
				t.Errorf("bare CR/LF in stored body %q", body)
			}
			tt.check(t, string(body))
		})
	}
}

// TestExpandLocalUsers: a host account with no alias goes to its local
// mailbox (NAME@hostname); an alias, from the config or /etc/aliases, wins;
// someone who is no account is qualified with local_domain as before.
func TestExpandLocalUsers(t *testing.T) {
	c, _ := newTestCleanup(t, Options{
		Hostname:    "Web1.example.com",
		LocalDomain: "example.com",
		Aliases:     map[string]string{"postmaster": "root", "webmaster": "alice, ops@example.net", "mailer-daemon": "postmaster"},
		LocalUser:   func(n string) bool { return n == "root" || n == "alice" },
	})
	tests := []struct {
		in   string
		want []string
	}{
		{"root", []string{"root@web1.example.com"}},
		{"root@web1.example.com", []string{"root@web1.example.com"}},
		{"postmaster", []string{"root@web1.example.com"}},
		{"MAILER-DAEMON", []string{"root@web1.example.com"}},
		{"webmaster", []string{"alice@web1.example.com", "ops@example.net"}},
		{"bob", []string{"bob@example.com"}},
		{"root@example.com", []string{"root@example.com"}},
		{"alice@elsewhere.example", []string{"alice@elsewhere.example"}},
	}
	for _, tt := range tests {
		if got := c.ExpandRecipient(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("ExpandRecipient(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

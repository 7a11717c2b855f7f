package dsn

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"facteur/policy/bounce"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	arrival = time.Date(2026, 11, 22, 14, 3, 8, 0, time.UTC)
	now     = arrival.Add(26 * time.Hour)
)

const origHeaders = "Received: from app.example.com by relay.example.com (facteur) with ESMTP id 0G3ZK4R2Q8M1;\r\n Sun, 22 Nov 2026 14:03:08 +0000\r\nFrom: App <app@example.com>\r\nTo: bob@example.net, carol@example.org\r\nSubject: Your invoice\r\nMessage-ID: <inv-1@example.com>\r\n\r\nbody is not copied\r\n"

func failure() Bounce {
	return Bounce{
		Hostname: "relay.example.com", QueueID: "0G3ZK4R2Q8M1", Sender: "app@example.com",
		Arrival: arrival, Now: now,
		Recipients: []Recipient{
			{Address: "bob@example.net", Status: "5.1.1", RemoteMTA: "mx.example.net",
				Diagnostic: "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please try double-checking the recipient's email address.", LastAttempt: now},
			{Address: "carol@example.org", Diagnostic: "Host or domain name not found (NXDOMAIN)", LastAttempt: now},
		},
		OriginalHeaders: []byte(origHeaders),
	}
}

func delay() Bounce {
	b := failure()
	b.Delayed = true
	b.Recipients = []Recipient{{Address: "dave@example.net", RemoteMTA: "mx.example.net",
		Diagnostic: "421 4.7.0 [TSS04] Messages temporarily deferred", LastAttempt: now, WillRetryUntil: arrival.Add(5 * 24 * time.Hour)}}
	return b
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    Bounce
	}{{"failed", failure()}, {"delayed", delay()}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Build(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			checkWire(t, got)
			path := filepath.Join("testdata", tc.name+".eml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("DSN differs from %s (run go test -update if intended):\n%s", path, got)
			}
		})
	}
}

// checkWire asserts the wire invariants: CRLF only, lines under 998 octets.
func checkWire(t *testing.T, msg []byte) {
	t.Helper()
	for i, l := range bytes.Split(msg, []byte("\r\n")) {
		if bytes.ContainsAny(l, "\r\n") {
			t.Errorf("line %d has a bare CR or LF: %q", i+1, l)
		}
		if len(l) >= 998 {
			t.Errorf("line %d is %d octets", i+1, len(l))
		}
	}
}

func TestLongAndHostileInput(t *testing.T) {
	b := failure()
	b.Recipients[0].Diagnostic = "550 5.1.1 " + strings.Repeat("x", 3000) + " " + strings.Repeat("word ", 400)
	b.OriginalHeaders = []byte("Subject: " + strings.Repeat("y", 2500) + "\nX-Bare: a\rb\n" + "To: " + strings.Repeat("z ", 900) + "\n")
	got, err := Build(b)
	if err != nil {
		t.Fatal(err)
	}
	checkWire(t, got)
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Bounce)
		is     error
	}{
		{"null sender", func(b *Bounce) { b.Sender = "" }, ErrNullSender},
		{"null sender in brackets", func(b *Bounce) { b.Sender = "<>" }, ErrNullSender},
		{"no recipients", func(b *Bounce) { b.Recipients = nil }, ErrNoRecipients},
		{"header injection in sender", func(b *Bounce) { b.Sender = "a@b\r\nBcc: x@y" }, nil},
		{"header injection in recipient", func(b *Bounce) { b.Recipients[0].Address = "a@b\nX: y" }, nil},
		{"bad status", func(b *Bounce) { b.Recipients[0].Status = "5.1" }, nil},
		{"bad action", func(b *Bounce) { b.Recipients[0].Action = "relayed" }, nil},
		{"no hostname", func(b *Bounce) { b.Hostname = "" }, nil},
		{"no clock", func(b *Bounce) { b.Now = time.Time{} }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := failure()
			tt.mutate(&b)
			_, err := Build(b)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v, want %v", err, tt.is)
			}
		})
	}
}

// TestRoundTrip: what Build writes, bounce.Parse reads back, recipient by
// recipient, with status and diagnostic.
func TestRoundTrip(t *testing.T) {
	for _, b := range []Bounce{failure(), delay()} {
		msg, err := Build(b)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := bounce.Parse(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if rep.Kind != bounce.KindDSN || len(rep.Recipients) != len(b.Recipients) {
			t.Fatalf("parsed %+v", rep)
		}
		if rep.QueueID != "0G3ZK4R2Q8M1" || rep.MessageID != "inv-1@example.com" {
			t.Errorf("queue ID %q message ID %q", rep.QueueID, rep.MessageID)
		}
		for i, want := range b.Recipients {
			got := rep.Recipients[i]
			wantStatus := want.Status
			if wantStatus == "" {
				wantStatus = statusOf(Recipient{Diagnostic: oneLine(want.Diagnostic), Action: string(got.Action)})
			}
			wantAction := bounce.Failed
			if b.Delayed {
				wantAction = bounce.Delayed
			}
			if got.Address != want.Address || got.Status != wantStatus || got.Action != wantAction ||
				!strings.Contains(got.Diagnostic, oneLine(want.Diagnostic)) || got.RemoteMTA != want.RemoteMTA {
				t.Errorf("recipient %d: got %+v, want %+v", i, got, want)
			}
		}
	}
}

// TestPythonEmail has an independent parser, python3's email package, read
// the DSN as an RFC 3464 multipart/report.
func TestPythonEmail(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 not found, and CI is set")
		}
		t.Skip("relay/dsn: python3 not found; skipping")
	}
	msg, err := Build(failure())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dsn.eml")
	if err := os.WriteFile(path, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	script := `
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
assert m.get_content_type() == "multipart/report", m.get_content_type()
assert m.get_param("report-type") == "delivery-status"
assert m["Auto-Submitted"] == "auto-replied"
assert not m.defects, m.defects
parts = list(m.iter_parts())
assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"], [p.get_content_type() for p in parts]
for p in parts:
    assert not p.defects, p.defects
ds = parts[1].get_payload()
print(ds[0]["Reporting-MTA"])
for r in ds[1:]:
    print(r["Final-Recipient"], "|", r["Action"], "|", r["Status"], "|", r["Diagnostic-Code"])
`
	out, err := exec.CommandContext(t.Context(), py, "-c", script, path).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	want := "dns; relay.example.com\n" +
		"rfc822; bob@example.net | failed | 5.1.1 | smtp; 550-5.1.1 The email account that you tried to reach does not exist. 550 5.1.1 Please try double-checking the recipient's email address.\n" +
		"rfc822; carol@example.org | failed | 5.0.0 | X-Facteur; Host or domain name not found (NXDOMAIN)\n"
	if string(out) != want {
		t.Errorf("python3 read:\n%s\nwant:\n%s", out, want)
	}
}

package dsn

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"facteur/policy"
	"facteur/relay/address"
)

// Recipient is one failed or delayed recipient of the original message.
type Recipient struct {
	// Address is the recipient as given in RCPT TO.
	Address string
	// Status is the RFC 3463 code, "5.1.1". Empty: taken from Diagnostic's
	// enhanced code, else its reply code class ("5.0.0"), else from Action.
	Status string
	// Action is "failed" or "delayed"; empty means Bounce.Delayed decides.
	Action string
	// RemoteMTA is the host that gave the reply, empty if none did (DNS
	// failure, connection refused).
	RemoteMTA string
	// Diagnostic is the remote's full reply, "550 5.1.1 <a@b>: user
	// unknown", or facteur's own reason when no server answered.
	Diagnostic string
	// LastAttempt is when delivery was last tried; zero to omit.
	LastAttempt time.Time
	// WillRetryUntil is when a delayed recipient expires; zero to omit.
	WillRetryUntil time.Time
}

// Bounce is everything a DSN says.
type Bounce struct {
	// Hostname is facteur's host name: From: MAILER-DAEMON@Hostname.
	Hostname string
	// ReportingMTA defaults to Hostname.
	ReportingMTA string
	// QueueID is the original message's queue ID.
	QueueID string
	// Sender is the original envelope sender, the DSN's To. Never empty:
	// nothing is sent back to the null sender.
	Sender string
	// Arrival is when the original message was accepted.
	Arrival time.Time
	// Now is the DSN's Date (injected, never time.Now inside).
	Now time.Time
	// Delayed makes a delay warning instead of a failure report.
	Delayed    bool
	Recipients []Recipient
	// OriginalHeaders is the original message's header (a body after the
	// first empty line is dropped).
	OriginalHeaders []byte
}

// Errors callers may branch on.
var (
	ErrNullSender   = errors.New("dsn: null sender: no DSN to <>")
	ErrNoRecipients = errors.New("dsn: no recipients")
)

// maxLine is where Build folds: well under the 998 octets of RFC 5322
// §2.1.1, and under the 78 it recommends where there is a space to fold at.
const (
	softLine = 76
	hardLine = 900
)

// Build writes the DSN message (header and body, CRLF) for b.
func Build(b Bounce) ([]byte, error) {
	if err := check(b); err != nil {
		return nil, err
	}
	rcpts := make([]Recipient, len(b.Recipients))
	for i, r := range b.Recipients {
		r.Diagnostic = oneLine(r.Diagnostic)
		if r.Action == "" {
			r.Action = "failed"
			if b.Delayed {
				r.Action = "delayed"
			}
		}
		if r.Status == "" {
			r.Status = statusOf(r)
		}
		rcpts[i] = r
	}
	reporting := b.ReportingMTA
	if reporting == "" {
		reporting = b.Hostname
	}
	boundary := b.QueueID + "." + strconv.FormatInt(b.Now.Unix(), 10) + "/" + b.Hostname

	// go-message inserts each field at the top of the header: set them in
	// reverse to write Date, From, To, Subject, ... in the usual order.
	var h mail.Header
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status", "boundary": boundary})
	h.Set("MIME-Version", "1.0")
	// RFC 3834 §5: a DSN is auto-replied, so that no auto-responder answers.
	h.Set("Auto-Submitted", "auto-replied")
	h.SetMessageID(fmt.Sprintf("%s.%d.dsn@%s", b.QueueID, b.Now.UnixNano(), b.Hostname))
	if b.Delayed {
		h.SetSubject("Delayed Mail (still being retried)")
	} else {
		h.SetSubject("Undelivered Mail Returned to Sender")
	}
	h.SetAddressList("To", []*mail.Address{{Address: b.Sender}})
	h.SetAddressList("From", []*mail.Address{{Name: "Mail Delivery System", Address: "MAILER-DAEMON@" + b.Hostname}})
	h.SetDate(b.Now)

	var out bytes.Buffer
	w, err := message.CreateWriter(&out, h.Header)
	if err != nil {
		return nil, fmt.Errorf("dsn: write header: %w", err)
	}
	text := explanation(b, rcpts)
	status, global := deliveryStatus(b, reporting, rcpts)
	statusType := "message/delivery-status"
	if global {
		// RFC 6533 §6.2: UTF-8 addresses go in a global delivery status.
		statusType = "message/global-delivery-status"
	}
	parts := []struct {
		typ, desc string
		params    map[string]string
		body      []byte
	}{
		{"text/plain", "Notification", map[string]string{"charset": "utf-8"}, text},
		{statusType, "Delivery report", nil, status},
		{"text/rfc822-headers", "Undelivered Message Headers", map[string]string{"charset": "utf-8"}, headersOnly(b.OriginalHeaders)},
	}
	for _, p := range parts {
		var ph message.Header
		if p.typ != statusType {
			// The explanation and the original header may be 8-bit
			// (SMTPUTF8); quoted-printable keeps the DSN 7-bit clean for
			// any relay on the way back.
			enc := "7bit"
			if !address.IsASCII(p.body) {
				enc = "quoted-printable"
			}
			ph.Set("Content-Transfer-Encoding", enc)
		}
		ph.SetContentType(p.typ, p.params)
		ph.Set("Content-Description", p.desc)
		pw, err := w.CreatePart(ph)
		if err != nil {
			return nil, fmt.Errorf("dsn: create %s part: %w", p.typ, err)
		}
		if _, err := pw.Write(p.body); err != nil {
			return nil, fmt.Errorf("dsn: write %s part: %w", p.typ, err)
		}
		if err := pw.Close(); err != nil {
			return nil, fmt.Errorf("dsn: close %s part: %w", p.typ, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("dsn: close: %w", err)
	}
	return out.Bytes(), nil
}

func check(b Bounce) error {
	if strings.TrimSpace(b.Sender) == "" || b.Sender == "<>" {
		return ErrNullSender
	}
	if len(b.Recipients) == 0 {
		return ErrNoRecipients
	}
	if b.Hostname == "" || strings.ContainsAny(b.Hostname, " \t\r\n<>@;") {
		return fmt.Errorf("dsn: bad hostname %q", b.Hostname)
	}
	if strings.ContainsAny(b.QueueID+b.ReportingMTA, " \t\r\n;") {
		return fmt.Errorf("dsn: bad queue ID %q or reporting MTA %q", b.QueueID, b.ReportingMTA)
	}
	if bad(b.Sender) {
		return fmt.Errorf("dsn: bad sender %q", b.Sender)
	}
	if b.Now.IsZero() {
		return errors.New("dsn: Now not set")
	}
	for _, r := range b.Recipients {
		if r.Address == "" || bad(r.Address) || strings.ContainsAny(r.RemoteMTA, " \t\r\n;") {
			return fmt.Errorf("dsn: bad recipient %q (remote MTA %q)", r.Address, r.RemoteMTA)
		}
		if r.Status != "" && !policy.IsEnhanced(r.Status) {
			return fmt.Errorf("dsn: recipient %s: bad status %q", r.Address, r.Status)
		}
		switch r.Action {
		case "", "failed", "delayed":
		default:
			return fmt.Errorf("dsn: recipient %s: action %q is neither failed nor delayed", r.Address, r.Action)
		}
	}
	return nil
}

// bad reports an address that would break the header or a field: line
// breaks, controls, angle brackets, no @.
func bad(a string) bool {
	if !strings.Contains(a, "@") || !utf8.ValidString(a) {
		return true
	}
	for _, c := range a {
		if c < 0x21 || c == 0x7f || c == '<' || c == '>' {
			return true
		}
	}
	return false
}

// statusOf derives a Status from the reply: its enhanced code, else the
// class of its reply code, else the action.
func statusOf(r Recipient) string {
	if rp, ok := serverReply(r.Diagnostic); ok {
		if rp.Enhanced != "" {
			return rp.Enhanced
		}
		return strconv.Itoa(rp.Code/100) + ".0.0"
	}
	if r.Action == "delayed" {
		return "4.0.0"
	}
	return "5.0.0"
}

// serverReply reads a diagnostic that is a server's reply, "550 5.1.1
// text" (a 2xx, 4xx or 5xx code first); not ok for facteur's own words.
func serverReply(diag string) (policy.Reply, bool) {
	rp, err := policy.ParseReply(diag)
	ok := err == nil && rp.Code != 0 && rp.Code/100 != 3
	return rp, ok
}

// oneLine unfolds a multi-line reply into one line; the DSN folds it again
// where it must.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// rfc5322 is the date format of RFC 5322 §3.3, also used by RFC 3464 fields.
const rfc5322 = "Mon, 02 Jan 2006 15:04:05 -0700"

func explanation(b Bounce, rcpts []Recipient) []byte {
	var t strings.Builder
	line := func(s string) {
		for _, l := range wrap(s, "") {
			t.WriteString(l)
			t.WriteString("\r\n")
		}
	}
	line("This is the mail system at host " + b.Hostname + ".")
	line("")
	if b.Delayed {
		line("####################################################################")
		line("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #")
		line("####################################################################")
		line("")
		line(fmt.Sprintf("Your message could not be delivered for %s. It will be retried until it is delivered or it expires.", age(b.Now.Sub(b.Arrival))))
	} else {
		line("I'm sorry to have to inform you that your message could not be delivered to one or more recipients. Its header is attached below.")
	}
	line("")
	line("For further assistance, please send mail to postmaster. If you do so, please include this problem report.")
	line("")
	line("                   The mail system")
	line("")
	for _, r := range rcpts {
		why := r.Diagnostic
		if why == "" {
			why = "delivery failed, status " + r.Status
		}
		if r.RemoteMTA != "" {
			why = "host " + r.RemoteMTA + " said: " + why
		}
		line("<" + r.Address + ">: " + why)
		line("")
	}
	return []byte(t.String())
}

func age(d time.Duration) string {
	if d < time.Hour {
		return strconv.Itoa(int(d.Minutes())) + " minutes"
	}
	return strconv.Itoa(int(d.Hours())) + " hours"
}

// deliveryStatus writes the RFC 3464 §2.2-2.3 fields; global reports a
// non-ASCII field, which needs message/global-delivery-status.
func deliveryStatus(b Bounce, reporting string, rcpts []Recipient) ([]byte, bool) {
	var t strings.Builder
	global := false
	field := func(k, v string) {
		if !utf8.ValidString(v) {
			v = strings.ToValidUTF8(v, "?")
		}
		for i := 0; i < len(v); i++ {
			if v[i] >= 0x80 {
				global = true
			}
		}
		for _, l := range wrap(k+": "+v, " ") {
			t.WriteString(l)
			t.WriteString("\r\n")
		}
	}
	field("Reporting-MTA", "dns; "+reporting)
	if b.QueueID != "" {
		field("X-Facteur-Queue-ID", b.QueueID)
	}
	if !b.Arrival.IsZero() {
		field("Arrival-Date", b.Arrival.Format(rfc5322))
	}
	for _, r := range rcpts {
		t.WriteString("\r\n")
		typ := "rfc822"
		if !address.IsASCII(r.Address) {
			typ = "utf-8" // RFC 6533 §3
		}
		field("Final-Recipient", typ+"; "+r.Address)
		field("Action", r.Action)
		field("Status", r.Status)
		if r.RemoteMTA != "" {
			field("Remote-MTA", "dns; "+r.RemoteMTA)
		}
		if r.Diagnostic != "" {
			typ := "smtp"
			if _, ok := serverReply(r.Diagnostic); !ok {
				// Not a server's reply (no MX, connection refused): say
				// it is ours, as Postfix says X-Postfix.
				typ = "X-Facteur"
			}
			field("Diagnostic-Code", typ+"; "+r.Diagnostic)
		}
		if !r.LastAttempt.IsZero() {
			field("Last-Attempt-Date", r.LastAttempt.Format(rfc5322))
		}
		if r.Action == "delayed" && !r.WillRetryUntil.IsZero() {
			field("Will-Retry-Until", r.WillRetryUntil.Format(rfc5322))
		}
	}
	return []byte(t.String()), global
}

// wrap folds s into lines under softLine where a space allows, and never
// over hardLine; continuation lines start with indent (a space folds a
// header field, RFC 5322 §2.2.3).
func wrap(s, indent string) []string {
	if len(s) <= softLine {
		return []string{s}
	}
	var out []string
	cur := ""
	for _, w := range strings.Split(s, " ") {
		for len(w) > hardLine {
			// A word too long for any line: cut it (a URL or a token,
			// never a fold point the reader relies on).
			if cur != "" {
				out = append(out, cur)
				cur = indent
			}
			out = append(out, cur+w[:hardLine])
			cur, w = indent, w[hardLine:]
		}
		switch {
		case cur == "" && len(out) == 0:
			cur = w
		case len(cur)+1+len(w) > softLine && strings.TrimSpace(cur) != "":
			out = append(out, cur)
			cur = indent + w
		case cur == indent:
			cur += w
		default:
			cur += " " + w
		}
	}
	return append(out, cur)
}

// headersOnly returns the header part of the original message with CRLF
// line endings, no bare CR or LF, and no line over hardLine (a longer one is
// folded at whitespace, or cut with a fold).
func headersOnly(raw []byte) []byte {
	s := strings.ReplaceAll(string(raw), "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	if i := strings.Index(s, "\n\n"); i >= 0 {
		s = s[:i+1]
	}
	s = strings.TrimLeft(s, "\n")
	var t strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		for len(l) > hardLine {
			cut := strings.LastIndexAny(l[:hardLine], " \t")
			if cut <= 0 {
				cut = hardLine
			}
			t.WriteString(l[:cut])
			t.WriteString("\r\n")
			l = "\t" + strings.TrimLeft(l[cut:], " \t")
		}
		if l != "" {
			t.WriteString(l)
			t.WriteString("\r\n")
		}
	}
	return []byte(t.String())
}

package bounce

import (
	"bufio"
	"bytes"
	"regexp"
	"strconv"
	"strings"

	"github.com/emersion/go-message/mail"

	"facteur/policy"
)

// field is one "Name: value" line of a delivery-status or feedback-report
// body, unfolded.
type field struct{ key, value string }

// dsnFields splits a delivery-status body (RFC 3464 §2.1: per-message
// fields, a blank line, then one group per recipient) into fields in order,
// with a nil separator between groups. It is lenient where textproto is
// strict, because real reports break the syntax: lines without a colon,
// quoted-printable soft breaks left in (Amazon WorkMail pastes the report
// into text/plain), "Status: RO" mbox lines, missing blank lines.
func dsnFields(body string) []field {
	var out []field
	for _, l := range strings.Split(normalize(body), "\n") {
		switch {
		case strings.TrimSpace(l) == "":
			if len(out) > 0 && out[len(out)-1].key != "" {
				out = append(out, field{})
			}
		case (l[0] == ' ' || l[0] == '\t') && len(out) > 0 && out[len(out)-1].key != "":
			out[len(out)-1].value += " " + strings.TrimSpace(l)
		default:
			i := strings.IndexByte(l, ':')
			if i <= 0 || !headerLine.MatchString(l) {
				continue
			}
			out = append(out, field{key: strings.ToLower(strings.TrimSpace(l[:i])), value: strings.TrimSpace(l[i+1:])})
		}
	}
	return out
}

var qpSoftBreak = regexp.MustCompile(`=\n`)

// embeddedDSN reports whether human text carries the fields of a DSN, as
// Amazon WorkMail's "Technical report" does.
func embeddedDSN(text string) bool {
	t := strings.ToLower(qpSoftBreak.ReplaceAllString(text, ""))
	return strings.Contains(t, "\nfinal-recipient:") && strings.Contains(t, "\naction:")
}

// parseDSN reads the delivery-status parts, then completes each recipient
// with what the human part says about it when the report is terse.
func parseDSN(rep *Report, w *walker, top mail.Header) {
	rep.Kind = KindDSN
	bodies := make([]string, 0, len(w.dsn)+1)
	for _, b := range w.dsn {
		bodies = append(bodies, string(b))
	}
	if len(bodies) == 0 {
		bodies = append(bodies, qpSoftBreak.ReplaceAllString(w.humanText(), ""))
	}
	var cur *Recipient
	var hasFinal, hasOrig bool
	flush := func() {
		if cur != nil && cur.Address != "" {
			rep.Recipients = append(rep.Recipients, *cur)
		}
		cur, hasFinal, hasOrig = nil, false, false
	}
	for _, body := range bodies {
		for _, f := range dsnFields(body) {
			if f.key == "" {
				flush()
				continue
			}
			if f.key == "reporting-mta" {
				if rep.ReportingMTA == "" {
					rep.ReportingMTA = stripType(f.value)
				}
				continue
			}
			// A repeated recipient field without a blank line before it
			// starts the next recipient.
			if f.key == "final-recipient" && hasFinal || f.key == "original-recipient" && hasOrig {
				flush()
			}
			if cur == nil {
				cur = &Recipient{}
			}
			switch f.key {
			case "final-recipient":
				hasFinal = true
				if hasOrig {
					cur.OriginalRecipient = cur.Address
				}
				cur.Address = cleanAddr(stripType(f.value))
			case "original-recipient":
				hasOrig = true
				a := cleanAddr(stripType(f.value))
				if hasFinal {
					cur.OriginalRecipient = a
				} else {
					// Held in Address until a Final-Recipient replaces it.
					cur.Address = a
				}
			case "action":
				a, _, _ := strings.Cut(strings.ToLower(f.value), " ")
				cur.Action = Action(strings.Trim(a, ";,. "))
			case "status":
				cur.Status = policy.FindEnhanced(f.value)
			case "diagnostic-code":
				cur.Diagnostic = unfold(f.value)
			case "remote-mta":
				cur.RemoteMTA = stripType(f.value)
			}
		}
		flush()
	}
	for i := range rep.Recipients {
		r := &rep.Recipients[i]
		if strings.EqualFold(r.OriginalRecipient, r.Address) {
			r.OriginalRecipient = ""
		}
	}
	// A report with no usable recipient group (only per-message fields) is
	// read as the human text around it would be.
	text := w.humanText()
	human := extractText(text, exclusions(top))
	grouped := len(rep.Recipients) > 0
	if len(rep.Recipients) == 0 {
		rep.Recipients = human
		if len(rep.Recipients) == 0 {
			rep.Recipients = failedRecipientsHeader(top)
		}
		if len(rep.Recipients) == 0 {
			rep.Recipients = returnedRecipients(w, text, exclusions(top))
		}
		for i := range rep.Recipients {
			if rep.Recipients[i].Action == "" {
				rep.Recipients[i].Action = textAction(text)
			}
		}
	}
	for i := range rep.Recipients {
		r := &rep.Recipients[i]
		if !validAddr(r.Address) && len(human) > 0 {
			// "Final-Recipient: RFC822; @mx.example.org": the text has the
			// address.
			r.Address = human[min(i, len(human)-1)].Address
		}
		for _, h := range human {
			if !strings.EqualFold(h.Address, r.Address) {
				continue
			}
			// The human part's block for this recipient says what the
			// fields do not: the stage (Postfix's "(in reply to RCPT TO
			// command)", Exim's "after RCPT TO:"), and, when the report
			// gives only a Status (OpenSMTPD, Sendmail), the reason.
			if h.attributed {
				r.context = h.Diagnostic
			}
			if r.Stage == "" {
				r.Stage = h.Stage
			}
			if r.Diagnostic == "" {
				r.Diagnostic = h.Diagnostic
				r.attributed, r.where = h.attributed, h.where
			}
		}
		if grouped {
			// A DSN's per-recipient group is about this recipient alone.
			r.attributed, r.where = true, "a per-recipient DSN field"
		}
		finish(r)
	}
	if len(rep.Recipients) == 1 {
		rep.Recipients[0].attribute("the bounce's only recipient")
	}
	if allSucceeded(rep.Recipients) {
		rep.Kind = KindNotBounce
	}
}

// allSucceeded reports a DSN that says every recipient got the message
// (RFC 3464 delivered/relayed/expanded): a delivery report, not a bounce.
func allSucceeded(rs []Recipient) bool {
	if len(rs) == 0 {
		return false
	}
	for _, r := range rs {
		switch r.Action {
		case Delivered, Relayed, Expanded, Deliverable:
		default:
			return false
		}
	}
	return true
}

// parseARF reads an RFC 5965 feedback report. The complaining recipient is
// Original-Rcpt-To (§3.2), else the To of the attached original message.
func parseARF(rep *Report, w *walker) {
	rep.Kind = KindARF
	var rcpts []string
	for _, b := range w.feedback {
		for _, f := range dsnFields(string(b)) {
			switch f.key {
			case "feedback-type":
				if rep.FeedbackType == "" {
					rep.FeedbackType = strings.ToLower(strings.TrimSpace(f.value))
				}
			case "original-rcpt-to":
				rcpts = append(rcpts, findAddrs(f.value)...)
			case "reporting-mta":
				if rep.ReportingMTA == "" {
					rep.ReportingMTA = stripType(f.value)
				}
			}
		}
	}
	if len(rcpts) == 0 && len(w.returned) > 0 {
		h := lenientHeader(string(w.returned))
		rcpts = findAddrs(h.Get("To"))
	}
	seen := map[string]bool{}
	for _, a := range rcpts {
		a = cleanAddr(a)
		if a == "" || seen[strings.ToLower(a)] {
			continue
		}
		seen[strings.ToLower(a)] = true
		rep.Recipients = append(rep.Recipients, Recipient{Address: a, Diagnostic: "feedback-type: " + rep.FeedbackType})
	}
}

// failedRecipientsHeader reads Exim's X-Failed-Recipients (and mail.ru's
// X-Mailer-Daemon-Recipients): the last resort when the text names nobody.
func failedRecipientsHeader(top mail.Header) []Recipient {
	var out []Recipient
	seen := map[string]bool{}
	for _, k := range []string{"X-Failed-Recipients", "X-Mailer-Daemon-Recipients"} {
		for _, v := range top.Values(k) {
			for _, a := range findAddrs(v) {
				if !seen[strings.ToLower(a)] {
					seen[strings.ToLower(a)] = true
					out = append(out, Recipient{Address: a})
				}
			}
		}
	}
	if len(out) == 1 {
		out[0].attribute("the bounce's only recipient (X-Failed-Recipients)")
	}
	return out
}

var fullAddr = regexp.MustCompile(`^(?:` + addrRe.String() + `)$`)

func validAddr(a string) bool { return fullAddr.MatchString(a) }

// stripType removes the RFC 3464 type prefix: "rfc822; a@b" → "a@b",
// "dns; mx.example" → "mx.example".
func stripType(s string) string {
	if i := strings.IndexByte(s, ';'); i >= 0 && i < 16 && !strings.ContainsAny(s[:i], " @<") {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

var spaces = regexp.MustCompile(`\s+`)

// unfold joins a folded field into one line with single spaces.
func unfold(s string) string { return strings.TrimSpace(spaces.ReplaceAllString(s, " ")) }

var (
	addrRe     = regexp.MustCompile(`[A-Za-z0-9.!#$%&'*+/=?^_` + "`" + `{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}|[A-Za-z0-9.!#$%&'*+/=?^_` + "`" + `{|}~-]+@\[[0-9.]+\]`)
	replyRe    = regexp.MustCompile(`(?:^|[\s:;(\[<"'])([245][0-5]\d)(?:[ \-:]|$)`)
	angleAddrs = regexp.MustCompile(`^[<"'(\[]+|[>"')\]:;,.]+$`)
)

// findAddrs returns the mailbox addresses in s, in order.
func findAddrs(s string) []string {
	return addrRe.FindAllString(s, -1)
}

// cleanAddr turns "<Bob@Example.com>" or "rfc822;bob@x" leftovers into a
// bare address; "" if there is none.
func cleanAddr(s string) string {
	s = strings.TrimSpace(s)
	if as := findAddrs(s); len(as) > 0 {
		return strings.Trim(as[0], ".")
	}
	return angleAddrs.ReplaceAllString(s, "")
}

// finish derives what the fields imply: the remote reply code, a status
// when the bounce gave none, and an action from the status class.
func finish(r *Recipient) {
	if r.Stage == "" {
		r.Stage = stageIn(r.Diagnostic + "\n" + r.context)
	}
	rp, status := replyOf(r.Diagnostic)
	r.RemoteCode = rp.Code
	if r.Status == "" || r.Status[0] == '2' && r.Action == Failed {
		switch {
		case status != "":
			r.Status = status
		case rp.Code != 0:
			r.Status = strconv.Itoa(rp.Code/100) + ".0.0"
		case r.Action == Delayed:
			r.Status = "4.0.0"
		case r.Action == Delivered || r.Action == Relayed || r.Action == Expanded:
			r.Status = "2.0.0"
		case r.Action == Failed || r.Action == "":
			r.Status = "5.0.0"
		}
	}
	if r.Action == "" {
		switch r.Status[0] {
		case '2':
			r.Action = Delivered
		case '4':
			r.Action = Delayed
		default:
			r.Action = Failed
		}
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

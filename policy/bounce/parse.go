package bounce

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"regexp"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"facteur/policy"
)

// MaxSize is the largest message Parse reads. Bounces carry the original
// message, which facteur's own size limit bounds; anything far larger is not
// worth holding in memory.
const MaxSize = 32 << 20

// Limits on the MIME walk, so that a hostile message (deeply nested or with
// thousands of parts) costs bounded work.
const (
	maxDepth = 8
	maxParts = 200
)

// ErrTooLarge is returned for a message over MaxSize.
var ErrTooLarge = errors.New("bounce: message larger than MaxSize")

// Parse reads one message and reports what kind of bounce it is and what it
// says about each recipient. Only a message whose header cannot be read is an
// error: any readable message gives a Report, at worst of kind not_a_bounce.
// Parse does not classify; see Decide.
func Parse(r io.Reader) (*Report, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("bounce: read: %w", err)
	}
	if len(raw) > MaxSize {
		return nil, ErrTooLarge
	}
	return parse(raw, 0)
}

// maxWrap bounds how many times parse looks into a returned message for the
// bounce a relay wrapped.
const maxWrap = 2

func parse(raw []byte, wrap int) (*Report, error) {
	ent, err := message.Read(bytes.NewReader(skipEnvelope(raw)))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, fmt.Errorf("bounce: read header: %w", err)
	}
	if ent.Header.Len() == 0 {
		return nil, errors.New("bounce: no header: not an email message")
	}
	w := &walker{}
	w.walk(ent, 0, false)

	rep := &Report{Recipients: []Recipient{}}
	rep.EnvelopeTo = envelopeTo(ent.Header)
	w.originalIDs(rep, ent.Header)

	top := mail.Header{Header: ent.Header}
	switch {
	case len(w.feedback) > 0:
		parseARF(rep, w)
	case len(w.dsn) > 0 || embeddedDSN(w.humanText()):
		parseDSN(rep, w, top)
	case w.sesJSON(rep):
	case isAutoReply(top, w.humanText()):
		rep.Kind = KindNotBounce
	default:
		parseNonstandard(rep, w, top)
	}
	if len(rep.Recipients) == 0 && rep.Kind != KindARF && wrap < maxWrap && wrappedReport(w.returned) {
		// A gateway (a content filter, a mail-to-mail bridge) that could
		// not hand a bounce on sends its own notice with that bounce
		// attached as message/rfc822; its text names nobody. The attached
		// report is the bounce: read it.
		if inner, err := parse(w.returned, wrap+1); err == nil && len(inner.Recipients) > 0 {
			inner.EnvelopeTo = rep.EnvelopeTo
			return inner, nil
		}
	}
	return rep, nil
}

// wrappedReport: a returned message that is itself a delivery status
// notification (its header declares a multipart/report of type
// delivery-status), not somebody's mail.
func wrappedReport(returned []byte) bool {
	if len(returned) == 0 {
		return false
	}
	h, err := textproto.ReadHeader(bufioReader(returned))
	if err != nil && h.Len() == 0 {
		return false
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && strings.EqualFold(mt, "multipart/report") && strings.EqualFold(params["report-type"], "delivery-status")
}

// skipEnvelope drops what may precede the header in a stored message: blank
// lines and the mbox "From sender date" line, which is not a header field.
func skipEnvelope(raw []byte) []byte {
	raw = bytes.TrimLeft(raw, "\r\n")
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			return raw[i+1:]
		}
	}
	return raw
}

// walker collects, from one MIME tree, the parts a bounce is made of.
type walker struct {
	parts int
	// human holds the decoded text parts meant for a person, with any
	// pasted copy of the original message cut off.
	human []string
	// dsn holds message/delivery-status bodies (RFC 3464 §2).
	dsn [][]byte
	// feedback holds message/feedback-report bodies (RFC 5965 §3).
	feedback [][]byte
	// returned is the first returned original message or its headers,
	// either a MIME part or the text after a "copy of the message" line.
	returned []byte
}

func (w *walker) walk(e *message.Entity, depth int, attachment bool) {
	w.parts++
	if depth > maxDepth || w.parts > maxParts {
		return
	}
	mt, params, ctErr := e.Header.ContentType()
	if ctErr != nil || mt == "" {
		mt = "text/plain"
	}
	mt = strings.ToLower(mt)
	if strings.HasPrefix(mt, "multipart/") {
		raw, _ := io.ReadAll(io.LimitReader(e.Body, MaxSize))
		if w.multipart(e.Header, mt, raw, depth, attachment) > 0 {
			return
		}
		// No readable part: either a part header breaks the syntax (a
		// folded line without its leading space, as in some Exchange
		// NDRs), or the boundary was mangled in transit (or by an
		// anonymiser). Split by hand, with the body's own boundary if the
		// declared one is not there.
		if w.splitParts(raw, params["boundary"], depth, attachment) > 0 {
			return
		}
		if b := sniffBoundary(raw); b != "" && b != params["boundary"] {
			if w.splitParts(raw, b, depth, attachment) == 0 {
				h := e.Header.Copy()
				params["boundary"] = b
				h.SetContentType(mt, params)
				if w.multipart(h, mt, raw, depth, attachment) > 0 {
					return
				}
			} else {
				return
			}
		}
		// No boundary at all in the body (an old Sendmail that declared a
		// multipart/report and wrote plain text): read it as text.
		w.leaf("text/plain", raw, attachment)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(e.Body, MaxSize))
	disp, _, _ := e.Header.ContentDisposition()
	w.leaf(mt, body, attachment || strings.EqualFold(disp, "attachment"))
}

// multipart walks the parts of one multipart body and returns how many it
// found.
func (w *walker) multipart(h message.Header, mt string, raw []byte, depth int, attachment bool) int {
	e, err := message.New(h, bytes.NewReader(raw))
	if e == nil || err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return 0
	}
	mr := e.MultipartReader()
	if mr == nil {
		return 0
	}
	type kid struct {
		h    message.Header
		mt   string
		body []byte
	}
	var alts []kid
	n := 0
	for w.parts <= maxParts {
		p, err := mr.NextPart()
		if p == nil || err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			// io.EOF, or a broken or truncated part: keep what was read
			// so far, half a bounce is still evidence.
			break
		}
		n++
		if mt != "multipart/alternative" {
			w.walk(p, depth+1, attachment)
			continue
		}
		// Read one rendering only, the plain text when there is one: keep
		// them all until the end, since parts are read in order.
		kmt, _, _ := p.Header.ContentType()
		b, _ := io.ReadAll(io.LimitReader(p.Body, MaxSize))
		alts = append(alts, kid{p.Header, strings.ToLower(kmt), b})
	}
	if len(alts) > 0 {
		pick := alts[0]
		for _, k := range alts {
			if k.mt == "text/plain" {
				pick = k
				break
			}
		}
		w.parts++
		if strings.HasPrefix(pick.mt, "multipart/") {
			// Multipart bodies are not transfer-decoded: re-read as is.
			w.multipart(pick.h, pick.mt, pick.body, depth+1, attachment)
		} else {
			w.leaf(pick.mt, pick.body, attachment)
		}
	}
	return n
}

// splitParts is the lenient fallback of multipart: it cuts raw at the
// boundary lines, repairs each part's header (a line that is neither a field
// nor indented is taken as a continuation) and walks the parts.
func (w *walker) splitParts(raw []byte, boundary string, depth int, attachment bool) int {
	if boundary == "" {
		return 0
	}
	delim := []byte("--" + boundary)
	var parts [][]byte
	var cur []byte
	in := false
	for _, line := range bytes.SplitAfter(raw, []byte("\n")) {
		t := bytes.TrimRight(line, " \t\r\n")
		if bytes.HasPrefix(t, delim) && (len(t) == len(delim) || string(t[len(delim):]) == "--") {
			if in {
				parts = append(parts, cur)
			}
			cur, in = nil, string(t[len(delim):]) != "--"
			if !in {
				break
			}
			continue
		}
		if in {
			cur = append(cur, line...)
		}
	}
	if in && len(cur) > 0 {
		parts = append(parts, cur)
	}
	n := 0
	for _, p := range parts {
		if w.parts > maxParts {
			break
		}
		e, err := message.Read(bytes.NewReader(repairHeader(p)))
		if e == nil || err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			continue
		}
		n++
		w.walk(e, depth+1, attachment)
	}
	return n
}

// repairHeader indents header lines that are neither "Name: value" nor
// continuations, so that textproto reads them as folded.
func repairHeader(p []byte) []byte {
	p = bytes.ReplaceAll(p, []byte("\r\n"), []byte("\n"))
	head, body, found := bytes.Cut(p, []byte("\n\n"))
	if !found {
		return p
	}
	var out bytes.Buffer
	for i, l := range bytes.Split(head, []byte("\n")) {
		if i > 0 && len(l) > 0 && l[0] != ' ' && l[0] != '\t' && !headerLine.Match(l) {
			out.WriteByte(' ')
		}
		out.Write(l)
		out.WriteByte('\n')
	}
	out.WriteByte('\n')
	out.Write(body)
	return out.Bytes()
}

var boundaryLine = regexp.MustCompile(`(?m)^--([^\s]{1,70}?)\s*$`)

// sniffBoundary returns the first "--boundary" line of a multipart body.
func sniffBoundary(raw []byte) string {
	if m := boundaryLine.FindSubmatch(raw); m != nil {
		return strings.TrimSuffix(string(m[1]), "--")
	}
	return ""
}

// leaf files one non-multipart part by type.
func (w *walker) leaf(mt string, body []byte, attachment bool) {
	if mt == "" {
		mt = "text/plain"
	}
	switch mt {
	case "message/delivery-status", "message/global-delivery-status":
		w.dsn = append(w.dsn, body)
	case "message/feedback-report":
		w.feedback = append(w.feedback, body)
	case "message/rfc822", "message/global", "text/rfc822-headers",
		"message/rfc822-headers", "message/global-headers", "message/partial":
		if w.returned == nil {
			w.returned = body
		}
	case "text/plain", "text/html", "text/enriched":
		text := normalize(string(body))
		if mt == "text/html" {
			text = htmlToText(text)
		}
		if attachment {
			// An attached text file is often the original's header
			// (e.g. mailheaders.txt), never the explanation.
			if w.returned == nil && looksLikeHeader(text) {
				w.returned = []byte(text)
			}
			return
		}
		human, rest := splitReturned(text)
		w.human = append(w.human, human)
		if rest != "" && w.returned == nil {
			w.returned = []byte(rest)
		}
	}
}

func (w *walker) humanText() string { return strings.Join(w.human, "\n\n") }

// normalize turns CRLF and lone CR into LF.
func normalize(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

var (
	htmlBreak = regexp.MustCompile(`(?i)<\s*(br|/p|/div|/tr|/li|/h\d)\s*/?>`)
	htmlTag   = regexp.MustCompile(`(?s)<[^>]*>`)
	htmlDrop  = regexp.MustCompile(`(?is)<(style|script|head)\b.*?</(style|script|head)\s*>`)
)

func htmlToText(s string) string {
	s = htmlDrop.ReplaceAllString(s, "")
	s = htmlBreak.ReplaceAllString(s, "\n")
	s = htmlTag.ReplaceAllString(s, "")
	return html.UnescapeString(s)
}

var headerLine = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]*:`)

func looksLikeHeader(s string) bool {
	n := 0
	for _, l := range strings.SplitN(strings.TrimLeft(s, "\n"), "\n", 6) {
		if headerLine.MatchString(l) {
			n++
		}
	}
	return n >= 2
}

// returnedMarkers end the human part of a bounce: what follows is a copy of
// the original message or its header. Each MTA words it its own way; the
// ones marked dashed count only on a "----- ... -----" line, since the words
// alone also occur in prose ("The original message was received at ...").
var returnedMarkers = []struct {
	phrase string
	dashed bool
}{
	{"this is a copy of the message", false},    // Exim
	{"this is a copy of your message", false},   // Exim
	{"below this line is a copy of the", false}, // qmail, Yahoo
	{"original message follows", false},         // DragonFly, MailFoundry
	{"message headers follow", false},           // DragonFly
	{"header of the original message", false},   // GMX, 1&1
	{"unsent message follows", false},           // Sendmail v5
	{"below is a copy of the original", false},  // OpenSMTPD
	{"original mail as follows", false},         // FML
	{"copy of the original message", false},
	{"original message headers", false}, // Exchange Online
	{"original message", true},          // Gmail, mFILTER
	{"returned message", true},          // Notes
	{"message d'origine", true},
	{"message original", true},
	{"originalnachricht", true},
}

// splitReturned cuts text at the first line announcing the returned message.
func splitReturned(text string) (human, rest string) {
	off := 0
	for _, line := range strings.SplitAfter(text, "\n") {
		t := strings.ToLower(strings.TrimSpace(line))
		dashed := strings.HasPrefix(t, "--")
		inner := strings.Trim(t, "-=*: .")
		for _, m := range returnedMarkers {
			if m.dashed && !dashed {
				continue
			}
			if strings.Contains(inner, m.phrase) && len(inner) < len(m.phrase)+40 {
				return text[:off], strings.TrimLeft(text[off+len(line):], "\n")
			}
		}
		off += len(line)
	}
	return text, ""
}

// originalIDs fills MessageID and QueueID from the returned message's
// header, if the bounce carries one.
func (w *walker) originalIDs(rep *Report, top message.Header) {
	if len(w.returned) == 0 {
		return
	}
	h, err := textproto.ReadHeader(bufioReader(w.returned))
	if err != nil && h.Len() == 0 {
		// A pasted header may start with junk or be cut short: retry
		// leniently from the first header-looking line.
		h = lenientHeader(string(w.returned))
	}
	if id := strings.TrimSpace(h.Get("Message-Id")); id != "" {
		rep.MessageID = strings.Trim(id, "<> ")
	}
	if id := strings.TrimSpace(h.Get("X-Facteur-Id")); id != "" {
		rep.QueueID = id
		return
	}
	// facteur's Received line says "by HOST (facteur) with ESMTP id QUEUEID".
	for _, rcv := range h.Values("Received") {
		if m := facteurReceived.FindStringSubmatch(rcv); m != nil {
			rep.QueueID = m[1]
			return
		}
	}
}

var facteurReceived = regexp.MustCompile(`(?i)\(facteur\)[^;]*?\bid\s+([0-9A-Z]{8,32})\b`)

func lenientHeader(s string) textproto.Header {
	var h textproto.Header
	var key, val string
	flush := func() {
		if key != "" {
			h.Add(key, strings.TrimSpace(val))
		}
		key, val = "", ""
	}
	for _, l := range strings.Split(normalize(s), "\n") {
		switch {
		case l == "":
			if key != "" || h.Len() > 0 {
				flush()
				return h
			}
		case (l[0] == ' ' || l[0] == '\t') && key != "":
			val += " " + strings.TrimSpace(l)
		default:
			if i := strings.IndexByte(l, ':'); i > 0 && headerLine.MatchString(l) {
				flush()
				key, val = l[:i], l[i+1:]
			}
		}
	}
	flush()
	return h
}

// envelopeTo lists where the bounce was delivered, most specific first.
func envelopeTo(h message.Header) []string {
	var out []string
	seen := map[string]bool{}
	for _, k := range []string{"Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To"} {
		for _, v := range h.Values(k) {
			for _, a := range findAddrs(v) {
				la := strings.ToLower(a)
				if !seen[la] {
					seen[la] = true
					out = append(out, a)
				}
			}
		}
	}
	return out
}

var sendmailLineBreak = regexp.MustCompile(`!\r?\n `)

// sesJSON recognises an Amazon SES notification sent by e-mail: the body is
// the JSON document of docs.aws.amazon.com/ses/latest/dg/notification-contents.html.
func (w *walker) sesJSON(rep *Report) bool {
	text := strings.TrimSpace(w.humanText())
	if !strings.HasPrefix(text, "{") || !strings.Contains(text, "notificationType") {
		return false
	}
	var n struct {
		// Type and Message are SNS's envelope ("Type": "Notification"),
		// in which the SES notification is a JSON string.
		Type             string `json:"Type"`
		Message          string `json:"Message"`
		NotificationType string `json:"notificationType"`
		Bounce           struct {
			BounceType        string `json:"bounceType"`
			ReportingMTA      string `json:"reportingMTA"`
			BouncedRecipients []struct {
				EmailAddress   string `json:"emailAddress"`
				Action         string `json:"action"`
				Status         string `json:"status"`
				DiagnosticCode string `json:"diagnosticCode"`
			} `json:"bouncedRecipients"`
		} `json:"bounce"`
		Complaint struct {
			ComplainedRecipients []struct {
				EmailAddress string `json:"emailAddress"`
			} `json:"complainedRecipients"`
			ComplaintFeedbackType string `json:"complaintFeedbackType"`
		} `json:"complaint"`
		Delivery struct {
			Recipients   []string `json:"recipients"`
			SMTPResponse string   `json:"smtpResponse"`
		} `json:"delivery"`
	}
	// Decode reads the first JSON value and ignores SNS's footer after it.
	if err := json.NewDecoder(strings.NewReader(text)).Decode(&n); err != nil {
		// The notification is one long line, and Sendmail breaks a line
		// longer than its limit (990 bytes) with "!", a newline and a
		// space, which leaves a raw newline inside a JSON string. Undo
		// those breaks and try again.
		fixed := sendmailLineBreak.ReplaceAllString(text, "")
		if fixed == text || json.NewDecoder(strings.NewReader(fixed)).Decode(&n) != nil {
			return false
		}
	}
	if n.NotificationType == "" && n.Type == "Notification" && strings.HasPrefix(strings.TrimSpace(n.Message), "{") {
		msg := n.Message
		n.Message = ""
		if json.Unmarshal([]byte(msg), &n) != nil {
			return false
		}
	}
	switch strings.ToLower(n.NotificationType) {
	case "bounce":
		rep.Kind = KindDSN
		rep.ReportingMTA = stripType(n.Bounce.ReportingMTA)
		for _, b := range n.Bounce.BouncedRecipients {
			r := Recipient{Address: cleanAddr(b.EmailAddress), Action: Action(strings.ToLower(b.Action)),
				Status: policy.FindEnhanced(b.Status), Diagnostic: unfold(b.DiagnosticCode),
				attributed: true, where: "the recipient's entry of the JSON notification"}
			if r.Action == "" {
				r.Action = Failed
				if strings.EqualFold(n.Bounce.BounceType, "Transient") {
					r.Action = Delayed
				}
			}
			finish(&r)
			rep.Recipients = append(rep.Recipients, r)
		}
	case "complaint":
		rep.Kind = KindARF
		rep.FeedbackType = n.Complaint.ComplaintFeedbackType
		if rep.FeedbackType == "" {
			rep.FeedbackType = "abuse"
		}
		for _, c := range n.Complaint.ComplainedRecipients {
			rep.Recipients = append(rep.Recipients, Recipient{Address: cleanAddr(c.EmailAddress)})
		}
	case "delivery":
		rep.Kind = KindNotBounce
		for _, a := range n.Delivery.Recipients {
			r := Recipient{Address: cleanAddr(a), Action: Delivered, Diagnostic: n.Delivery.SMTPResponse}
			finish(&r)
			rep.Recipients = append(rep.Recipients, r)
		}
	default:
		return false
	}
	return true
}

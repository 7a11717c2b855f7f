package bounce

import (
	"regexp"
	"strings"

	"github.com/emersion/go-message/mail"

	"facteur/policy"
)

// parseNonstandard reads a bounce that has no delivery-status part. It is a
// bounce only with some evidence (a daemon sender, a bounce subject or
// wording, X-Failed-Recipients); ordinary mail is not_a_bounce.
func parseNonstandard(rep *Report, w *walker, top mail.Header) {
	text := w.humanText()
	if !looksLikeBounce(top, text) {
		rep.Kind = KindNotBounce
		return
	}
	rep.Kind = KindNonstandard
	rep.Recipients = extractText(text, exclusions(top))
	if len(rep.Recipients) == 0 {
		rep.Recipients = failedRecipientsHeader(top)
		if len(rep.Recipients) == 1 {
			// Exim names a local delivery by its local part or its file
			// ("  bob", "  save to /path") under "The following
			// address(es) failed:", and the full address only in
			// X-Failed-Recipients: the lines under the heading are the
			// reason of that one recipient.
			rep.Recipients[0].Diagnostic = failedBlock(text)
		}
	}
	if len(rep.Recipients) == 0 {
		rep.Recipients = returnedRecipients(w, text, exclusions(top))
	}
	act := textAction(text)
	for i := range rep.Recipients {
		r := &rep.Recipients[i]
		r.Action = act
		finish(r)
	}
}

var (
	// post_master: Verizon's MMS/SMS gateway.
	daemonSender  = regexp.MustCompile(`(?i)^(mailer-daemon|postmaster|post_master|mail-daemon|mailerdaemon|mdaemon|bounce[sd]?|nobody|mail\.delivery|maildelivery)@|^<>$|^$`)
	bounceSubject = regexp.MustCompile(`(?i)errors from \S+\[|undeliver|undelivered|delivery (status|failure|failed|notification|has failed|problem)|returned mail|mail delivery failed|failure notice|failure delivery|non[- ]?remis|non distribu|échec|echec|unzustellbar|could not be delivered|delivery status|mail failure|returning message|error sending|message delivery` +
		// Japanese carriers and ISPs: "mail error (notice)", "delivery
		// error/failure", "sending error", "undelivered".
		`|メールエラー|エラー通知|配信(エラー|不能|失敗)|送信(エラー|失敗)|不達|未達`)
	bounceBody = regexp.MustCompile(`(?i)user unknown|unknown user|no such user|failed to deliver|could not deliver|couldn't deliver|cannot be delivered|can't be delivered|wasn't delivered|did not reach|address not found|could not be reached|returned to sender|could not be delivered|couldn't be delivered|was not delivered|not be delivered|undeliverable|unable to deliver|permanent error|permanent fatal error|failed permanently|delivery has failed|delivery to the following recipient|did not reach the following recipient|error delivering your mail|delivery failed|qmail-send program|mail delivery software|delivery problems|rejected recipient|failure reasons|has been delayed|is delayed|could not send message|error has occurred while attempting to deliver|transcript of session follows|message could not be delivered|n'a pas pu être (remis|distribué|délivré)|n'a pas été (remis|distribué)|impossible de (remettre|distribuer|délivrer)|nicht zugestellt`)
)

// looksLikeBounce weighs the evidence that a message without a report part is
// a bounce.
func looksLikeBounce(top mail.Header, text string) bool {
	if top.Get("X-Failed-Recipients") != "" {
		return true
	}
	from := ""
	if as, err := top.AddressList("From"); err == nil && len(as) > 0 {
		from = as[0].Address
	} else if as := findAddrs(top.Get("From")); len(as) > 0 {
		from = as[0]
	}
	subj, _ := top.Subject()
	lf := strings.ToLower(top.Get("From"))
	daemon := daemonSender.MatchString(strings.TrimSpace(from)) ||
		strings.Contains(lf, "mail delivery") || strings.Contains(lf, "mailer daemon") || strings.Contains(lf, "mailer-daemon")
	return bounceBody.MatchString(text) && (daemon || bounceSubject.MatchString(subj) || strings.TrimSpace(top.Get("Return-Path")) == "<>") ||
		daemon && bounceSubject.MatchString(subj)
}

var (
	autoSubject = regexp.MustCompile(`(?i)^\s*(auto(matic)?[ -]?(reply|response|answer|antwort)|out of (the )?office|vacation|away from|absence|abwesen|r[ée]ponse automatique|message d'absence|autoreply|auto:|respuesta autom|risposta automatica|on leave)`)
)

// isAutoReply recognises auto-replies (RFC 3834 Auto-Submitted:
// auto-replied, vendors' X-Autoreply and Precedence: auto_reply, vacation
// subjects). Exim also marks its bounces auto-replied, so a message that
// reads like a bounce from a daemon is not an auto-reply.
func isAutoReply(top mail.Header, text string) bool {
	subj, _ := top.Subject()
	marked := strings.EqualFold(strings.TrimSpace(top.Get("Auto-Submitted")), "auto-replied") ||
		top.Get("X-Autoreply") != "" || top.Get("X-Autorespond") != "" ||
		strings.EqualFold(strings.TrimSpace(top.Get("Precedence")), "auto_reply") ||
		strings.Contains(strings.ToLower(top.Get("X-Auto-Response-Suppress")), "all") && autoSubject.MatchString(subj) ||
		autoSubject.MatchString(subj)
	if !marked {
		return false
	}
	return !looksLikeBounce(top, text) || autoSubject.MatchString(subj) && top.Get("X-Failed-Recipients") == ""
}

var (
	delayedText   = regexp.MustCompile(`(?i)has been delayed|is delayed|delivery (is )?delayed|delayed for more than|warning message only|temporary failure report|will be retried|still being retried|will (continue|keep) trying|not yet been delivered|could not send message for past|do not need to re-?send|delay(ed)? notification`)
	permanentText = regexp.MustCompile(`(?i)permanent error|permanent failure|permanent fatal|failed permanently|given up|giving up|not going to try again|no further (delivery )?attempts|could not be delivered|retry timeout exceeded|n'a pas pu`)
)

// textAction tells a delay warning from a failure in a non-standard bounce.
func textAction(text string) Action {
	if delayedText.MatchString(text) && !permanentText.MatchString(text) {
		return Delayed
	}
	return Failed
}

// exclusions are the addresses a bounce mentions that are not failed
// recipients: the bounce's own sender and recipient (the original sender).
func exclusions(top mail.Header) map[string]bool {
	ex := map[string]bool{}
	// Not X-Original-To: the DragonFly Mail Agent copies the failed
	// recipient there.
	for _, k := range []string{"From", "To", "Sender", "Reply-To", "Return-Path", "Delivered-To"} {
		for _, a := range findAddrs(top.Get(k)) {
			ex[strings.ToLower(a)] = true
		}
	}
	return ex
}

// maxRecipients bounds the recipients read from a text: each costs a scan of
// the text, and no real bounce lists more.
const maxRecipients = 100

// maxMentions bounds the addresses read from a text, and maxReason the
// length of one reason: enough for any real bounce, and a bound on the work
// a hostile one causes.
const (
	maxMentions = 2000
	maxReason   = 2000
	maxBlock    = 60
)

// A mention is an address in the text; lead says it starts its line, the
// way every format that lists failed recipients puts them ("  a@b" in Exim,
// "<a@b>:" in qmail, "a@b on DATE" in Exchange, "a@b: reason" in OpenSMTPD).
type mention struct {
	addr string
	line int
	lead bool
}

var (
	// Lines that name addresses which are not recipients.
	notRecipientLine   = regexp.MustCompile(`(?i)^[\s>]*(from|to|cc|sender|reply-to|return-path|original[ -]sender|envelope-from|sent|subject|date|message-id|received|x-[a-z-]+|reporting-mta|sender-mta)\s*:`)
	notRecipientBefore = regexp.MustCompile(`(?i)(mail from:?\s*<?|^\s*from:\s*<|generated from\s*|envelope-from\s*<?|[=/]|\bby\s+|contact\s+<?|\bpostmaster at\s*)$`)
	leadTrim           = regexp.MustCompile(`^[\s<>"'(\[]*`)
	quotePrefix        = regexp.MustCompile(`^(?:>{1,2} )+|^>+$`)
	generatedBy        = regexp.MustCompile(`(?i)^\s*generated by\s+<?$`)
	fileOrPipe         = regexp.MustCompile(`(?i)^\s*(save to|pipe to|[/|])`)
	// qmailLead is also 1&1's (and Exim's in some builds) "a@b:" alone
	// on its line, above the remote server's error.
	qmailLead     = regexp.MustCompile(`^<(` + addrRe.String() + `)>:\s*$|^(` + addrRe.String() + `):\s*$`)
	sendmailRcpt  = regexp.MustCompile(`^\s*[245]\d\d(?:[ -]` + policy.EnhancedPattern + `)?\s+<(` + addrRe.String() + `)>\.\.\.\s`)
	bareAddrLine  = regexp.MustCompile(`^\s*<?` + addrRe.String() + `>?[:,;]?\s*$`)
	displayName   = regexp.MustCompile(`^\s+<` + addrRe.String() + `>`)
	displayLeadRe = regexp.MustCompile(`^\s*` + addrRe.String() + `\s+<$`)
	rcptField     = regexp.MustCompile(`(?i)^\s*rcpt to:\s*<?` + addrRe.String() + `>?\s*$`)
	rcptToArg     = regexp.MustCompile(`(?i)\brcpt to:\s*<(` + addrRe.String() + `)>`)
	// sendmailLine is a line of a Sendmail transcript that reports on one
	// recipient or host: "550 5.1.1 <a@b>... User unknown",
	// "550 example.org (smtp)... 550 Host unknown".
	sendmailLine = regexp.MustCompile(`^\s*[245]\d\d(?:[ -]` + policy.EnhancedPattern + `)?\s+\S.*?\.\.\.\s`)
	// transcriptBreak starts another part of a Sendmail transcript.
	transcriptBreak = regexp.MustCompile(`(?i)^\s*(while talking to\b|>>> |<<< )`)
)

func mentions(lines []string, ex map[string]bool) []mention {
	var out []mention
	// An address the text shows as the argument of RCPT TO (Exim's "after
	// RCPT TO:<a@b>", a transcript's ">>> RCPT To:<a@b>") was a recipient
	// of the failed transaction, even when the bounce's own header also
	// names it (a message sent to oneself): keep it.
	rcptArg := map[string]bool{}
	for _, l := range lines {
		for _, m := range rcptToArg.FindAllStringSubmatch(l, 4) {
			rcptArg[strings.ToLower(m[1])] = true
		}
		// qmail starts each failed recipient's block with "<a@b>:" alone
		// on its line; Sendmail reports "550 <a@b>... reason".
		if m := qmailLead.FindStringSubmatch(l); m != nil {
			rcptArg[strings.ToLower(m[1]+m[2])] = true
		}
		if m := sendmailRcpt.FindStringSubmatch(l); m != nil {
			rcptArg[strings.ToLower(m[1])] = true
		}
	}
	for i, l := range lines {
		if notRecipientLine.MatchString(l) {
			continue
		}
		for _, loc := range addrRe.FindAllStringIndex(l, -1) {
			a := strings.Trim(l[loc[0]:loc[1]], ".")
			if displayName.MatchString(l[loc[1]:]) {
				// "a@b <c@d>": a is the display name of c@d (Exim quotes
				// the header form), not an address of its own.
				continue
			}
			// The words before an address are near it: look at a window,
			// so that a line of thousands of addresses stays linear.
			before := l[max(0, loc[0]-64):loc[0]]
			// Exim names the address a file or pipe delivery came from:
			// "save to /path\n generated by a@b" (not "by host" of a
			// Received line).
			// Only for a file or a pipe: below an address, "generated by"
			// names the alias that expanded to it, which may have other
			// members that did not fail.
			generated := generatedBy.MatchString(before) && i > 0 && fileOrPipe.MatchString(lines[i-1])
			if ex[strings.ToLower(a)] && !rcptArg[strings.ToLower(a)] || notRecipientBefore.MatchString(before) && !generated {
				continue
			}
			// Sendmail's own line for a failed recipient, "550 5.1.1 <a@b>... User
			// unknown", starts with the code: the address leads it as much as
			// "<a@b>... Deferred" does.
			sm := sendmailRcpt.FindStringSubmatchIndex(l)
			lead := len(leadTrim.FindString(l[:loc[0]])) == loc[0] || displayLead(l, loc[0]) || generated ||
				sm != nil && sm[2] == loc[0]
			out = append(out, mention{addr: a, line: i, lead: lead})
			if len(out) >= maxMentions {
				return out
			}
		}
	}
	return out
}

// displayLead: the address at i follows a display name that starts the line
// ("  a@b <c@d>: malformed address").
func displayLead(l string, i int) bool {
	return i > 0 && displayLeadRe.MatchString(l[:i])
}

// returnedRecipients is the last resort of a bounce that names no recipient
// in its text (Verizon's MMS gateway, old Sendmail's "Deferred: Connection
// timed out"): the To and Cc of the returned message, which the bounce's
// own text then concerns. Addresses of the bounce's header stay excluded.
func returnedRecipients(w *walker, text string, ex map[string]bool) []Recipient {
	src := text
	if len(w.returned) > 0 {
		// The returned message's header only: its body may quote others.
		src = strings.TrimLeft(normalize(string(w.returned)), "\n")
		if i := strings.Index(src, "\n\n"); i >= 0 {
			src = src[:i]
		}
	}
	var addrs []string
	seen := map[string]bool{}
	for _, l := range strings.Split(normalize(src), "\n") {
		m := origRcptLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		for _, a := range findAddrs(m[1]) {
			k := strings.ToLower(a)
			if !ex[k] && !seen[k] && len(addrs) < maxRecipients {
				seen[k] = true
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) == 0 {
		return nil
	}
	var why []string
	for _, l := range strings.Split(normalize(text), "\n") {
		if blank(l) || notRecipientLine.MatchString(l) || headerLine.MatchString(strings.TrimSpace(l)) && addrRe.MatchString(l) {
			continue
		}
		if origMarker.MatchString(l) {
			break
		}
		why = append(why, l)
	}
	reason := capReason(unfold(strings.Join(why, "\n")))
	out := make([]Recipient, 0, len(addrs))
	for _, a := range addrs {
		r := Recipient{Address: a, Diagnostic: reason}
		if len(addrs) == 1 {
			r.attribute("the returned message's only recipient")
		}
		out = append(out, r)
	}
	return out
}

var (
	origRcptLine = regexp.MustCompile(`(?i)^\s*(?:to|cc):\s*(.+)$`)
	origMarker   = regexp.MustCompile(`(?i)original message|unsent message|returned message|copy of the message`)
)

// extractText finds the failed recipients of a human-readable bounce and the
// reason given for each. Recipients are the addresses that start a line;
// when none does, every address mentioned (a sentence such as "There was an
// error delivering your mail to <a@b>."). The reason is the text that
// follows the address up to the SMTP reply, or, failing that, the nearest
// paragraph with a reply code, or the paragraph the format labels as the
// reason ("because:", "Reason:").
func extractText(text string, ex map[string]bool) []Recipient {
	lines := strings.Split(normalize(text), "\n")
	for i, l := range lines {
		// A bounce quoted in a forwarded message: "> " before each line
		// (not Sendmail's ">>> " command lines, which have no space
		// after the first ">").
		lines[i] = quotePrefix.ReplaceAllString(l, "")
	}
	ms := mentions(lines, ex)
	var picked []mention
	for _, m := range ms {
		if m.lead {
			picked = append(picked, m)
		}
	}
	if len(picked) == 0 {
		picked = ms
	}
	idx := map[string]int{} // recipient → its mention in first
	var first []mention
	starts := map[int]string{} // line → recipient that a block starts there
	for _, m := range picked {
		k := strings.ToLower(m.addr)
		if i, ok := idx[k]; ok {
			// Sendmail lists the failed addresses, then reports on each
			// in its transcript ("550 <a@b>... User unknown"): the report
			// is the recipient's reason, the listing is not.
			if sendmailLine.MatchString(lines[m.line]) && !sendmailLine.MatchString(lines[first[i].line]) {
				first[i] = m
				starts[m.line] = k
			}
			continue
		}
		if len(first) < maxRecipients {
			idx[k] = len(first)
			first = append(first, m)
			starts[m.line] = k
		}
	}
	out := make([]Recipient, 0, len(first))
	refused := refusedRcpts(lines)
	for _, m := range first {
		why, own := reasonFor(lines, m, starts)
		why = capReason(why)
		r := Recipient{Address: m.addr, Diagnostic: why, context: why, Stage: stageOf(lines, m, refused)}
		if own {
			r.attribute("the recipient's own lines")
		}
		out = append(out, r)
	}
	// With one recipient, whatever the bounce says is about it.
	if len(out) == 1 {
		out[0].attribute("the bounce's only recipient")
	}
	return out
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

var letter = regexp.MustCompile(`\pL`)

// isLabel reports text that says nothing by itself: empty, punctuation, or a
// heading such as "because:".
func isLabel(s string) bool {
	t := strings.TrimSpace(s)
	return !letter.MatchString(t) || strings.HasSuffix(t, ":") && len(t) < 60
}

// reasonFor gathers the reason text for the recipient mentioned at m, and
// says whether it was found in the recipient's own block (the lines that
// start at its address and stop at the next recipient): only there is the
// reason surely about this recipient when a bounce lists several.
func reasonFor(lines []string, m mention, starts map[int]string) (string, bool) {
	me := strings.ToLower(m.addr)
	other := func(i int) bool { k, ok := starts[i]; return ok && k != me }
	// The rest of the address's own line and the rest of its paragraph.
	l := lines[m.line]
	idx := strings.Index(asciiLower(l), me)
	prefix := l[max(0, idx-maxReason):idx]
	own := l[idx+len(me) : idx+len(me)+min(maxReason, len(l)-idx-len(me))]
	if hasReply(prefix) {
		// Sendmail's "554 <a@b>... Remote protocol error".
		own = l
	}
	own = strings.TrimSpace(strings.TrimLeft(removeAddr(own, me), ">\"')]:;,. "))
	if sendmailLine.MatchString(l) {
		// Sendmail gives one line per recipient ("550 <a@b>... User
		// unknown"): the lines after it are about other recipients or
		// hosts. The mailer's own output just above it ("mail.local:
		// unknown user: a") is about it when it names its local part.
		block := mailerLines(lines, m)
		block = append(block, l)
		return unfold(strings.Join(block, "\n")), true
	}
	if own == "" && (m.line > 0 && other(m.line-1) && bareAddrLine.MatchString(lines[m.line-1]) ||
		m.line+1 < len(lines) && other(m.line+1) && bareAddrLine.MatchString(lines[m.line+1])) {
		// One of a list of addresses ("a@b\nc@d\n\nreason"): the reason
		// after the list is shared, so it is not this recipient's alone.
		j := m.line + 1
		for j < len(lines) && (blank(lines[j]) || bareAddrLine.MatchString(lines[j])) {
			j++
		}
		var para []string
		for p := 0; p < 3 && j < len(lines); p++ {
			for ; j < len(lines) && !blank(lines[j]) && !bareAddrLine.MatchString(lines[j]); j++ {
				para = append(para, lines[j])
			}
			if hasReply(strings.Join(para, "\n")) {
				return unfold(strings.Join(para, "\n")), false
			}
			for j < len(lines) && blank(lines[j]) {
				j++
			}
		}
	}
	if rcptField.MatchString(l) {
		// Verizon's gateway lists the failed message's envelope ("MAIL
		// FROM: a", "RCPT TO: b", "Size (in bytes): 222") under the
		// error it quoted above: the fields are no reason, and their
		// numbers no reply.
		if p := previousReply(lines, m.line); p != "" {
			return unfold(p), false
		}
	}
	block := []string{own}
	i := m.line + 1
	for ; i < len(lines) && i < m.line+maxBlock && !blank(lines[i]) && !other(i) && !sendmailLine.MatchString(lines[i]) && !transcriptBreak.MatchString(lines[i]); i++ {
		block = append(block, lines[i])
	}
	if b := strings.Join(block, "\n"); hasReply(b) {
		return unfold(b), true
	}
	// The reply may sit in one of the next paragraphs (Gmail's "The
	// response from the remote server was:", DragonFly's "did not like our
	// RCPT TO:"): before any other recipient's line, it is this one's.
	var after []string
	j := i
	for p := 0; p < 3 && j < len(lines); p++ {
		for j < len(lines) && blank(lines[j]) {
			j++
		}
		var para []string
		stop := false
		for ; j < len(lines) && !blank(lines[j]); j++ {
			if other(j) {
				stop = true
				break
			}
			para = append(para, lines[j])
		}
		after = append(after, para...)
		if hasReply(strings.Join(para, "\n")) {
			return unfold(strings.Join(append(block, after...), "\n")), true
		}
		if stop {
			break
		}
	}
	if b := strings.Join(block, "\n"); !isLabel(strings.Join(block, " ")) && !onlyDate(own, block) {
		return unfold(b), true
	}
	// MailMarshal gives the reply before the list of recipients.
	if p := previousReply(lines, m.line); p != "" {
		return unfold(p), false
	}
	// Domino "because:", GMX "Reason:", 1&1 "For the following reason:".
	j = i
	var labelled []string
	for p := 0; p < 3 && j < len(lines); p++ {
		for j < len(lines) && blank(lines[j]) {
			j++
		}
		var para []string
		for ; j < len(lines) && !blank(lines[j]) && !other(j); j++ {
			para = append(para, lines[j])
		}
		labelled = append(labelled, para...)
		if !isLabel(strings.Join(para, " ")) {
			return unfold(strings.Join(append(block, labelled...), "\n")), false
		}
	}
	// Notes puts the reason on the lines above the address, IMail before
	// it on the same line.
	k := m.line - 1
	before := []string{strings.TrimRight(removeAddr(prefix, me), " :<\"'")}
	for ; k >= 0 && !blank(lines[k]) && !other(k); k-- {
		before = append([]string{lines[k]}, before...)
	}
	return unfold(strings.Join(append(before, block...), "\n")), false
}

// mailerLines returns the lines just above a Sendmail recipient line that
// name the recipient's local part: the local mailer's complaint
// ("mail.local: unknown user: bob"), which Sendmail follows with a terse
// "554 <bob@...>... Service unavailable".
func mailerLines(lines []string, m mention) []string {
	local, _, _ := strings.Cut(strings.ToLower(m.addr), "@")
	if local == "" {
		return nil
	}
	word := regexp.MustCompile(`(?i)(^|[\s:"'<])` + regexp.QuoteMeta(local) + `($|[\s:"'>.,])`)
	var out []string
	for k := m.line - 1; k >= 0 && k > m.line-5; k-- {
		if blank(lines[k]) || sendmailLine.MatchString(lines[k]) || transcriptBreak.MatchString(lines[k]) || addrRe.MatchString(lines[k]) {
			break
		}
		if word.MatchString(lines[k]) {
			out = append([]string{lines[k]}, out...)
		}
	}
	return out
}

// asciiLower lowers ASCII letters only, so that byte offsets in the result
// are offsets in s (strings.ToLower rewrites invalid UTF-8, changing them).
// Addresses are ASCII (addrRe), so folding ASCII is enough to find them.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// removeAddr deletes other mentions of the recipient from its reason line
// (">>> a@b <a@b>", "a@b<mailto:a@b>").
func removeAddr(s, addr string) string {
	low := asciiLower(s)
	for _, form := range []string{"<mailto:" + addr + ">", "<" + addr + ">", addr} {
		for {
			i := strings.Index(low, form)
			if i < 0 {
				break
			}
			s, low = s[:i]+s[i+len(form):], low[:i]+low[i+len(form):]
		}
	}
	return s
}

var dateOnly = regexp.MustCompile(`(?i)^on\s+\w{3},`)

// onlyDate is Exchange's "a@b on Thu, 29 Apr 2007 ..." line with nothing
// else in the block.
func onlyDate(own string, block []string) bool {
	return dateOnly.MatchString(strings.TrimSpace(own)) && len(block) == 1
}

func hasReply(s string) bool {
	return replyRe.MatchString(s) || policy.FindEnhanced(s) != ""
}

// previousReply returns the nearest paragraph above line n holding a reply.
func previousReply(lines []string, n int) string {
	end := n
	for end > 0 {
		start := end - 1
		for start >= 0 && blank(lines[start]) {
			start--
		}
		e := start + 1
		for start >= 0 && !blank(lines[start]) {
			start--
		}
		para := strings.Join(lines[start+1:e], "\n")
		if hasReply(para) {
			return para
		}
		end = start + 1
		if start < 0 {
			break
		}
	}
	return ""
}

var failedHeading = regexp.MustCompile(`(?i)following address(\(es\)|es)? failed:?\s*$`)

// failedBlock returns the text under Exim's "The following address(es)
// failed:" heading, up to the returned message; "" without the heading.
func failedBlock(text string) string {
	lines := strings.Split(normalize(text), "\n")
	for i, l := range lines {
		if !failedHeading.MatchString(l) {
			continue
		}
		var out []string
		for _, b := range lines[i+1:] {
			if origMarker.MatchString(b) {
				break
			}
			out = append(out, b)
		}
		return capReason(unfold(strings.Join(out, "\n")))
	}
	return ""
}

// capReason cuts a reason to maxReason bytes, dropping a character the cut
// split.
func capReason(why string) string {
	if len(why) > maxReason {
		why = strings.ToValidUTF8(why[:maxReason], "")
	}
	return why
}

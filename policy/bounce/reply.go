package bounce

import (
	"regexp"
	"strconv"
	"strings"

	"facteur/policy"
)

// continuation matches the "550-5.1.1 " or "550 5.1.1 " prefixes repeated on
// each line of a multi-line reply (RFC 5321 §4.2.1) once it is unfolded.
var continuation = regexp.MustCompile(`\s[245]\d\d[- ](?:#?` + policy.EnhancedPattern + `\s)?`)

// replyOf finds the SMTP reply in a diagnostic: "smtp; 550 5.1.1 <a>: user
// unknown", "host mx [192.0.2.1]: 550 5.1.1 ...", "ERROR_CODE :550". The
// reply starts at the code (the RFC 3464 type prefix and the MTA's
// narrative before it are dropped), continuation prefixes removed; without
// a code, its Text is the whole diagnostic.
//
// status is the enhanced code that stands for the recipient's status: the
// first one anywhere in the reply, else in the diagnostic, unless its class
// contradicts the reply code's ("421 ... (#5.1.1)" in a quoted transcript:
// the code is trusted). The reply's own Enhanced is the code at the start of
// its text, as the server wrote it, else status.
func replyOf(diag string) (rp policy.Reply, status string) {
	d := unfold(diag)
	if i := strings.IndexByte(d, ';'); i > 0 && i < 12 && !strings.ContainsAny(d[:i], " <@") {
		d = strings.TrimSpace(d[i+1:]) // RFC 3464 §2.3.6 diagnostic-type
	}
	var line string // the reply from its code on, or the diagnostic
	// A transcript shows the accepted steps before the refusal ("250 2.1.5
	// Ok ... 451 4.3.0 Error"): the first failing reply is the one.
	var m []int
	for _, mm := range replyRe.FindAllStringSubmatchIndex(d, 20) {
		if m == nil || d[m[2]] == '2' && d[mm[2]] != '2' {
			m = mm
		}
		if d[m[2]] != '2' {
			break
		}
	}
	if m != nil {
		rp.Code, _ = strconv.Atoi(d[m[2]:m[3]])
		text := d[m[2]:]
		// Gmail's relays quote "554 554 5.7.0 ...": drop the echo.
		code := d[m[2]:m[3]]
		rest := strings.TrimLeft(text[3:], " -:")
		for strings.HasPrefix(rest, code+" ") || strings.HasPrefix(rest, code+"-") {
			rest = strings.TrimLeft(rest[3:], " -:")
		}
		line = strings.TrimSpace(code + " " + continuation.ReplaceAllString(" "+rest, " "))
		if pr, err := policy.ParseReply(line); err == nil {
			rp = pr
		} else {
			rp.Text = strings.TrimSpace(strings.TrimPrefix(line, code))
		}
	} else {
		line = d
		rp.Text = d
	}
	status = policy.FindEnhanced(line)
	if status == "" {
		status = policy.FindEnhanced(d)
	}
	if rp.Code != 0 && status != "" && status[0] != byte('0'+rp.Code/100) {
		status = ""
	}
	if rp.Enhanced == "" {
		rp.Enhanced = status
	}
	return rp, status
}

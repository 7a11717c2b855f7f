package bounce

import (
	"regexp"
	"strconv"
	"strings"
)

// reply is the remote server's answer as far as a diagnostic shows it.
type reply struct {
	Code     int
	Enhanced string
	Text     string
}

// continuation matches the "550-5.1.1 " or "550 5.1.1 " prefixes repeated on
// each line of a multi-line reply (RFC 5321 §4.2.1) once it is unfolded.
var continuation = regexp.MustCompile(`\s[245]\d\d[- ](?:#?[245]\.\d{1,3}\.\d{1,3}\s)?`)

// replyOf finds the SMTP reply in a diagnostic: "smtp; 550 5.1.1 <a>: user
// unknown", "host mx [192.0.2.1]: 550 5.1.1 ...", "ERROR_CODE :550". Text
// starts at the code (the RFC 3464 type prefix and the MTA's narrative
// before it are dropped) with continuation prefixes removed.
func replyOf(diag string) reply {
	d := unfold(diag)
	if i := strings.IndexByte(d, ';'); i > 0 && i < 12 && !strings.ContainsAny(d[:i], " <@") {
		d = strings.TrimSpace(d[i+1:]) // RFC 3464 §2.3.6 diagnostic-type
	}
	var rp reply
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
		rp.Text = code + " " + continuation.ReplaceAllString(" "+rest, " ")
		rp.Text = strings.TrimSpace(rp.Text)
	} else {
		rp.Text = d
	}
	rp.Enhanced = statusCode(rp.Text)
	if rp.Enhanced == "" {
		rp.Enhanced = statusCode(d)
	}
	// A reply code and an enhanced code of different classes cannot both be
	// the reply ("421 ... (#5.1.1)" in a quoted transcript): trust the code.
	if rp.Code != 0 && rp.Enhanced != "" && rp.Enhanced[0] != byte('0'+rp.Code/100) {
		rp.Enhanced = ""
	}
	return rp
}

package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Stage is the SMTP command a reply answered (the strings are the contract of `classify
// --json` and `bounce parse --json`). StageUnknown ("") when the caller does not know.
type Stage string

// The stages of an SMTP transaction.
const (
	StageUnknown Stage = ""
	// StageConnect: the greeting, EHLO/HELO, STARTTLS: about our connection, never a recipient.
	StageConnect Stage = "connect"
	// StageMail: the reply to MAIL FROM, about the sender: never a recipient's fault.
	StageMail Stage = "mail"
	// StageRcpt: the reply to RCPT TO, about this recipient.
	StageRcpt Stage = "rcpt"
	// StageData: the reply to DATA or to the final ".", about the message and every recipient
	// of the transaction at once.
	StageData Stage = "data"
)

// Stages lists every known stage.
var Stages = []Stage{StageConnect, StageMail, StageRcpt, StageData}

// ParseStage reads a stage name as `classify -stage` takes it; "" is StageUnknown.
func ParseStage(s string) (Stage, error) {
	st := Stage(strings.ToLower(strings.TrimSpace(s)))
	if st == StageUnknown || slices.Contains(Stages, st) {
		return st, nil
	}
	return "", fmt.Errorf("unknown stage %q (want connect, mail, rcpt or data)", s)
}

// Command names the command a stage answers, for evidence: "RCPT TO".
func (s Stage) Command() string {
	switch s {
	case StageConnect:
		return "the greeting or EHLO"
	case StageMail:
		return "MAIL FROM"
	case StageRcpt:
		return "RCPT TO"
	case StageData:
		return "DATA"
	}
	return "an unknown command"
}

// Reply is facteur's one SMTP reply type: what a remote server answered (relay/delivery),
// what facteur says in its place (a DNS failure, a refused connection), what ops type to
// `facteur classify`, and what a bounce shows (policy/bounce). The policy classifies it, the
// scheduler stores and logs its String, relay/dsn quotes it.
//
// Code is the reply code; 0 means unknown (a DSN with only a Status: field), and the class
// digit of Enhanced then says temporary or permanent. Enhanced is the RFC 3463 enhanced status
// code, only when the text starts with one. Text is what follows the codes, on one line (the
// lines of a multi-line reply joined with single spaces). The zero Reply is "no reply".
type Reply struct {
	Code     int    `json:"code"`
	Enhanced string `json:"enhanced,omitempty"`
	Text     string `json:"text"`
	// Stage is the command the reply answered, when the caller knows it (the delivery engine
	// does). It is not part of String: the stored and logged reply stays what the server said.
	Stage Stage `json:"stage,omitempty"`
	// Local is true when facteur made the reply up instead of receiving it (a message that
	// needs SMTPUTF8 to a server without it, a DNS failure): the log's local=yes.
	Local bool `json:"-"`
}

// Known reports whether there was a reply at all.
func (r Reply) Known() bool { return r.Code != 0 }

// Positive reports a 2xx reply.
func (r Reply) Positive() bool { return r.Code/100 == 2 }

// Permanent reports a 5xx reply (or, without a code, a 5.x.x enhanced code).
func (r Reply) Permanent() bool {
	if r.Code != 0 {
		return r.Code >= 500 && r.Code <= 599
	}
	return strings.HasPrefix(r.Enhanced, "5.")
}

// Temporary reports a 4xx reply (or, without a code, a 4.x.x enhanced code).
func (r Reply) Temporary() bool {
	if r.Code != 0 {
		return r.Code >= 400 && r.Code <= 499
	}
	return strings.HasPrefix(r.Enhanced, "4.")
}

// String writes the reply as one line, `550 5.1.1 text`, the form of the log's resp= key,
// of the queue's last response and of a DSN's Diagnostic-Code.
func (r Reply) String() string {
	var b strings.Builder
	if r.Code != 0 {
		b.WriteString(strconv.Itoa(r.Code))
	}
	for _, s := range []string{r.Enhanced, r.Text} {
		if s == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	return b.String()
}

// ErrBadReply is returned (wrapped) by ParseReply for input that is not an SMTP reply.
var ErrBadReply = errors.New("not an SMTP reply")

// The enhanced status codes of RFC 3463 §2: class 2, 4 or 5, then subject and detail of 1 to
// 3 digits ("5.1.1", "4.7.26"). scanEnhanced is the one reader of them; SplitEnhanced,
// IsEnhanced and FindEnhanced say where one is looked for.

// EnhancedPattern is the shape of an enhanced code, for the regular expressions that
// recognise a larger shape around one (a continuation prefix "550-5.1.1 ", a Sendmail
// transcript line); they never read the code itself, which is scanEnhanced's job.
const EnhancedPattern = `[245]\.\d{1,3}\.\d{1,3}`

// scanEnhanced reads an enhanced code at the start of s. It returns the code's length in
// bytes (0 when s does not start with one) and its three numbers. The subject and detail are
// whole runs of digits: "5.1.1234" is not a code, "5.1.1.2" is read up to "5.1.1".
func scanEnhanced(s string) (n int, code [3]int) {
	if len(s) < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.' {
		return 0, code
	}
	code[0] = int(s[0] - '0')
	i := 2
	for part := 1; part <= 2; part++ {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i || j-i > 3 {
			return 0, code
		}
		code[part], _ = strconv.Atoi(s[i:j])
		i = j
		if part == 1 {
			if i >= len(s) || s[i] != '.' {
				return 0, code
			}
			i++
		}
	}
	return i, code
}

// IsEnhanced reports whether s is exactly an enhanced status code ("5.1.1"), as a DSN's
// Status field must be.
func IsEnhanced(s string) bool {
	n, _ := scanEnhanced(s)
	return n > 0 && n == len(s)
}

// ParseEnhanced reads an enhanced code as its three numbers (for go-smtp's EnhancedCode);
// not ok unless s is exactly one.
func ParseEnhanced(s string) (code [3]int, ok bool) {
	n, code := scanEnhanced(s)
	return code, n > 0 && n == len(s)
}

// SplitEnhanced splits the enhanced status code off the start of a reply's text: "5.1.1 user
// unknown" gives "5.1.1" and "user unknown". Without one at the start, enhanced is "" and
// rest is text. The code is returned as written: the stored reply is what the server said.
func SplitEnhanced(text string) (enhanced, rest string) {
	enh, after, _ := strings.Cut(text, " ")
	if !IsEnhanced(enh) {
		return "", text
	}
	return enh, after
}

// FindEnhanced returns the first enhanced status code anywhere in free text, as a bounce
// shows it ("smtp; 550 5.1.1 ...", "... (#5.1.1)", "Status: 5.0.0 (undefined status)"), in
// its canonical form ("5.01.1" gives "5.1.1"), or "". A code is one only where it stands
// alone: not inside a version or an IP address ("1.5.1.1", "5.1.1.2"), nor glued to digits.
func FindEnhanced(s string) string {
	for i := 0; i+5 <= len(s); i++ {
		if i > 0 && (s[i-1] == '.' || s[i-1] >= '0' && s[i-1] <= '9') {
			continue
		}
		n, code := scanEnhanced(s[i:])
		if n == 0 {
			continue
		}
		// After the code: the end, or neither a digit nor a dot, or a dot that does not go
		// on with a digit (the full stop of a sentence).
		if j := i + n; j < len(s) && s[j] == '.' && j+1 < len(s) && s[j+1] >= '0' && s[j+1] <= '9' {
			continue
		}
		return FormatEnhanced(code)
	}
	return ""
}

// FormatEnhanced writes the three numbers of an enhanced code, "5.1.1" (go-smtp's
// EnhancedCode is such an array); "" when the class is not 2, 4 or 5 (go-smtp's "not set"
// and "none").
func FormatEnhanced(code [3]int) string {
	if code[0] != 2 && code[0] != 4 && code[0] != 5 || code[1] < 0 || code[2] < 0 {
		return ""
	}
	return strconv.Itoa(code[0]) + "." + strconv.Itoa(code[1]) + "." + strconv.Itoa(code[2])
}

// ParseReply reads one reply as printed by an SMTP server or typed by ops: `550 5.1.1 text`,
// `421 text`, or multi-line `550-5.1.1 a\r\n550 5.1.1 b`. Continuation lines are joined with
// single spaces and their repeated code and enhanced code dropped (the form of
// ../shared/testdata/responses.tsv). A bare enhanced code without a reply code (`5.1.1 text`)
// is accepted with Code 0, for DSN Status fields.
func ParseReply(s string) (Reply, error) {
	lines := strings.FieldsFunc(strings.TrimSpace(s), func(r rune) bool { return r == '\n' || r == '\r' })
	if len(lines) == 0 {
		return Reply{}, fmt.Errorf("parse reply %q: %w: empty", s, ErrBadReply)
	}
	var r Reply
	var texts []string
	for i, line := range lines {
		line = strings.TrimSpace(line)
		code, rest, err := splitCode(line)
		if err != nil {
			if i == 0 {
				return Reply{}, fmt.Errorf("parse reply %q: %w", s, err)
			}
			// A folded line without a code: keep it as text rather than refuse the reply.
			texts = append(texts, line)
			continue
		}
		if i == 0 {
			r.Code = code
		} else if code != r.Code && code != 0 {
			return Reply{}, fmt.Errorf("parse reply %q: %w: line %d has code %d, line 1 has %d", s, ErrBadReply, i+1, code, r.Code)
		}
		if enh, text := SplitEnhanced(rest); enh != "" {
			if r.Enhanced == "" {
				r.Enhanced = enh
			}
			rest = text
		}
		if rest = strings.TrimSpace(rest); rest != "" {
			texts = append(texts, rest)
		}
	}
	// RFC 3463 wants the class digits of code and enhanced code to agree; servers do not always
	// (Microsoft's `451 5.7.3 STARTTLS is required`). Both are kept: Permanent and Temporary
	// trust the reply code, which is what the SMTP client acts on.
	r.Text = strings.Join(texts, " ")
	return r, nil
}

// ReplyOf builds the Reply of a code and the text an SMTP client library returns for it
// (codes stripped from each line, lines joined with "\n", as Go's net/textproto and go-smtp
// give them): the enhanced code is split off when the text starts with one of the reply's
// class (RFC 3463 §2), and dropped from the start of every further line where the server
// repeated it (RFC 2034 §4); the lines are joined with spaces.
func ReplyOf(code int, text string) Reply {
	r := Reply{Code: code, Text: text}
	if first, rest := SplitEnhanced(text); first != "" && rest != text && first[0] == byte('0'+code/100) {
		r.Enhanced = first
		r.Text = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	}
	r.Text = strings.ReplaceAll(r.Text, "\n", " ")
	return r
}

// splitCode splits "550-rest", "550 rest" or "550". A line starting with an enhanced code
// and no reply code returns code 0.
func splitCode(line string) (int, string, error) {
	if len(line) >= 3 && isDigits(line[:3]) && (len(line) == 3 || line[3] == ' ' || line[3] == '-') {
		code, _ := strconv.Atoi(line[:3])
		if code < 200 || code > 599 {
			return 0, "", fmt.Errorf("%w: code %d out of range", ErrBadReply, code)
		}
		rest := ""
		if len(line) > 4 {
			rest = line[4:]
		}
		return code, strings.TrimSpace(rest), nil
	}
	if enh, _ := SplitEnhanced(line); enh != "" {
		return 0, line, nil
	}
	return 0, "", fmt.Errorf("%w: no 3-digit code at the start", ErrBadReply)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

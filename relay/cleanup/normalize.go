package cleanup

import (
	"bytes"
	"errors"
)

// ErrSmuggling is returned for DATA that hides an end-of-data marker behind
// bare CR or LF ("SMTP smuggling", CVE-2023-51766 and kin): a line holding
// only "." (NULs aside) whose line ending on either side is not CRLF. Such
// input is refused rather than normalised, because a downstream server that
// accepts bare LF could see two messages where we saw one.
var ErrSmuggling = errors.New("bare CR or LF next to a lone dot (SMTP smuggling)")

// ErrNUL is returned for a NUL byte in the message: RFC 5322 forbids it and
// some MTAs truncate lines at it.
var ErrNUL = errors.New("NUL byte in message")

// Normalize returns msg with every line ending made CRLF (bare LF and bare CR
// become CRLF), so that nothing facteur sends contains a bare CR or LF. It
// refuses smuggling patterns and NUL bytes. go-smtp's DATA reader only ends
// the message at CRLF.CRLF and passes every other variant through as content
// (it removes a leading dot after CRLF); this is the guard for what it lets
// through. The shim's LF input goes through the same function.
func Normalize(msg []byte) ([]byte, error) {
	if bytes.IndexByte(msg, 0) >= 0 {
		if err := checkDotNUL(msg); err != nil {
			return nil, err
		}
		return nil, ErrNUL
	}
	// Fast path: already clean CRLF text (the common case from SMTP clients).
	if clean(msg) {
		if len(msg) > 0 && !bytes.HasSuffix(msg, []byte("\r\n")) {
			return append(msg[:len(msg):len(msg)], '\r', '\n'), nil
		}
		return msg, nil
	}
	out := make([]byte, 0, len(msg)+len(msg)/40+2)
	lineStart := 0    // index in msg of the current line's first byte
	prevBare := false // the previous line ended with a bare CR or LF
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c != '\r' && c != '\n' {
			continue
		}
		line := msg[lineStart:i]
		bare := true
		next := i + 1
		if c == '\r' && i+1 < len(msg) && msg[i+1] == '\n' {
			bare = false
			next = i + 2
		}
		if string(line) == "." && (bare || prevBare) {
			return nil, ErrSmuggling
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
		prevBare = bare
		lineStart = next
		i = next - 1
	}
	if lineStart < len(msg) {
		line := msg[lineStart:]
		if string(line) == "." && prevBare {
			return nil, ErrSmuggling
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
	}
	return out, nil
}

// clean reports whether every CR is followed by LF and every LF preceded by
// CR.
//
// It counts both (bytes.Count of one byte is vectorised) and looks at the
// byte before each LF (bytes.IndexByte), instead of a loop over every byte
// (the former loop stays in normalize_test.go as the reference,
// FuzzClean). Why that is the same thing: match each LF at j with the CR at
// j-1. If every LF is preceded by a CR, this matches the LFs with as many
// distinct CRs (distinct LFs, distinct positions before them). If moreover
// the counts are equal, every CR is matched: each CR at i has its LF at
// i+1, so every CR is followed by LF. Conversely, if every CR is followed
// by LF and every LF preceded by CR, the same matching pairs all LFs with
// all CRs (a CR's LF is at i+1, whose CR is back at i), so the counts are
// equal. Hence: clean ⇔ count(CR) = count(LF) and every LF preceded by CR.
func clean(msg []byte) bool {
	if bytes.Count(msg, cr) != bytes.Count(msg, lf) {
		return false
	}
	for i := 0; ; {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			return true
		}
		i += j
		if i == 0 || msg[i-1] != '\r' {
			return false
		}
		i++
	}
}

var cr, lf = []byte{'\r'}, []byte{'\n'}

// checkDotNUL reports a line made of a dot and NULs next to any line break:
// "\r\n.\x00\r\n" is an end-of-data marker to a server that drops NULs.
func checkDotNUL(msg []byte) error {
	for _, line := range bytes.FieldsFunc(msg, func(r rune) bool { return r == '\r' || r == '\n' }) {
		t := bytes.Trim(line, "\x00")
		if len(t) == 1 && t[0] == '.' && len(line) > 1 {
			return ErrSmuggling
		}
	}
	return nil
}

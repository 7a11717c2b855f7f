package cleanup

import (
	"bytes"
	"strings"
)

// header is the parsed header block of a CRLF message: its fields in
// order, each with its raw bytes (folded lines included), and the body.
type header struct {
	fields []field
	body   []byte // everything after the blank line, nil if there is none
	hasSep bool   // the message had a blank line after its header block
}

type field struct {
	name string // as written
	raw  []byte // "Name: value\r\n" with continuation lines
}

// parseHeader splits a normalised (CRLF) message. A first line that is not
// a header field means the message has no header block: everything is body.
func parseHeader(msg []byte) header {
	var h header
	// Usually one allocation for the fields: room for the lines before the
	// blank line (64 at most: a message without one may be all body).
	head := msg
	if end := bytes.Index(msg, []byte("\r\n\r\n")); end >= 0 {
		head = msg[:end+2]
	}
	h.fields = make([]field, 0, min(bytes.Count(head, []byte("\n")), 64))
	rest := msg
	for len(rest) > 0 {
		if bytes.HasPrefix(rest, []byte("\r\n")) {
			h.body = rest[2:]
			h.hasSep = true
			return h
		}
		end := lineEnd(rest)
		line := rest[:end]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isFieldName(line[:colon]) {
			if len(h.fields) == 0 {
				h.body = msg
				return h
			}
			// A non-header line ends the block (RFC 5322 §2.1 requires the
			// empty line; tolerate its absence as Postfix does).
			h.body = rest
			return h
		}
		// Continuation lines start with WSP.
		for end < len(rest) && (rest[end] == ' ' || rest[end] == '\t') {
			end += lineEnd(rest[end:])
		}
		h.fields = append(h.fields, field{name: string(line[:colon]), raw: rest[:end]})
		rest = rest[end:]
	}
	return h
}

func lineEnd(b []byte) int {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 {
		return len(b)
	}
	return i + 2
}

func isFieldName(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return len(b) > 0
}

func (h *header) count(name string) int {
	n := 0
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			n++
		}
	}
	return n
}

func (h *header) remove(name string) {
	kept := h.fields[:0]
	for _, f := range h.fields {
		if !strings.EqualFold(f.name, name) {
			kept = append(kept, f)
		}
	}
	h.fields = kept
}

func (h *header) value(name string) string {
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			v := string(f.raw[len(f.name)+1:])
			v = strings.ReplaceAll(v, "\r\n", "")
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// bytes reassembles the message with extra fields prepended and appended,
// into one allocation of the exact size.
func (h *header) bytes(prepend, appendFields []string) []byte {
	n := len("\r\n") + len(h.body)
	for _, f := range prepend {
		n += len(f)
	}
	for _, f := range h.fields {
		n += len(f.raw)
	}
	for _, f := range appendFields {
		n += len(f)
	}
	b := make([]byte, 0, n)
	for _, f := range prepend {
		b = append(b, f...)
	}
	for _, f := range h.fields {
		b = append(b, f.raw...)
	}
	for _, f := range appendFields {
		b = append(b, f...)
	}
	b = append(b, "\r\n"...)
	return append(b, h.body...)
}

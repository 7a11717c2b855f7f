package dkim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// field is one header field: its name as go-message canonicalises it, and
// its unfolded value.
type field struct {
	name, value string
}

var (
	crlf      = []byte("\r\n")
	endHeader = []byte("\r\n\r\n")
)

// wireForm returns msg as it will travel in SMTP DATA, which is what the
// receiver verifies: bare LF becomes CRLF (RFC 5321 §2.3.8; go-smtp's DATA
// writer does the same conversion), and a message that is all header gets
// the empty line that ends the header, without which neither go-msgauth nor
// most verifiers can tell the header from the body. msg itself is never
// modified; when nothing changes, it is returned as is.
func wireForm(msg []byte) []byte {
	bare := 0
	for i, c := range msg {
		if c == '\n' && (i == 0 || msg[i-1] != '\r') {
			bare++
		}
	}
	m := msg
	if bare > 0 {
		m = make([]byte, 0, len(msg)+bare+4)
		for i, c := range msg {
			if c == '\n' && (i == 0 || msg[i-1] != '\r') {
				m = append(m, '\r')
			}
			m = append(m, c)
		}
	}
	if bytes.HasPrefix(m, crlf) || bytes.Contains(m, endHeader) {
		return m
	}
	// Copy before appending: m may still share msg's backing array.
	out := make([]byte, 0, len(m)+4)
	out = append(out, m...)
	if len(out) > 0 && !bytes.HasSuffix(out, crlf) {
		out = append(out, crlf...)
	}
	return append(out, crlf...)
}

// readHeader returns the header fields of m (in wire form), top to bottom.
func readHeader(m []byte) ([]field, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(m)))
	if err != nil {
		return nil, err
	}
	var fields []field
	for fs := h.Fields(); fs.Next(); {
		fields = append(fields, field{name: fs.Key(), value: fs.Value()})
	}
	return fields, nil
}

// addressParser decodes RFC 2047 encoded words in any charset without
// failing: only the address matters here, and a display name in a charset
// Go does not know must not leave the message unsigned.
var addressParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// fromDomain returns the normalised domain of the single From address, or
// why there is none to sign for. RFC 5322 §3.6 allows one From field; with
// several mailboxes (or none) the author's domain is ambiguous, and DMARC
// (RFC 7489 §6.6.1) gives such messages no aligned identity either.
func fromDomain(fields []field) (domain, unsigned string) {
	var values []string
	for _, f := range fields {
		if strings.EqualFold(f.name, "From") {
			values = append(values, f.value)
		}
	}
	switch len(values) {
	case 0:
		return "", "no From header"
	case 1:
	default:
		return "", fmt.Sprintf("%d From headers", len(values))
	}
	addrs, err := addressParser.ParseList(values[0])
	if err != nil {
		// net/mail refuses comments in some places RFC 5322 allows them,
		// e.g. "(Web shop) shop@example.com"; retry without them.
		var err2 error
		if addrs, err2 = addressParser.ParseList(stripComments(values[0])); err2 != nil {
			return "", fmt.Sprintf("unparseable From header: %v", err)
		}
	}
	switch len(addrs) {
	case 0:
		return "", "From header has no address"
	case 1:
	default:
		return "", fmt.Sprintf("From header has %d addresses", len(addrs))
	}
	at := strings.LastIndexByte(addrs[0].Address, '@')
	if at < 0 {
		return "", fmt.Sprintf("From address %q has no domain", addrs[0].Address)
	}
	d, err := normalizeDomain(addrs[0].Address[at+1:])
	if err != nil {
		return "", fmt.Sprintf("From domain %v", err)
	}
	return d, ""
}

// stripComments removes RFC 5322 §3.2.2 comments, which nest and may
// contain quoted pairs, outside quoted strings and domain literals.
func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	inQuote, inLiteral := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (inQuote || depth > 0):
			if depth == 0 {
				b.WriteByte(c)
				if i+1 < len(s) {
					b.WriteByte(s[i+1])
				}
			}
			i++
			continue
		case depth > 0:
			switch c {
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				b.WriteByte(' ')
			}
			continue
		case inQuote:
			inQuote = c != '"'
		case inLiteral:
			inLiteral = c != ']'
		case c == '"':
			inQuote = true
		case c == '[':
			inLiteral = true
		case c == '(':
			depth = 1
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

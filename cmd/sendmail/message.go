package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"strings"

	"facteur/relay/address"
)

var errTooBig = errors.New("message too big")

// readMessage reads the message from r and normalises its line ends to
// CRLF: LF, CRLF, CR CR LF and a lone CR each end one line, so nothing the
// shim submits has a bare CR or LF. Unless ignoreDots (-i, -oi), a line
// holding only "." ends the message and the rest of the input is not read,
// as sendmail does. A last line without a line end gets one. A leading
// mbox "From " line is dropped (Postfix does the same). More than max octets
// (after normalisation) is errTooBig.
func readMessage(r io.Reader, ignoreDots bool, max int64) ([]byte, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out bytes.Buffer
	var line []byte
	first := true
	// endLine returns true when the input is over (the "." line).
	endLine := func() bool {
		if !ignoreDots && len(line) == 1 && line[0] == '.' {
			return true
		}
		if first && bytes.HasPrefix(line, []byte("From ")) {
			first = false
			line = line[:0]
			return false
		}
		first = false
		out.Write(line)
		out.WriteString("\r\n")
		line = line[:0]
		return false
	}
	for {
		chunk, err := br.ReadSlice('\n')
		for i := 0; i < len(chunk); i++ {
			switch c := chunk[i]; c {
			case '\n':
				if endLine() {
					return out.Bytes(), nil
				}
			case '\r':
				// CR+ LF is one line end; so is a CR run not followed by LF.
				for i+1 < len(chunk) && chunk[i+1] == '\r' {
					i++
				}
				if i+1 == len(chunk) && err == bufio.ErrBufferFull {
					// The CR run ends this chunk: peek at the next byte.
					for {
						b, perr := br.Peek(1)
						if perr != nil || b[0] != '\r' {
							break
						}
						br.ReadByte()
					}
					if b, perr := br.Peek(1); perr == nil && b[0] == '\n' {
						br.ReadByte()
					}
				} else if i+1 < len(chunk) && chunk[i+1] == '\n' {
					i++
				}
				if endLine() {
					return out.Bytes(), nil
				}
			default:
				line = append(line, c)
			}
		}
		if int64(out.Len()+len(line)) > max {
			return nil, errTooBig
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if len(line) > 0 {
				endLine()
			}
			if int64(out.Len()) > max {
				return nil, errTooBig
			}
			return out.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// field is one header field with its continuation lines, CRLFs included.
type field struct {
	name string
	raw  []byte
}

// splitHeader splits a CRLF message into its header fields and the body
// (what follows the blank line). The header ends at the first line that is
// neither a field nor a continuation; if that line is not blank, the message
// had no proper separator and body starts with that line (the caller
// inserts the blank line, as Postfix's cleanup does).
func splitHeader(msg []byte) (fields []field, body []byte, hadBlank bool) {
	rest := msg
	for len(rest) > 0 {
		i := bytes.Index(rest, []byte("\r\n"))
		if i < 0 {
			i = len(rest)
		} else {
			i += 2
		}
		line := rest[:i]
		switch {
		case bytes.Equal(line, []byte("\r\n")):
			return fields, rest[i:], true
		case (line[0] == ' ' || line[0] == '\t') && len(fields) > 0:
			f := &fields[len(fields)-1]
			f.raw = append(f.raw, line...)
		default:
			name, ok := fieldName(line)
			if !ok {
				return fields, rest, false
			}
			fields = append(fields, field{name: name, raw: bytes.Clone(line)})
		}
		rest = rest[i:]
	}
	return fields, nil, false
}

// fieldName returns the name of a header line "Name: value" (RFC 5322
// §2.2: printable ASCII but colon, at least one character).
func fieldName(line []byte) (string, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", false
	}
	for _, c := range line[:i] {
		if c < 33 || c > 126 {
			return "", false
		}
	}
	return string(line[:i]), true
}

// value returns the unfolded value of a field.
func (f field) value() string {
	v := string(f.raw[len(f.name)+1:])
	v = strings.ReplaceAll(v, "\r\n", "")
	return strings.TrimSpace(v)
}

// prepared is the message ready to submit.
type prepared struct {
	data       []byte
	recipients []string // from the header with -t, before the argument ones
}

// prepare applies what the shim owes the message: with extract (-t) it
// collects the To, Cc and Bcc recipients; it always removes Bcc (the
// recipients are in the envelope and Bcc must not reach them); it adds a
// From: field built from fromName and fromAddr when there is none. Date and
// Message-ID are the daemon's to add.
func prepare(msg []byte, extract bool, fromName, fromAddr string) (*prepared, error) {
	fields, body, _ := splitHeader(msg)
	p := &prepared{}
	var out bytes.Buffer
	hasFrom := false
	for _, f := range fields {
		switch strings.ToLower(f.name) {
		case "to", "cc", "bcc":
			if extract {
				addrs, err := parseAddressList(f.value())
				if err != nil {
					return nil, failf(exDataErr, "bad %s: header: %v", f.name, err)
				}
				p.recipients = append(p.recipients, addrs...)
			}
			if strings.EqualFold(f.name, "bcc") {
				continue
			}
		case "from":
			hasFrom = true
		}
		out.Write(f.raw)
	}
	if !hasFrom && fromAddr != "" {
		out.WriteString("From: ")
		out.WriteString(formatFrom(fromName, fromAddr))
		out.WriteString("\r\n")
	}
	out.WriteString("\r\n")
	out.Write(body)
	p.data = out.Bytes()
	return p, nil
}

// formatFrom writes a mailbox with an optional display name, quoting or
// RFC 2047-encoding the name as needed.
func formatFrom(name, addr string) string {
	if name == "" {
		return addr
	}
	ascii := true
	plain := true
	for _, r := range name {
		if r >= 0x80 {
			ascii = false
		}
		if !(address.IsAtext(r) || r == ' ') {
			plain = false
		}
	}
	switch {
	case !ascii:
		name = mime.QEncoding.Encode("utf-8", name)
	case !plain:
		name = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
	}
	return name + " <" + addr + ">"
}

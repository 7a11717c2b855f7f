// Package address parses and checks envelope addresses (RFC 5321 §4.1.2
// Mailbox, RFC 6531 for UTF-8) for the submission server, the pickup and the
// admin commands. It owns no state.
package address

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

var (
	ErrEmpty    = errors.New("empty address")
	ErrSyntax   = errors.New("malformed address")
	ErrTooLong  = errors.New("address too long")
	ErrNoDomain = errors.New("address has no domain")
)

// Mailbox is an RFC 5321 §4.1.2 Mailbox: Local is the local part as its
// owner reads it (a quoted local part without its quotes and escapes),
// Domain a domain or an address literal ("" only for a bare local part such
// as root, which the shim and the aliases accept).
type Mailbox struct {
	Local  string
	Domain string
}

// String is the mailbox as it goes on the wire: a local part that is not a
// Dot-string is quoted again, so that "quoted user"@example.org never
// leaves as quoted user@example.org (invalid SMTP).
func (m Mailbox) String() string {
	l := m.Local
	if !isDotString(l) {
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(l); i++ {
			if l[i] == '"' || l[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(l[i])
		}
		b.WriteByte('"')
		l = b.String()
	}
	if m.Domain == "" {
		return l
	}
	return l + "@" + m.Domain
}

// UTF8 reports whether the mailbox needs SMTPUTF8 (RFC 6531).
func (m Mailbox) UTF8() bool { return !IsASCII(m.Local) || !IsASCII(m.Domain) }

// FromSMTP reads an address as go-smtp hands it over from MAIL FROM or RCPT
// TO: brackets and source route stripped, a quoted local part unquoted. The
// domain is what follows the last '@'; a local part holding an '@' (what
// go-smtp makes of bob@@example.org) is refused, so is a quoted local part
// with a control character. This is the one address parser of the daemon;
// the shim uses Parse, its twin for addresses as written.
func FromSMTP(addr string) (Mailbox, error) {
	if addr == "" {
		return Mailbox{}, ErrEmpty
	}
	if !utf8.ValidString(addr) {
		return Mailbox{}, fmt.Errorf("%w: invalid UTF-8", ErrSyntax)
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return Mailbox{}, ErrNoDomain
	}
	m := Mailbox{Local: addr[:at], Domain: addr[at+1:]}
	if err := checkLocalText(m.Local); err != nil {
		return Mailbox{}, err
	}
	if err := CheckDomain(m.Domain); err != nil {
		return Mailbox{}, err
	}
	return m, checkLength(m)
}

// Parse reads a mailbox as written in a header, on a command line or in a
// config (RFC 5321 §4.1.2, UTF-8 per RFC 6531): a Dot-string or a
// Quoted-string, '@', a domain or an address literal. With bare, a local
// part alone (a Dot-string such as root) is accepted too.
func Parse(s string, bare bool) (Mailbox, error) {
	if s == "" {
		return Mailbox{}, ErrEmpty
	}
	if !utf8.ValidString(s) {
		return Mailbox{}, fmt.Errorf("%w: invalid UTF-8", ErrSyntax)
	}
	var m Mailbox
	rest := ""
	if s[0] == '"' {
		var b strings.Builder
		i := 1
		closed := false
		for ; i < len(s); i++ {
			c := s[i]
			if c == '\\' {
				// quoted-pairSMTP = %d92 %d32-126
				if i+1 >= len(s) || s[i+1] < 32 || s[i+1] > 126 {
					return Mailbox{}, fmt.Errorf("%w: bad escape in quoted local part", ErrSyntax)
				}
				i++
				b.WriteByte(s[i])
				continue
			}
			if c == '"' {
				closed = true
				break
			}
			b.WriteByte(c)
		}
		if !closed {
			return Mailbox{}, fmt.Errorf("%w: unterminated quoted local part", ErrSyntax)
		}
		m.Local, rest = b.String(), s[i+1:]
		if rest != "" && rest[0] != '@' {
			return Mailbox{}, fmt.Errorf("%w: text after quoted local part", ErrSyntax)
		}
		if rest == "" {
			return Mailbox{}, fmt.Errorf("%w: a quoted local part needs a domain", ErrNoDomain)
		}
		if m.Local == "" {
			return Mailbox{}, fmt.Errorf("%w: empty local part", ErrSyntax)
		}
		if err := checkQuotedText(m.Local); err != nil {
			return Mailbox{}, err
		}
	} else {
		m.Local = s
		if i := strings.IndexByte(s, '@'); i >= 0 {
			m.Local, rest = s[:i], s[i:]
		}
		if m.Local == "" {
			return Mailbox{}, fmt.Errorf("%w: empty local part", ErrSyntax)
		}
		if err := checkDotString(m.Local); err != nil {
			return Mailbox{}, err
		}
	}
	if rest == "" {
		if !bare {
			return Mailbox{}, ErrNoDomain
		}
		return m, checkLength(m)
	}
	m.Domain = rest[1:]
	if err := CheckDomain(m.Domain); err != nil {
		return Mailbox{}, err
	}
	return m, checkLength(m)
}

// Check validates an address from MAIL FROM or RCPT TO (FromSMTP) and
// returns whether it needs SMTPUTF8.
func Check(addr string) (utf8Needed bool, err error) {
	m, err := FromSMTP(addr)
	if err != nil {
		return false, err
	}
	return m.UTF8(), nil
}

// checkLength applies RFC 5321 §4.5.3.1: a local part of at most 64 octets
// and a path of at most 256 (254 without the brackets), on the wire form.
func checkLength(m Mailbox) error {
	w := m.String()
	local := w
	if m.Domain != "" {
		local = w[:len(w)-len(m.Domain)-1]
	}
	if len(local) > 64 {
		return fmt.Errorf("%w: local part over 64 octets", ErrTooLong)
	}
	if len(w) > 254 {
		return fmt.Errorf("%w: %d octets, limit 254", ErrTooLong, len(w))
	}
	return nil
}

// isAtext: RFC 5322 §3.2.3 atext, widened to UTF-8 by RFC 6531.
// IsAtext reports whether r is RFC 5322 §3.2.3 atext (UTF-8 per RFC 6531):
// what a Dot-string's atoms and an unquoted display name are made of.
func IsAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r):
		return true
	}
	return r >= 0x80 && r != utf8.RuneError
}

func isDotString(l string) bool { return checkDotString(l) == nil }

func checkDotString(l string) error {
	for _, atom := range strings.Split(l, ".") {
		if atom == "" {
			return fmt.Errorf("%w: empty atom in local part (leading, trailing or double dot)", ErrSyntax)
		}
		for _, r := range atom {
			if !IsAtext(r) {
				return fmt.Errorf("%w: character %q not allowed in local part", ErrSyntax, r)
			}
		}
	}
	return nil
}

// checkQuotedText checks the content of a quoted local part: qtextSMTP and
// quoted-pairSMTP are printable ASCII (%d32-126), UTF-8 per RFC 6531.
func checkQuotedText(l string) error {
	for _, r := range l {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: control character in local part", ErrSyntax)
		}
	}
	return nil
}

// checkLocalText checks a local part as go-smtp unquoted it. go-smtp takes
// a character it refuses in a Dot-string (space, '"', '\\', ',', ':', ';',
// '(', ')', '<', '>', '[', ']') only inside quotes, so a local part with one
// was quoted and is checked as a Quoted-string's content; any other must be
// a Dot-string (so .user and us..er are refused however they came). An '@'
// is always refused: it is go-smtp's reading of a@@b (a quoted local part
// holding an '@' is refused with it, a price no real mailbox pays).
func checkLocalText(l string) error {
	if l == "" {
		return fmt.Errorf("%w: empty local part", ErrSyntax)
	}
	if strings.ContainsRune(l, '@') {
		return fmt.Errorf("%w: '@' in local part", ErrSyntax)
	}
	if strings.ContainsAny(l, " \t\"\\,:;()<>[]") {
		return checkQuotedText(l)
	}
	return checkDotString(l)
}

// CheckDomain validates a domain (RFC 5321 §4.1.2 Domain, U-labels allowed
// per RFC 6531; no trailing dot) or an address literal ([192.0.2.1],
// [IPv6:2001:db8::1]).
func CheckDomain(d string) error {
	if d == "" {
		return ErrNoDomain
	}
	if lit, ok := strings.CutPrefix(d, "["); ok {
		lit, ok = strings.CutSuffix(lit, "]")
		if !ok {
			return fmt.Errorf("%w: unterminated address literal", ErrSyntax)
		}
		v6, isV6 := strings.CutPrefix(lit, "IPv6:")
		a, err := netip.ParseAddr(v6)
		if err != nil || a.Zone() != "" || a.Is4() == isV6 {
			return fmt.Errorf("%w: bad address literal %q", ErrSyntax, d)
		}
		return nil
	}
	if len(d) > 253 {
		return fmt.Errorf("%w: domain over 253 octets", ErrTooLong)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return fmt.Errorf("%w: empty label in domain", ErrSyntax)
		}
		if len(label) > 63 {
			return fmt.Errorf("%w: domain label over 63 octets", ErrSyntax)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%w: label starts or ends with '-'", ErrSyntax)
		}
		for _, r := range label {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			case r >= 0x80 && r != utf8.RuneError:
				// U-label (RFC 6531); the resolver converts it to an A-label.
			default:
				return fmt.Errorf("%w: character %q in domain", ErrSyntax, r)
			}
		}
	}
	return nil
}

// Split returns the local part and the domain ("" when bare).
func Split(addr string) (local, domain string) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr, ""
	}
	return addr[:at], addr[at+1:]
}

// Domain returns the lower-cased domain of addr.
func Domain(addr string) string {
	_, d := Split(addr)
	return strings.ToLower(strings.TrimSuffix(d, "."))
}

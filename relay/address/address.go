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

// Check validates a mailbox "local@domain" as it arrives in MAIL FROM/RCPT TO
// (already stripped of <> and source route by go-smtp). It returns whether
// the address needs SMTPUTF8 (non-ASCII local part or domain).
func Check(addr string) (utf8Needed bool, err error) {
	if addr == "" {
		return false, ErrEmpty
	}
	if len(addr) > 254 {
		return false, fmt.Errorf("%w: %d octets, limit 254", ErrTooLong, len(addr))
	}
	if !utf8.ValidString(addr) {
		return false, fmt.Errorf("%w: invalid UTF-8", ErrSyntax)
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false, ErrNoDomain
	}
	local, domain := addr[:at], addr[at+1:]
	if err := checkLocal(local); err != nil {
		return false, err
	}
	if err := CheckDomain(domain); err != nil {
		return false, err
	}
	return !isASCII(addr), nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func checkLocal(local string) error {
	if local == "" {
		return fmt.Errorf("%w: empty local part", ErrSyntax)
	}
	if len(local) > 64 {
		return fmt.Errorf("%w: local part over 64 octets", ErrTooLong)
	}
	for _, r := range local {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: control character in local part", ErrSyntax)
		}
	}
	// go-smtp hands over a quoted local part unquoted; an unquoted one must
	// be a dot-string without empty atoms.
	if !strings.ContainsAny(local, " \"\\(),:;<>@[]") {
		if strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, "..") {
			return fmt.Errorf("%w: bad dots in local part", ErrSyntax)
		}
	}
	return nil
}

// CheckDomain validates a domain or an address literal.
func CheckDomain(d string) error {
	if d == "" {
		return ErrNoDomain
	}
	if strings.HasPrefix(d, "[") {
		if !strings.HasSuffix(d, "]") {
			return fmt.Errorf("%w: unterminated address literal", ErrSyntax)
		}
		lit := d[1 : len(d)-1]
		lit = strings.TrimPrefix(lit, "IPv6:")
		if _, err := netip.ParseAddr(lit); err != nil {
			return fmt.Errorf("%w: bad address literal %q", ErrSyntax, d)
		}
		return nil
	}
	if len(d) > 253 {
		return fmt.Errorf("%w: domain over 253 octets", ErrTooLong)
	}
	d = strings.TrimSuffix(d, ".")
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

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// atext of RFC 5322 §3.2.3, widened to UTF-8 by RFC 6531.
func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r):
		return true
	}
	return r >= 0x80 && r != utf8.RuneError
}

// checkAddress accepts an RFC 5321 §4.1.2 Mailbox (UTF-8 allowed, RFC 6531)
// or a bare local part (a Dot-string, such as "root"). It refuses, beyond
// the RFC, any whitespace or control character, even inside a quoted local
// part: a sender with a space is the signature of the argument injection of
// CVE-2016-10033 (PHPMailer passing `-f"attacker\" -oQ/tmp/ -X/var/www/x.php"`
// to the shell), and no real mailbox needs one.
func checkAddress(s string) error {
	if s == "" {
		return errors.New("empty address")
	}
	// RFC 5321 §4.5.3.1.3: a path is at most 256 octets, brackets included.
	if len(s) > 254 {
		return fmt.Errorf("address longer than 254 octets")
	}
	if !utf8.ValidString(s) {
		return errors.New("address is not valid UTF-8")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 || r == 0xa0 {
			return fmt.Errorf("whitespace or control character %U in address", r)
		}
	}
	local, rest, err := splitLocal(s)
	if err != nil {
		return err
	}
	if len(local) > 64 {
		return errors.New("local part longer than 64 octets")
	}
	if rest == "" {
		if local[0] == '"' {
			return errors.New("a quoted local part needs a domain")
		}
		return nil
	}
	return checkDomain(rest[1:])
}

// splitLocal returns the local part and what follows it ("" or "@domain").
func splitLocal(s string) (local, rest string, err error) {
	if s[0] == '"' {
		i := 1
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				// quoted-pairSMTP = %d92 %d32-126
				if i+1 >= len(s) || s[i+1] < 32 || s[i+1] > 126 {
					return "", "", errors.New("bad escape in quoted local part")
				}
				i++
			case '"':
				local, rest = s[:i+1], s[i+1:]
				if rest != "" && rest[0] != '@' {
					return "", "", errors.New("text after quoted local part")
				}
				return local, rest, nil
			}
		}
		return "", "", errors.New("unterminated quoted local part")
	}
	local, rest = s, ""
	if i := strings.IndexByte(s, '@'); i >= 0 {
		local, rest = s[:i], s[i:]
	}
	if local == "" {
		return "", "", errors.New("empty local part")
	}
	for _, atom := range strings.Split(local, ".") {
		if atom == "" {
			return "", "", errors.New("empty atom in local part (leading, trailing or double dot)")
		}
		for _, r := range atom {
			if !isAtext(r) {
				return "", "", fmt.Errorf("character %q not allowed in local part", r)
			}
		}
	}
	return local, rest, nil
}

// checkDomain accepts a host name (U-labels allowed) or an address literal.
func checkDomain(d string) error {
	if d == "" {
		return errors.New("empty domain")
	}
	if lit, ok := strings.CutPrefix(d, "["); ok {
		lit, ok = strings.CutSuffix(lit, "]")
		if !ok {
			return errors.New("unterminated address literal")
		}
		v6, isV6 := strings.CutPrefix(lit, "IPv6:")
		a, err := netip.ParseAddr(v6)
		if err != nil || a.Zone() != "" || a.Is4() == isV6 {
			return fmt.Errorf("bad address literal %q", d)
		}
		return nil
	}
	if len(d) > 253 {
		return errors.New("domain longer than 253 octets")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return errors.New("empty label in domain")
		}
		if len(label) > 63 {
			return errors.New("domain label longer than 63 octets")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("domain label %q starts or ends with '-'", label)
		}
		for _, r := range label {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || (r >= 0x80 && r != utf8.RuneError)
			if !ok {
				return fmt.Errorf("character %q not allowed in domain", r)
			}
		}
	}
	return nil
}

// checkSender validates a -f/-r value: one address, a bare local part, or
// the null sender ("" or "<>"). Angle brackets around an address are
// accepted, as Postfix does. It returns the address without brackets.
func checkSender(v string) (string, error) {
	if v == "" || v == "<>" {
		return "", nil
	}
	if inner, ok := strings.CutPrefix(v, "<"); ok {
		if inner, ok = strings.CutSuffix(inner, ">"); !ok {
			return "", errors.New("unbalanced angle bracket")
		}
		v = inner
	}
	if strings.HasPrefix(v, "-") {
		return "", errors.New("sender starts with '-' (an option smuggled into -f?)")
	}
	if err := checkAddress(v); err != nil {
		return "", err
	}
	return v, nil
}

// parseAddressList extracts the addr-specs of an RFC 5322 §3.4
// address-list (To, Cc, Bcc): display names, comments, angle addresses and
// groups ("undisclosed-recipients:;") are understood; bare local parts such
// as "root" (what logwatch and cron-style tools write) are accepted. Each
// address is checked with checkAddress.
func parseAddressList(v string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQuote, inAngle, inLiteral, depth := false, false, false, 0
	var angle strings.Builder
	hadAngle := false
	flush := func() error {
		var a string
		if hadAngle {
			a = strings.TrimSpace(angle.String())
		} else {
			a = strings.TrimSpace(cur.String())
		}
		cur.Reset()
		angle.Reset()
		was := hadAngle
		hadAngle = false
		if a == "" {
			if was {
				return errors.New("empty address <>")
			}
			return nil
		}
		if strings.HasPrefix(a, "@") {
			return fmt.Errorf("source route in %q", a)
		}
		if err := checkAddress(a); err != nil {
			return fmt.Errorf("%q: %w", a, err)
		}
		out = append(out, a)
		return nil
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case depth > 0:
			switch c {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			continue
		case inLiteral:
			// A domain literal, [IPv6:::1]: its colons are not a group.
			inLiteral = c != ']'
			writeTo(&cur, &angle, inAngle, v[i:i+1])
			continue
		case inQuote:
			if c == '\\' && i+1 < len(v) {
				writeTo(&cur, &angle, inAngle, v[i:i+2])
				i++
				continue
			}
			if c == '"' {
				inQuote = false
			}
			writeTo(&cur, &angle, inAngle, v[i:i+1])
			continue
		}
		switch c {
		case '"':
			inQuote = true
			writeTo(&cur, &angle, inAngle, `"`)
		case '(':
			depth++
		case '[':
			inLiteral = true
			writeTo(&cur, &angle, inAngle, "[")
		case '<':
			if inAngle || hadAngle {
				return nil, fmt.Errorf("unexpected '<' in %q", v)
			}
			inAngle, hadAngle = true, true
		case '>':
			if !inAngle {
				return nil, fmt.Errorf("unexpected '>' in %q", v)
			}
			inAngle = false
		case ':':
			if inAngle {
				angle.WriteByte(c) // IPv6 literal, or a route we refuse later
				continue
			}
			// Group start: what came before is the group's display name.
			cur.Reset()
		case ',', ';':
			if inAngle {
				angle.WriteByte(c)
				continue
			}
			if err := flush(); err != nil {
				return nil, err
			}
		case ' ', '\t', '\r', '\n':
			if !inAngle && !hadAngle {
				// Whitespace between words of a display name or around an
				// addr-spec: keep it so a display name without angle
				// brackets ("John root") is refused rather than guessed.
				cur.WriteByte(' ')
			}
		default:
			writeTo(&cur, &angle, inAngle, v[i:i+1])
		}
	}
	if inQuote || inAngle || inLiteral || depth > 0 {
		return nil, fmt.Errorf("unterminated quote, comment or angle address in %q", v)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

func writeTo(cur, angle *strings.Builder, inAngle bool, s string) {
	if inAngle {
		angle.WriteString(s)
	} else {
		cur.WriteString(s)
	}
}

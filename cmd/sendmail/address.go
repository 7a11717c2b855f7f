package main

import (
	"errors"
	"fmt"
	"strings"

	"facteur/relay/address"
)

// checkAddress accepts an RFC 5321 §4.1.2 Mailbox (UTF-8 allowed, RFC 6531)
// or a bare local part (a Dot-string, such as "root"), through the daemon's
// own parser (relay/address), so that the shim and the daemon never
// disagree on an address. It refuses, beyond the RFC, any whitespace or
// control character, even inside a quoted local part: a sender with a space
// is the signature of the argument injection of CVE-2016-10033 (PHPMailer
// passing `-f"attacker\" -oQ/tmp/ -X/var/www/x.php"` to the shell), and no
// real mailbox reached through sendmail needs one.
func checkAddress(s string) error {
	if s == "" {
		return errors.New("empty address")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 || r == 0xa0 {
			return fmt.Errorf("whitespace or control character %U in address", r)
		}
	}
	if _, err := address.Parse(s, true); err != nil {
		return err
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

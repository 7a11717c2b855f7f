package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Mode is a policy's mode (RFC 8461 §3.2).
type Mode string

const (
	Enforce Mode = "enforce" // only matching MX hosts, over verified TLS
	Testing Mode = "testing" // deliver as before, report what enforce would refuse
	None    Mode = "none"    // as if there were no policy
)

// MaxAge is the largest max_age a policy may carry (RFC 8461 §3.2: about
// one year, 31557600 seconds).
const MaxAge = 31557600 * time.Second

// MaxPolicySize bounds the body of a policy fetch (RFC 8461 §3.3 suggests
// 64 KiB).
const MaxPolicySize = 64 << 10

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("mta-sts: syntax error")

// Policy is a parsed policy file.
type Policy struct {
	Mode   Mode          `json:"mode"`
	MX     []string      `json:"mx"` // patterns, lower case: "mx.example.com" or "*.example.com"
	MaxAge time.Duration `json:"max_age"`
}

// Parse reads a policy file (RFC 8461 §3.2) strictly: "key: value" lines
// ending in LF or CRLF; version STSv1, mode and max_age exactly once; mx at
// least once unless the mode is none; unknown keys (extensions) are ignored
// when well formed. Anything else is an error wrapping ErrSyntax.
func Parse(body []byte) (*Policy, error) {
	text := string(body)
	if !isText(text) {
		return nil, fmt.Errorf("%w: not printable text", ErrSyntax)
	}
	// The ABNF allows one final line terminator; trailing blank lines are
	// common enough in the wild to be tolerated, blank lines inside are not.
	text = strings.TrimRight(text, "\r\n")
	if text == "" {
		return nil, fmt.Errorf("%w: empty policy", ErrSyntax)
	}
	var (
		p                 Policy
		seenVersion       bool
		seenMode, seenAge bool
	)
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if strings.ContainsRune(line, '\r') {
			return nil, fmt.Errorf("%w: line %d: stray CR", ErrSyntax, n)
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line %d: want \"key: value\", got %q", ErrSyntax, n, line)
		}
		if !validKey(key) {
			return nil, fmt.Errorf("%w: line %d: bad key %q", ErrSyntax, n, key)
		}
		value = strings.Trim(value, " \t")
		switch key {
		case "version":
			if seenVersion {
				return nil, fmt.Errorf("%w: line %d: version given twice", ErrSyntax, n)
			}
			seenVersion = true
			if value != "STSv1" {
				return nil, fmt.Errorf("%w: line %d: version %q, want STSv1", ErrSyntax, n, value)
			}
		case "mode":
			if seenMode {
				return nil, fmt.Errorf("%w: line %d: mode given twice", ErrSyntax, n)
			}
			seenMode = true
			switch Mode(value) {
			case Enforce, Testing, None:
				p.Mode = Mode(value)
			default:
				return nil, fmt.Errorf("%w: line %d: mode %q, want enforce, testing or none", ErrSyntax, n, value)
			}
		case "max_age":
			if seenAge {
				return nil, fmt.Errorf("%w: line %d: max_age given twice", ErrSyntax, n)
			}
			seenAge = true
			if len(value) == 0 || len(value) > 10 || strings.Trim(value, "0123456789") != "" {
				return nil, fmt.Errorf("%w: line %d: max_age %q is not 1 to 10 digits", ErrSyntax, n, value)
			}
			secs, err := strconv.ParseInt(value, 10, 64)
			if err != nil || time.Duration(secs)*time.Second > MaxAge {
				return nil, fmt.Errorf("%w: line %d: max_age %q above %d", ErrSyntax, n, value, int64(MaxAge/time.Second))
			}
			p.MaxAge = time.Duration(secs) * time.Second
		case "mx":
			pat, err := parsePattern(value)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: mx %q: %v", ErrSyntax, n, value, err)
			}
			p.MX = append(p.MX, pat)
		default:
			// An extension: its value is visible characters and spaces.
			for _, c := range value {
				if c < 0x20 && c != '\t' || c == 0x7f {
					return nil, fmt.Errorf("%w: line %d: control character in %s", ErrSyntax, n, key)
				}
			}
		}
	}
	switch {
	case !seenVersion:
		return nil, fmt.Errorf("%w: no version", ErrSyntax)
	case !seenMode:
		return nil, fmt.Errorf("%w: no mode", ErrSyntax)
	case !seenAge:
		return nil, fmt.Errorf("%w: no max_age", ErrSyntax)
	case len(p.MX) == 0 && p.Mode != None:
		return nil, fmt.Errorf("%w: mode %s without any mx", ErrSyntax, p.Mode)
	}
	return &p, nil
}

func isText(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != '\t' && c != '\r' && c != '\n' || c == 0x7f || c >= 0x80 {
			return false
		}
	}
	return true
}

// validKey: 1*32(ALPHA / DIGIT / "_" / "-" / ".") (RFC 8461 §3.2).
func validKey(k string) bool {
	if k == "" || len(k) > 32 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// parsePattern checks an mx value: a host name, optionally with "*." as its
// whole first label. It returns it in lower case without a trailing dot.
func parsePattern(v string) (string, error) {
	v = strings.ToLower(strings.TrimSuffix(v, "."))
	name := strings.TrimPrefix(v, "*.")
	if strings.Contains(name, "*") {
		return "", errors.New("a wildcard is only allowed as the whole first label")
	}
	if err := checkHost(name); err != nil {
		return "", err
	}
	if name != v && !strings.Contains(name, ".") {
		return "", errors.New("a wildcard needs at least two labels after it")
	}
	return v, nil
}

// checkHost accepts LDH host names (A-labels) of RFC 1035 length.
func checkHost(name string) error {
	if name == "" || len(name) > 253 {
		return errors.New("bad length")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty or overlong label")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("label starts or ends with a hyphen")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("character %q not allowed", c)
			}
		}
	}
	return nil
}

// Match reports whether the MX host name matches one of the policy's mx
// patterns (RFC 8461 §4.1): an exact name, or "*.rest" matching exactly one
// label in front of rest. Case and a trailing dot do not matter.
func (p *Policy) Match(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			first, tail, found := strings.Cut(host, ".")
			if found && first != "" && tail == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// ParseRecord reads a _mta-sts TXT record (RFC 8461 §3.1): "v=STSv1;
// id=ID" and optional extensions, separated by ";". It returns the id.
func ParseRecord(txt string) (string, error) {
	fields := strings.Split(txt, ";")
	if strings.Trim(fields[0], " \t") != "v=STSv1" {
		return "", fmt.Errorf("%w: record does not start with v=STSv1", ErrSyntax)
	}
	id := ""
	for i, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		if f == "" && i == len(fields)-2 {
			break // a final ";"
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok || !validKey(k) {
			return "", fmt.Errorf("%w: bad field %q", ErrSyntax, f)
		}
		if k == "id" {
			if id != "" {
				return "", fmt.Errorf("%w: id given twice", ErrSyntax)
			}
			if len(v) < 1 || len(v) > 32 || !alnum(v) {
				return "", fmt.Errorf("%w: id %q is not 1 to 32 letters and digits", ErrSyntax, v)
			}
			id = v
			continue
		}
		for _, c := range v {
			if c <= 0x20 || c == 0x7f || c == ';' || c == '=' {
				return "", fmt.Errorf("%w: bad value in %q", ErrSyntax, f)
			}
		}
	}
	if id == "" {
		return "", fmt.Errorf("%w: no id", ErrSyntax)
	}
	return id, nil
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

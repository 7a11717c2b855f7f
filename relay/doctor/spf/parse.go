package spf

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// parsedRecord is a parsed SPF record: its directives in order and the two
// modifiers RFC 7208 defines (unknown modifiers are checked, then ignored,
// §6).
type parsedRecord struct {
	mechanisms []directive
	redirect   string // domain-spec, unexpanded
	exp        string
}

// directive is one mechanism with its qualifier (RFC 7208 §4.6.2).
type directive struct {
	raw       string // the term as published, for reports
	qualifier Result // the result when it matches
	kind      string // all, include, a, mx, ptr, ip4, ip6, exists (lower case)
	domain    string // domain-spec, unexpanded; "" means the current domain
	prefix    netip.Prefix
	cidr4     int // a and mx: prefix lengths the looked-up addresses are widened to
	cidr6     int
}

func (m directive) String() string { return m.raw }

// Parse checks the syntax of an SPF record (RFC 7208 §12's ABNF), which a
// receiver checks before evaluating anything: one bad term makes the whole
// record a permerror (§4.6).
func Parse(record string) error {
	_, err := parse(record)
	return err
}

func parse(record string) (*parsedRecord, error) {
	if !IsRecord(record) {
		return nil, errors.New(`an SPF record starts with "v=spf1"`)
	}
	r := &parsedRecord{}
	// §4.6.1: terms are separated by one or more spaces (SP only).
	for _, t := range strings.Split(record[6:], " ") {
		if t == "" {
			continue
		}
		if name, value, ok := modifier(t); ok {
			switch strings.ToLower(name) {
			case "redirect", "exp":
				target := &r.redirect
				if strings.EqualFold(name, "exp") {
					target = &r.exp
				}
				if *target != "" {
					return nil, fmt.Errorf("%s= appears twice (RFC 7208 §6)", strings.ToLower(name))
				}
				if err := checkDomainSpec(value); err != nil {
					return nil, fmt.Errorf("%q: %v", t, err)
				}
				*target = value
			default:
				if err := checkMacroString(value); err != nil {
					return nil, fmt.Errorf("%q: %v", t, err)
				}
			}
			continue
		}
		m, err := parseMechanism(t)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", t, err)
		}
		r.mechanisms = append(r.mechanisms, m)
	}
	return r, nil
}

// modifier splits name=value when t is a modifier: name = ALPHA *( ALPHA
// / DIGIT / "-" / "_" / "." ).
func modifier(t string) (name, value string, ok bool) {
	i := strings.IndexByte(t, '=')
	if i <= 0 {
		return "", "", false
	}
	name = t[:i]
	for j := 0; j < len(name); j++ {
		c := name[j]
		alpha := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if j == 0 && !alpha || !alpha && !('0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", "", false
		}
	}
	return name, t[i+1:], true
}

func parseMechanism(t string) (directive, error) {
	m := directive{raw: t, qualifier: Pass, cidr4: 32, cidr6: 128}
	switch t[0] {
	case '+':
		t = t[1:]
	case '-':
		m.qualifier, t = Fail, t[1:]
	case '~':
		m.qualifier, t = SoftFail, t[1:]
	case '?':
		m.qualifier, t = Neutral, t[1:]
	}
	name, rest := t, ""
	if i := strings.IndexAny(t, ":/"); i >= 0 {
		name, rest = t[:i], t[i:]
	}
	m.kind = strings.ToLower(name)
	switch m.kind {
	case "all":
		if rest != "" {
			return m, errors.New("all takes no argument")
		}
	case "include", "exists":
		spec, ok := strings.CutPrefix(rest, ":")
		if !ok || spec == "" {
			return m, fmt.Errorf("%s needs a domain (%s:example.com)", m.kind, m.kind)
		}
		if err := checkDomainSpec(spec); err != nil {
			return m, err
		}
		m.domain = spec
	case "a", "mx":
		spec, c4, c6, err := splitDualCIDR(rest)
		if err != nil {
			return m, err
		}
		m.cidr4, m.cidr6 = c4, c6
		if spec != "" {
			d, ok := strings.CutPrefix(spec, ":")
			if !ok || d == "" {
				return m, fmt.Errorf("want %s, %s:DOMAIN, with an optional /N and //N", m.kind, m.kind)
			}
			if err := checkDomainSpec(d); err != nil {
				return m, err
			}
			m.domain = d
		}
	case "ptr":
		if rest != "" {
			d, ok := strings.CutPrefix(rest, ":")
			if !ok || d == "" {
				return m, errors.New("want ptr or ptr:DOMAIN")
			}
			if err := checkDomainSpec(d); err != nil {
				return m, err
			}
			m.domain = d
		}
	case "ip4", "ip6":
		spec, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return m, fmt.Errorf("%s needs an address (%s:ADDRESS[/N])", m.kind, m.kind)
		}
		addrText, lenText, hasLen := strings.Cut(spec, "/")
		ip, err := netip.ParseAddr(addrText)
		if err != nil || ip.Zone() != "" || (m.kind == "ip4") != ip.Is4() {
			return m, fmt.Errorf("%q is not an IPv%s address", addrText, m.kind[2:])
		}
		bits := ip.BitLen()
		if hasLen {
			if bits, err = cidrLength(lenText, ip.BitLen()); err != nil {
				return m, err
			}
		}
		m.prefix = netip.PrefixFrom(ip, bits).Masked()
	default:
		return m, fmt.Errorf("unknown mechanism %q", name)
	}
	return m, nil
}

// splitDualCIDR takes the "/N" and "//N" suffixes off the argument of a or
// mx (RFC 7208 §5.6: dual-cidr-length = [ ip4-cidr-length ] [ "/"
// ip6-cidr-length ]).
func splitDualCIDR(s string) (rest string, c4, c6 int, err error) {
	c4, c6 = 32, 128
	if i := strings.LastIndex(s, "//"); i >= 0 && digits(s[i+2:]) {
		if c6, err = cidrLength(s[i+2:], 128); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 && digits(s[i+1:]) {
		if c4, err = cidrLength(s[i+1:], 32); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	return s, c4, c6, nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// cidrLength parses a prefix length: no leading zero (the ABNF has none),
// at most max.
func cidrLength(s string, max int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || !digits(s) || (len(s) > 1 && s[0] == '0') || n > max {
		return 0, fmt.Errorf("bad prefix length /%s (0 to %d)", s, max)
	}
	return n, nil
}

// checkDomainSpec checks a domain-spec (RFC 7208 §7.1): a macro-string
// ending in a macro or in a top label.
func checkDomainSpec(s string) error {
	if err := checkMacroString(s); err != nil {
		return err
	}
	t := strings.TrimSuffix(s, ".")
	if strings.HasSuffix(t, "}") {
		return nil
	}
	i := strings.LastIndexByte(t, '.')
	if i < 0 {
		return fmt.Errorf("%q is not a fully qualified domain name", s)
	}
	if !topLabel(t[i+1:]) {
		return fmt.Errorf("%q does not end in a top-level label", s)
	}
	return nil
}

// topLabel: letters, digits and inner hyphens, not all digits.
func topLabel(l string) bool {
	if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	alpha := false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
			alpha = true
		case '0' <= c && c <= '9', c == '-':
		default:
			return false
		}
	}
	return alpha || strings.Contains(l, "-")
}

// checkMacroString checks macro syntax without expanding. c, r and t are
// refused: §7.2 allows them only in the explanation text that exp= points
// to, which is not fetched here, never in a domain-spec (exp='s own
// included: the suite's exp-only-macro-char).
func checkMacroString(s string) error {
	_, err := walkMacros(s, func(macro) (string, error) { return "x", nil })
	return err
}

// macro is one %{...} expansion request.
type macro struct {
	letter  byte // lower case
	upper   bool // URL-escape the result
	digits  int  // keep this many right-hand parts; 0 means all
	reverse bool
	delims  string // split on these; "" means "."
}

// walkMacros scans a macro-string (§7.1), copying literals and replacing
// each macro by what value returns (after transformers).
func walkMacros(s string, value func(macro) (string, error)) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			// macro-literal = %x21-24 / %x26-7E
			if c < 0x21 || c > 0x7e {
				return "", fmt.Errorf("character %q not allowed", c)
			}
			b.WriteByte(c)
			continue
		}
		if i+1 == len(s) {
			return "", errors.New(`"%" at the end: write "%%" for a percent sign`)
		}
		i++
		switch s[i] {
		case '%':
			b.WriteByte('%')
			continue
		case '_':
			b.WriteByte(' ')
			continue
		case '-':
			b.WriteString("%20")
			continue
		case '{':
		default:
			return "", fmt.Errorf(`"%%%c": a macro is %%{letter}, %%%%, %%_ or %%-`, s[i])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", errors.New(`unterminated macro "%{"`)
		}
		body := s[i+1 : i+end]
		i += end
		m, err := parseMacro(body)
		if err != nil {
			return "", err
		}
		v, err := value(m)
		if err != nil {
			return "", err
		}
		b.WriteString(transform(v, m))
	}
	return b.String(), nil
}

func parseMacro(body string) (macro, error) {
	if body == "" {
		return macro{}, errors.New("empty macro %{}")
	}
	m := macro{letter: body[0] | 0x20, upper: 'A' <= body[0] && body[0] <= 'Z'}
	switch m.letter {
	case 's', 'l', 'o', 'd', 'i', 'p', 'h', 'v':
	case 'c', 'r', 't':
		return m, fmt.Errorf("macro %%{%c} is allowed only in explanation text, not in a domain (RFC 7208 §7.2)", body[0])
	default:
		return m, fmt.Errorf("unknown macro letter %q", body[0])
	}
	rest := body[1:]
	n := 0
	for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' {
		n++
	}
	if n > 0 {
		d, err := strconv.Atoi(rest[:n])
		if err != nil || d == 0 {
			return m, fmt.Errorf("macro %%{%s}: the part count must be 1 or more", body)
		}
		// §7.3: at least 128 parts must be supported; more is the same.
		m.digits = min(d, 128)
		rest = rest[n:]
	}
	if rest != "" && (rest[0] == 'r' || rest[0] == 'R') {
		m.reverse = true
		rest = rest[1:]
	}
	for i := 0; i < len(rest); i++ {
		if !strings.ContainsRune(".-+,/_=", rune(rest[i])) {
			return m, fmt.Errorf("macro %%{%s}: bad delimiter %q", body, rest[i])
		}
	}
	m.delims = rest
	return m, nil
}

// transform applies §7.3: split on the delimiters, reverse, keep the
// right-most parts, join with dots, URL-escape for upper-case letters.
func transform(v string, m macro) string {
	if m.digits > 0 || m.reverse || m.delims != "" {
		delims := m.delims
		if delims == "" {
			delims = "."
		}
		parts := splitAny(v, delims)
		if m.reverse {
			for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
				parts[i], parts[j] = parts[j], parts[i]
			}
		}
		if m.digits > 0 && m.digits < len(parts) {
			parts = parts[len(parts)-m.digits:]
		}
		v = strings.Join(parts, ".")
	}
	if m.upper {
		v = urlEscape(v)
	}
	return v
}

func splitAny(s, delims string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(delims, s[i]) >= 0 {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// urlEscape escapes all but RFC 3986's unreserved characters (§7.3).
func urlEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// expandDomain expands a domain-spec for a query (§7.3), shortening a result
// longer than 253 characters by whole labels from the left.
func (e *eval) expandDomain(spec, domain string) (string, error) {
	out, err := walkMacros(spec, func(m macro) (string, error) { return e.macroValue(m, domain), nil })
	if err != nil {
		return "", permErr("%q: %v", spec, err)
	}
	out = strings.TrimSuffix(out, ".")
	for len(out) > 253 {
		i := strings.IndexByte(out, '.')
		if i < 0 {
			break
		}
		out = out[i+1:]
	}
	return strings.ToLower(out), nil
}

func (e *eval) macroValue(m macro, domain string) string {
	switch m.letter {
	case 's':
		return e.sender
	case 'l':
		return e.local
	case 'o':
		return e.senderDomain
	case 'd':
		return domain
	case 'h':
		return e.helo
	case 'v':
		if e.ip.Is4() {
			return "in-addr"
		}
		return "ip6"
	case 'i':
		if e.ip.Is4() {
			return e.ip.String()
		}
		// §7.3: IPv6 as dot-separated nibbles.
		raw := e.ip.As16()
		nib := make([]string, 0, 32)
		for _, b := range raw {
			nib = append(nib, strconv.FormatUint(uint64(b>>4), 16), strconv.FormatUint(uint64(b&15), 16))
		}
		return strings.Join(nib, ".")
	case 'p':
		return e.validatedDomain(domain)
	}
	return ""
}

// validatedDomain is %{p} (§7.3): a PTR name of the client that resolves
// back to it, preferring domain itself, then a subdomain of it; "unknown"
// when there is none. Its lookups are not charged (§4.6.4 lists only the
// terms), and the RFC discourages the macro.
func (e *eval) validatedDomain(domain string) string {
	if !e.ptrDone {
		e.ptrDone = true
		e.ptrNames = e.validatedNames()
	}
	best := "unknown"
	for _, n := range e.ptrNames {
		if n == domain {
			return n
		}
		if best == "unknown" && strings.HasSuffix(n, "."+domain) {
			best = n
		}
	}
	if best == "unknown" && len(e.ptrNames) > 0 {
		best = e.ptrNames[0]
	}
	return best
}

// validDomain is §4.3's check of the domain before evaluation: a fully
// qualified name of labels of 1 to 63 characters, at most 253 in all.
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

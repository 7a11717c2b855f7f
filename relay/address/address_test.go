package address

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		addr    string
		utf8    bool
		wantErr error
	}{
		{"user@example.com", false, nil},
		{"first.last+tag@sub.example.co.uk", false, nil},
		{"user@[192.0.2.1]", false, nil},
		{"user@[IPv6:2001:db8::1]", false, nil},
		{"josé@exemple.fr", true, nil},
		{"user@bücher.de", true, nil},
		{"user%other.example@example.com", false, nil},
		{"", false, ErrEmpty},
		{"root", false, ErrNoDomain},
		{"user@", false, ErrNoDomain},
		{"@example.com", false, ErrSyntax},
		{".user@example.com", false, ErrSyntax},
		{"us..er@example.com", false, ErrSyntax},
		{"user@exa mple.com", false, ErrSyntax},
		{"user@-example.com", false, ErrSyntax},
		{"user@example..com", false, ErrSyntax},
		{"user@[999.1.1.1]", false, ErrSyntax},
		{"user@exa_mple.com", false, ErrSyntax},
		{"us\ter@example.com", false, ErrSyntax},
		{strings.Repeat("a", 65) + "@example.com", false, ErrTooLong},
		{"a@" + strings.Repeat("b", 64) + ".com", false, ErrSyntax},
		{"a@b\xff.com", false, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			u, err := Check(tt.addr)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check(%q) = %v, want %v", tt.addr, err, tt.wantErr)
			}
			if err == nil && u != tt.utf8 {
				t.Errorf("utf8 = %v", u)
			}
		})
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"user@example.com", "a@[1.2.3.4]", "josé@exemple.fr", "x@y", "@", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Check(s)
		if err != nil {
			return
		}
		// Property: an accepted address has a local part and a domain, no
		// control characters and no line breaks, and utf8 says whether it is
		// non-ASCII.
		local, domain := Split(s)
		if local == "" || domain == "" || strings.ContainsAny(s, "\r\n\x00") {
			t.Fatalf("accepted %q", s)
		}
		if u == IsASCII(s) {
			t.Fatalf("utf8=%v for %q", u, s)
		}
	})
}

// TestFromSMTP: addresses as go-smtp hands them over (quotes removed) are
// refused or kept, and a quoted local part goes back on the wire quoted.
func TestFromSMTP(t *testing.T) {
	tests := []struct {
		name, in, wire string
		wantErr        error
	}{
		{"plain", "bob@example.org", "bob@example.org", nil},
		{"quoted with a space", "quoted user@example.org", `"quoted user"@example.org`, nil},
		{"quoted with a quote", `a"b@example.org`, `"a\"b"@example.org`, nil},
		{"quoted with a backslash", `a\b c@example.org`, `"a\\b c"@example.org`, nil},
		{"double at", "bob@@example.org", "", ErrSyntax},
		{"at in local part", "a@b@example.org", "", ErrSyntax},
		{"empty local part", "@example.org", "", ErrSyntax},
		{"control char in quoted part", "a\x01 b@example.org", "", ErrSyntax},
		{"leading dot", ".bob@example.org", "", ErrSyntax},
		{"bad domain", "bob@exa_mple.org", "", ErrSyntax},
		{"trailing dot in domain", "bob@example.org.", "", ErrSyntax},
		{"IPv6 literal needs its tag", "bob@[2001:db8::1]", "", ErrSyntax},
		{"IPv6 literal", "bob@[IPv6:2001:db8::1]", "bob@[IPv6:2001:db8::1]", nil},
		{"IPv4 literal", "bob@[192.0.2.1]", "bob@[192.0.2.1]", nil},
		{"UTF-8", "josé@exemple.fr", "josé@exemple.fr", nil},
		{"no domain", "root", "", ErrNoDomain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := FromSMTP(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FromSMTP(%q) = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err == nil && m.String() != tt.wire {
				t.Errorf("wire form %q, want %q", m.String(), tt.wire)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		bare    bool
		local   string
		wantErr error
	}{
		{"bob@example.org", false, "bob", nil},
		{`"quoted user"@example.org`, false, "quoted user", nil},
		{`"a\"b"@example.org`, false, `a"b`, nil},
		{"root", true, "root", nil},
		{"root", false, "", ErrNoDomain},
		{`"root"`, true, "", ErrNoDomain},
		{"bob@@example.org", false, "", ErrSyntax},
		{`"unterminated@example.org`, false, "", ErrSyntax},
		{`"a"b@example.org`, false, "", ErrSyntax},
		{`"a\`, false, "", ErrSyntax},
		{"a..b@example.org", false, "", ErrSyntax},
		{"bob@example.org.", false, "", ErrSyntax},
		{"@example.org", false, "", ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := Parse(tt.in, tt.bare)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Parse(%q) = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err == nil && (m.Local != tt.local || m.String() != tt.in) {
				t.Errorf("Parse(%q) = %+v (wire %q)", tt.in, m, m.String())
			}
		})
	}
}

// FuzzWireRoundTrip: what Parse accepts prints back to itself, and the
// daemon's reading of go-smtp's unquoted form of it agrees (one parser).
func FuzzWireRoundTrip(f *testing.F) {
	for _, s := range []string{"a@b.c", `"x y"@b.c`, `"a\"b"@[IPv6:::1]`, "josé@exemple.fr"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s, false)
		if err != nil {
			return
		}
		if w := m.String(); w != s && !strings.HasPrefix(s, `"`) {
			t.Fatalf("Parse(%q).String() = %q", s, w)
		}
		m2, err := Parse(m.String(), false)
		if err != nil || m2 != m {
			t.Fatalf("round trip of %q: %+v, %v", s, m2, err)
		}
	})
}

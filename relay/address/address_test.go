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
		if u == isASCII(s) {
			t.Fatalf("utf8=%v for %q", u, s)
		}
	})
}

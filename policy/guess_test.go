package policy

import (
	"strings"
	"testing"
)

func TestProviderFor(t *testing.T) {
	p, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		arg, want string
		err       string
	}{
		{"", DefaultProvider, ""},
		{" Yahoo ", "yahoo", ""},
		{"yahoo.fr", "yahoo", ""},
		{"@hotmail.com", "microsoft", ""},
		{"example.org", DefaultProvider, ""},
		{"nosuch", "", `unknown provider "nosuch" (known: `},
	}
	for _, tc := range tests {
		got, err := p.ProviderFor(tc.arg)
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ProviderFor(%q) = %q, %v; want %q, %q", tc.arg, got, err, tc.want, tc.err)
		}
	}
}

func TestProviderInText(t *testing.T) {
	p, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text, name, why string
	}{
		{"The email account that you tried to reach does not exist. Learn more at https://support.google.com/mail/?p=NoSuchUser - gsmtp",
			"google", "host support.google.com in the text"},
		{"5.7.1 Service unavailable [eur.olc.protection.outlook.com]",
			"microsoft", "host eur.olc.protection.outlook.com in the text"},
		{"Too many connections from 192.0.2.10, see https://example.org/help", "", ""},
		{"user unknown", "", ""},
	}
	for _, tc := range tests {
		name, why := p.ProviderInText(tc.text)
		if name != tc.name || why != tc.why {
			t.Errorf("ProviderInText(%q) = %q, %q; want %q, %q", tc.text, name, why, tc.name, tc.why)
		}
	}
}

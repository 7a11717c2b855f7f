package mtasts

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *Policy // nil: a syntax error
	}{
		{"RFC 8461 example", "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800\n",
			&Policy{Mode: Enforce, MX: []string{"mail.example.com", "*.example.net", "backupmx.example.com"}, MaxAge: 604800 * time.Second}},
		{"CRLF line ends", "version: STSv1\r\nmode: testing\r\nmx: mx.example.org\r\nmax_age: 86400\r\n",
			&Policy{Mode: Testing, MX: []string{"mx.example.org"}, MaxAge: 86400 * time.Second}},
		{"no final newline, any order, upper-case mx", "mx: MX.Example.ORG.\nmax_age: 0\nmode: enforce\nversion: STSv1",
			&Policy{Mode: Enforce, MX: []string{"mx.example.org"}, MaxAge: 0}},
		{"spaces around values", "version:STSv1\nmode:\tnone \nmax_age:   300\n", &Policy{Mode: None, MaxAge: 300 * time.Second}},
		{"extension ignored", "version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 1\nx-vendor.opt: some value here\n",
			&Policy{Mode: Enforce, MX: []string{"mx.example.org"}, MaxAge: time.Second}},
		{"max_age at the cap", "version: STSv1\nmode: none\nmax_age: 31557600\n", &Policy{Mode: None, MaxAge: MaxAge}},
		{"trailing blank lines tolerated", "version: STSv1\nmode: none\nmax_age: 1\n\n\r\n", &Policy{Mode: None, MaxAge: time.Second}},

		{"empty", "", nil},
		{"no version", "mode: enforce\nmx: a.example\nmax_age: 1\n", nil},
		{"wrong version", "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", nil},
		{"no mode", "version: STSv1\nmx: a.example\nmax_age: 1\n", nil},
		{"bad mode", "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", nil},
		{"no max_age", "version: STSv1\nmode: enforce\nmx: a.example\n", nil},
		{"max_age over the cap", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", nil},
		{"max_age too many digits", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 00000000001\n", nil},
		{"max_age negative", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", nil},
		{"enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 1\n", nil},
		{"testing without mx", "version: STSv1\nmode: testing\nmax_age: 1\n", nil},
		{"duplicate mode", "version: STSv1\nmode: none\nmode: enforce\nmx: a.example\nmax_age: 1\n", nil},
		{"duplicate max_age", "version: STSv1\nmode: none\nmax_age: 1\nmax_age: 2\n", nil},
		{"blank line inside", "version: STSv1\n\nmode: none\nmax_age: 1\n", nil},
		{"line without colon", "version: STSv1\nmode none\nmax_age: 1\n", nil},
		{"wildcard in the middle", "version: STSv1\nmode: enforce\nmx: mx.*.example\nmax_age: 1\n", nil},
		{"bare wildcard", "version: STSv1\nmode: enforce\nmx: *.com\nmax_age: 1\n", nil},
		{"bad host", "version: STSv1\nmode: enforce\nmx: mx_1.example\nmax_age: 1\n", nil},
		{"HTML page", "<html><body>version: STSv1</body></html>\n", nil},
		{"NUL byte", "version: STSv1\nmode: none\x00\nmax_age: 1\n", nil},
		{"stray CR", "version: STSv1\rmode: none\nmax_age: 1\n", nil},
		{"non-ASCII", "version: STSv1\nmode: none\nmax_age: 1\ncomment: é\n", nil},
		{"bad key", "version: STSv1\nmode: none\nmax_age: 1\nbad key: x\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if tt.want == nil {
				if err == nil || !errors.Is(err, ErrSyntax) {
					t.Fatalf("Parse = %+v, %v; want a syntax error", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got.Mode != tt.want.Mode || got.MaxAge != tt.want.MaxAge || !slices.Equal(got.MX, tt.want.MX) {
				t.Fatalf("Parse = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{Mode: Enforce, MX: []string{"mail.example.com", "*.example.net"}}
	tests := []struct {
		host string
		want bool
	}{
		{"mail.example.com", true},
		{"MAIL.Example.COM.", true},
		{"mx1.example.net", true},
		{"example.net", false},     // the wildcard needs a label
		{"a.b.example.net", false}, // exactly one label (RFC 8461 §4.1)
		{"xmail.example.com", false},
		{"mail.example.com.evil", false},
		{".example.net", false},
	}
	for _, tt := range tests {
		if got := p.Match(tt.host); got != tt.want {
			t.Errorf("Match(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestParseRecord(t *testing.T) {
	tests := []struct {
		in, id string // id "" means an error
	}{
		{"v=STSv1; id=20160831085700Z;", "20160831085700Z"},
		{"v=STSv1;id=abc", "abc"},
		{"v=STSv1; id=abc; ext=val", "abc"},
		{"v=STSv1 ;  id=abc  ;", "abc"},
		{"v=STSv1;", ""},
		{"v=STSv1; id=", ""},
		{"v=STSv1; id=ab-c", ""},
		{"v=STSv1; id=" + strings.Repeat("a", 33), ""},
		{"v=STSv1; id=a; id=b", ""},
		{"v=STSv2; id=a", ""},
		{"id=a; v=STSv1", ""},
		{"v=STSv1; id=a; bad", ""},
	}
	for _, tt := range tests {
		id, err := ParseRecord(tt.in)
		if tt.id == "" {
			if err == nil {
				t.Errorf("ParseRecord(%q) = %q, want an error", tt.in, id)
			}
			continue
		}
		if err != nil || id != tt.id {
			t.Errorf("ParseRecord(%q) = %q, %v; want %q", tt.in, id, err, tt.id)
		}
	}
}

// FuzzParse: no panic; what parses is within the RFC's bounds, every
// pattern matches a host built from it, and the policy written back parses
// to the same policy.
func FuzzParse(f *testing.F) {
	f.Add("version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n")
	f.Add("version: STSv1\r\nmode: none\r\nmax_age: 0\r\n")
	f.Add("mx: a.b\nversion: STSv1\nmode: testing\nmax_age: 31557600\nx: y")
	f.Fuzz(func(t *testing.T, in string) {
		p, err := Parse([]byte(in))
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error not ErrSyntax: %v", err)
			}
			return
		}
		if p.MaxAge < 0 || p.MaxAge > MaxAge {
			t.Fatalf("max_age %v out of range", p.MaxAge)
		}
		if p.Mode != Enforce && p.Mode != Testing && p.Mode != None {
			t.Fatalf("mode %q", p.Mode)
		}
		if p.Mode != None && len(p.MX) == 0 {
			t.Fatal("enforce or testing without mx")
		}
		var b strings.Builder
		fmt.Fprintf(&b, "version: STSv1\nmode: %s\nmax_age: %d\n", p.Mode, int64(p.MaxAge/time.Second))
		for _, m := range p.MX {
			host := m
			if rest, ok := strings.CutPrefix(m, "*."); ok {
				host = "x." + rest
			}
			if !p.Match(host) {
				t.Fatalf("pattern %q does not match %q", m, host)
			}
			fmt.Fprintf(&b, "mx: %s\n", m)
		}
		q, err := Parse([]byte(b.String()))
		if err != nil || q.Mode != p.Mode || q.MaxAge != p.MaxAge || !slices.Equal(q.MX, p.MX) {
			t.Fatalf("round trip: %+v, %v; want %+v", q, err, p)
		}
	})
}

// FuzzParseRecord: no panic, and an accepted record yields an id of 1 to
// 32 letters and digits that the record contains.
func FuzzParseRecord(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;")
	f.Add("v=STSv1;id=a;x=y")
	f.Fuzz(func(t *testing.T, in string) {
		id, err := ParseRecord(in)
		if err != nil {
			return
		}
		if len(id) < 1 || len(id) > 32 || !alnum(id) || !strings.Contains(in, "id="+id) {
			t.Fatalf("ParseRecord(%q) = %q", in, id)
		}
	})
}

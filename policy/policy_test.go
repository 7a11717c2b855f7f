package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBuiltinProviders(t *testing.T) {
	p := mustBuiltin(t)
	want := map[string]struct {
		conns, mpc int
		rate       string
		group      string
	}{
		"default":   {20, 100, "unlimited", ""},
		"microsoft": {5, 50, "1000/h", ""},
		"google":    {10, 100, "unlimited", ""},
		"yahoo":     {5, 20, "unlimited", ""},
		"orange":    {2, 100, "unlimited", "vade"},
		"sfr":       {2, 100, "unlimited", "vade"},
		"laposte":   {2, 100, "unlimited", "vade"},
		"free":      {1, 100, "1/10s", ""},
		"gmx":       {5, 100, "unlimited", ""},
		"apple":     {5, 100, "unlimited", ""},
	}
	if len(p.Providers) != len(want) {
		t.Errorf("%d providers, want %d", len(p.Providers), len(want))
	}
	for name, w := range want {
		pr, ok := p.Lookup(name)
		if !ok {
			t.Errorf("no provider %s", name)
			continue
		}
		if pr.Knobs.Connections != w.conns || pr.Knobs.MessagesPerConnection != w.mpc || FormatRate(pr.Knobs.Rate) != w.rate || pr.Group != w.group {
			t.Errorf("%s: %+v group %q, want %+v", name, pr.Knobs, pr.Group, w)
		}
	}
	if y, _ := p.Lookup("yahoo"); y.Knobs.Retry.Every != 4*time.Hour || y.Knobs.Retry.For != 48*time.Hour {
		t.Errorf("yahoo retry %s", y.Knobs.Retry)
	}
	if f, _ := p.Lookup("free"); f.Knobs.Backoff != (BackoffKnobs{15 * time.Minute, 24 * time.Hour}) {
		t.Errorf("free backoff %+v", f.Knobs.Backoff)
	}
}

func TestRecognize(t *testing.T) {
	p := mustBuiltin(t)
	tests := []struct {
		domain string
		mx     []string
		want   string
	}{
		{"gmail.com", nil, "google"},
		{"GMail.COM.", nil, "google"},
		{"hotmail.fr", nil, "microsoft"},
		{"hotmail.co.uk", nil, "microsoft"},
		{"outlook.com.br", nil, "microsoft"},
		{"live.com", nil, "microsoft"},
		{"msn.com", nil, "microsoft"},
		{"yahoo.fr", nil, "yahoo"},
		{"yahoo.co.jp", nil, "yahoo"},
		{"aol.com", nil, "yahoo"},
		{"ymail.com", nil, "yahoo"},
		{"wanadoo.fr", nil, "orange"},
		{"neuf.fr", nil, "sfr"},
		{"laposte.net", nil, "laposte"},
		{"free.fr", nil, "free"},
		{"aliceadsl.fr", nil, "free"},
		{"gmx.de", nil, "gmx"},
		{"me.com", nil, "apple"},
		{"yahoo.example.org", nil, "default"},  // not a country variant
		{"yahoo.abc.de", nil, "default"},       // abc.de is a domain under .de, not a suffix
		{"yahoo.blogspot.com", nil, "default"}, // a private suffix, not a country's
		{"yahoo.de", nil, "yahoo"},
		{"hotmail.com.au", nil, "microsoft"},
		{"notyahoo.fr", nil, "default"},    // not the same label
		{"mail.yahoo.com", nil, "default"}, // subdomains are not the provider's mailboxes
		{"contoso.example", []string{"contoso-example.mail.protection.outlook.com"}, "microsoft"},
		{"contoso.example", []string{"mx.other.example", "backup.mail.protection.outlook.com."}, "microsoft"},
		{"shop.example", []string{"ASPMX.L.GOOGLE.COM."}, "google"},
		{"shop.example", []string{"smtp.google.com"}, "google"},
		{"custom.example", []string{"mta5.am0.yahoodns.net"}, "yahoo"},
		{"custom.example", []string{"mx1.free.fr"}, "free"},
		{"custom.example", []string{"fakegoogle.com"}, "default"}, // suffix needs the dot
		{"gmail.com", []string{"mx1.free.fr"}, "google"},          // domain first
		{"example.org", []string{"mx.example.org"}, "default"},
		{"", nil, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.domain+"/"+strings.Join(tt.mx, ","), func(t *testing.T) {
			if got := p.Recognize(tt.domain, tt.mx); got != tt.want {
				t.Errorf("Recognize(%q, %q) = %q, want %q", tt.domain, tt.mx, got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // each a substring of one error, in order
	}{
		{"unknown key in a provider", "providers:\n  yahoo:\n    prot: 1\n",
			[]string{`bad.yaml:3: unknown key "prot" in providers.yahoo`}},
		{"unknown top-level key", "provider: {}\n", []string{`bad.yaml:1: unknown key "provider"`}},
		{"unknown key in defaults.backoff", "defaults:\n  backoff:\n    initail: 1m\n",
			[]string{`bad.yaml:3: unknown key "initail" in defaults.backoff`}},
		{"unknown key in a rule", "rules:\n  - name: x\n    math: a\n    class: other_permanent\n",
			[]string{`bad.yaml:3: unknown key "math" in rules[0]`}},
		{"unknown key in throttle", "providers:\n  free:\n    throttle: {factr: 3}\n",
			[]string{`bad.yaml:3: unknown key "factr" in providers.free.throttle`}},
		{"unknown key in suppression", "suppression:\n  mailbox_ful: {}\n",
			[]string{`bad.yaml:2: unknown key "mailbox_ful" in suppression`}},
		{"unknown key in retry", "defaults:\n  retry: {every: 1h, fr: 2h}\n",
			[]string{`bad.yaml:2: defaults.retry: unknown key "fr" in retry`}},
		{"bad duration", "defaults:\n  max_lifetime: 5 days\n",
			[]string{`bad.yaml:2: defaults.max_lifetime: bad duration "5 days"`}},
		{"bad rate", "providers:\n  free:\n    rate: 1 per 10s\n",
			[]string{`bad.yaml:3: providers.free.rate: bad rate "1 per 10s"`}},
		{"bad int", "providers:\n  free:\n    connections: one\n",
			[]string{`bad.yaml:3: providers.free.connections: cannot construct`}},
		{"provider matches nothing", "providers:\n  newco:\n    connections: 2\n",
			[]string{`bad.yaml:2: providers.newco: provider "newco" matches nothing`}},
		{"domains emptied", "providers:\n  gmx:\n    domains: []\n    mx: []\n",
			[]string{`bad.yaml:2: providers.gmx: provider "gmx" matches nothing`}},
		{"bad pattern", "providers:\n  yahoo:\n    rules:\n      - {name: x, match: '[TSS04', class: rate_limited}\n",
			[]string{`bad.yaml:4: providers.yahoo.rules[0].match: pattern does not compile`}},
		{"unknown class", "rules:\n  - {name: x, code: '550', class: user_unkown}\n",
			[]string{`bad.yaml:2: rules[0].class: unknown class "user_unkown"`}},
		{"unknown action", "rules:\n  - {name: x, code: '550', class: ip_blocked, action: pause}\n",
			[]string{`bad.yaml:2: rules[0].action: unknown action "pause"`}},
		{"suspend without duration", "rules:\n  - {name: x, code: '421', class: ip_blocked, action: suspend}\n",
			[]string{`rules[0].duration: a suspend rule needs a positive duration`}},
		{"rule matching everything", "rules:\n  - {name: x, class: ip_blocked}\n",
			[]string{`rules[0].match: rule "x" matches every reply`}},
		{"bad code pattern", "rules:\n  - {name: x, code: '55', class: ip_blocked}\n",
			[]string{`rules[0].code: bad code "55"`}},
		{"rule without name", "rules:\n  - {code: '550', class: ip_blocked}\n",
			[]string{`bad.yaml:2: rules[0].name: every rule needs a name`}},
		{"duplicate rule", "rules:\n  - {name: a, code: '550', class: ip_blocked}\n  - {name: a, code: '551', class: ip_blocked}\n",
			[]string{`bad.yaml:3: rules[1].name: duplicate rule name "a"`}},
		{"bad domain", "providers:\n  x:\n    domains: ['bad domain']\n",
			[]string{`bad.yaml:3: providers.x.domains[0]: bad domain "bad domain"`}},
		{"domain taken", "providers:\n  x:\n    domains: [gmail.com]\n",
			[]string{`providers.x.domains[0]: domain gmail.com is already a domain of provider google`}},
		{"group named like a provider", "providers:\n  sfr:\n    group: free\n",
			[]string{`bad.yaml:3: providers.sfr.group: group "free" has the name of a provider`}},
		{"backoff max below initial", "providers:\n  free:\n    backoff: {max: 5m}\n",
			[]string{`bad.yaml:3: providers.free.backoff: max 5m is below initial 15m`}},
		{"zero connections", "defaults:\n  connections: 0\n", []string{`bad.yaml:2: defaults.connections: must be at least 1`}},
		{"default with domains", "providers:\n  default:\n    domains: [a.example]\n",
			[]string{`bad.yaml:2: providers.default: the default provider takes every domain`}},
		{"syntax error", "providers: [\n", []string{`bad.yaml:2: syntax error`}},
		{"every problem reported", "providers:\n  yahoo:\n    prot: 1\n    rate: fast\ndefaults:\n  max_lifetime: 5x\n",
			[]string{`bad.yaml:3: unknown key "prot"`, `bad.yaml:4: providers.yahoo.rate: bad rate`, `bad.yaml:6: defaults.max_lifetime: bad duration`}},
		{"every validation problem reported", "rules:\n  - {name: a, match: '(', class: ip_blocked}\n  - {name: b, code: '550', class: nope}\n",
			[]string{`bad.yaml:2: rules[0].match`, `bad.yaml:3: rules[1].class`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("bad.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T %v is not Errors", err, err)
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(errs), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i].Error(), w)
				}
			}
			var one *Error
			if !errors.As(err, &one) || one.File != "bad.yaml" {
				t.Errorf("errors.As(*Error) = %+v", one)
			}
		})
	}
}

func TestOverlayKeyByKey(t *testing.T) {
	base := mustBuiltin(t)
	p, err := Parse("ops.yaml", []byte(`
defaults:
  connections: 10
providers:
  yahoo:
    messages_per_connection: 10
    rules:
      - {name: yahoo-tss-deferral, match: '\bTSS0[459]\b', class: rate_limited, action: suspend, duration: 6h}
      - {name: yahoo-user-unknown, disabled: true}
      - {name: ops-first, code: "554", match: 'OPSTOKEN', class: policy_spam}
  newco:
    mx: [.mx.newco.example]
    rate: 300/h
  free:
    backoff: {max: 12h}
`))
	if err != nil {
		t.Fatal(err)
	}
	y, _ := p.Lookup("yahoo")
	by, _ := base.Lookup("yahoo")
	if y.Knobs.MessagesPerConnection != 10 || y.Knobs.Connections != by.Knobs.Connections || y.Knobs.Retry.Every != 4*time.Hour {
		t.Errorf("yahoo knobs %+v: only messages_per_connection should change", y.Knobs)
	}
	var names []string
	for _, r := range y.Rules {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, ","); got != "ops-first,yahoo-tss-deferral,yahoo-ip-blocked" {
		t.Errorf("yahoo rules %s", got)
	}
	if d := p.Classify("yahoo", Reply{Code: 421, Enhanced: "4.7.0", Text: "[TSS04] deferred"}); d.Duration != 6*time.Hour {
		t.Errorf("replaced rule not used: %s", d)
	}
	n, ok := p.Lookup("newco")
	if !ok || n.Knobs.Connections != 10 || FormatRate(n.Knobs.Rate) != "300/h" {
		t.Errorf("newco %+v (defaults.connections 10 inherited)", n)
	}
	if g, _ := p.Lookup("google"); g.Knobs.Connections != 10 {
		t.Errorf("google keeps its own connections: %d", g.Knobs.Connections)
	}
	if f, _ := p.Lookup("free"); f.Knobs.Backoff != (BackoffKnobs{15 * time.Minute, 12 * time.Hour}) {
		t.Errorf("free backoff %+v", f.Knobs.Backoff)
	}
	if got := p.Recognize("x.example", []string{"a.mx.newco.example"}); got != "newco" {
		t.Errorf("newco by mx: %s", got)
	}
	// The built-in policy is untouched.
	if by.Knobs.MessagesPerConnection != 20 {
		t.Error("overlay changed the built-in policy")
	}
}

func TestEmptyFileIsBuiltin(t *testing.T) {
	b := mustBuiltin(t)
	for _, in := range []string{"", "# nothing\n", "---\n"} {
		p, err := Parse("empty.yaml", []byte(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !samePolicy(p, b) {
			t.Errorf("%q differs from the built-in policy", in)
		}
	}
}

// TestShowRoundTrip: `policy check` accepts what `policy show [--json]` prints, and it is the
// same policy.
func TestShowRoundTrip(t *testing.T) {
	p, err := Parse("ops.yaml", []byte("providers:\n  yahoo:\n    rules:\n      - {name: yahoo-user-unknown, disabled: true}\n  newco:\n    domains: [newco.example]\n    retry: [1m, 1d12h]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, asJSON := range []bool{false, true} {
		out, err := p.Show(asJSON)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "show")
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		q, err := Load(path)
		if err != nil {
			t.Fatalf("json=%t: Load of show output: %v\n%s", asJSON, err, out)
		}
		if !samePolicy(p, q) {
			t.Errorf("json=%t: round trip differs", asJSON)
		}
		again, _ := q.Show(asJSON)
		if string(again) != strings.Replace(string(out), "ops.yaml", path, 1) {
			t.Errorf("json=%t: show is not stable:\n%s\n---\n%s", asJSON, out, again)
		}
		for _, w := range []string{"1d12h", "1/10s", "1000/h", "every", "4h"} {
			if !strings.Contains(string(out), w) {
				t.Errorf("json=%t: show output lacks %q", asJSON, w)
			}
		}
	}
}

// samePolicy compares resolved policies (regexps by source).
func samePolicy(a, b *Policy) bool {
	strip := func(p *Policy) any {
		type rule struct {
			Rule
			M, U string
		}
		type prov struct {
			Name, Group string
			Domains, MX []string
			Knobs       Knobs
			Rules       []rule
		}
		conv := func(rs []Rule) []rule {
			var out []rule
			for _, r := range rs {
				c := rule{Rule: r, M: r.Match.String(), U: r.Unless.String()}
				c.Match, c.Unless = nil, nil
				out = append(out, c)
			}
			return out
		}
		var ps []prov
		for _, pr := range p.Providers {
			ps = append(ps, prov{pr.Name, pr.Group, pr.Domains, pr.MX, pr.Knobs, conv(pr.Rules)})
		}
		return []any{p.Defaults, p.Suppression, conv(p.Rules), ps}
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

func TestDurations(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		out  string
		err  bool
	}{
		{"4h", 4 * time.Hour, "4h", false},
		{"15m", 15 * time.Minute, "15m", false},
		{"5d", 5 * day, "5d", false},
		{"1d12h", 36 * time.Hour, "1d12h", false},
		{"90m", 90 * time.Minute, "1h30m", false},
		{"1h0m30s", time.Hour + 30*time.Second, "1h30s", false},
		{"250ms", 250 * time.Millisecond, "250ms", false},
		{"0", 0, "0s", false},
		{"0s", 0, "0s", false},
		{"", 0, "", true},
		{"4", 0, "", true},
		{"-4h", 0, "", true},
		{"1.5h", 0, "", true},
		{"4 h", 0, "", true},
		{"4w", 0, "", true},
		{"99999999999999999d", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("ParseDuration(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want || FormatDuration(got) != tt.out {
				t.Fatalf("ParseDuration(%q) = %v, %v; format %q; want %v %q", tt.in, got, err, FormatDuration(got), tt.want, tt.out)
			}
		})
	}
}

func TestRates(t *testing.T) {
	tests := []struct {
		in       string
		out      string
		interval time.Duration
		half     string
		err      bool
	}{
		{"300/h", "300/h", 12 * time.Second, "150/h", false},
		{"1/10s", "1/10s", 10 * time.Second, "1/20s", false},
		{"10/s", "10/s", 100 * time.Millisecond, "5/s", false},
		{"1000/h", "1000/h", 3600 * time.Millisecond, "500/h", false},
		{"5/1h", "5/h", 12 * time.Minute, "5/2h", false},
		{"3/d", "3/d", 8 * time.Hour, "3/2d", false},
		{"unlimited", "unlimited", 0, "unlimited", false},
		{"0/h", "", 0, "", true},
		{"10", "", 0, "", true},
		{"x/h", "", 0, "", true},
		{"10/0s", "", 0, "", true},
		{"10/week", "", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseRate(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("ParseRate(%q) = %v, want an error", tt.in, r)
				}
				return
			}
			if err != nil || FormatRate(r) != tt.out || r.Interval() != tt.interval || FormatRate(r.Div(2)) != tt.half {
				t.Fatalf("ParseRate(%q) = %v, %v (interval %v, half %v)", tt.in, r, err, r.Interval(), r.Div(2))
			}
		})
	}
}

// FuzzParse: the loader never panics on any file, reports errors with the file name, and
// whatever it accepts survives show → parse unchanged.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "defaults: {connections: 3}\n", "providers:\n  x:\n    domains: [x.example]\n    rate: 1/10s\n",
		"providers:\n  yahoo:\n    retry: {every: 1h, for: 2h}\n", "rules:\n  - {name: a, code: 4xx, class: greylisted}\n",
		"standalone: true\n", "providers: [\n", `{"providers": {"gmx": {"connections": 2}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			for _, e := range errs {
				if e.File != "fuzz.yaml" && e.File != BuiltinName {
					t.Fatalf("error without the file: %+v", e)
				}
			}
			return
		}
		out, err := p.Show(true)
		if err != nil {
			t.Fatal(err)
		}
		q, err := Parse("show.json", out)
		if err != nil {
			t.Fatalf("show output refused: %v\n%s", err, out)
		}
		if !samePolicy(p, q) {
			t.Fatalf("round trip differs for %q", data)
		}
	})
}

func TestPatternSplit(t *testing.T) {
	tests := []struct {
		src   string
		parts int
		yes   []string
		no    []string
	}{
		{`a|b`, 2, []string{"A", "xbx"}, []string{"c"}},
		{`(a|b)c|d`, 2, []string{"BC", "d"}, []string{"ab"}},
		{`[|]x|\|y`, 2, []string{"|X", "|y"}, []string{"x", "y"}},
		{`[]|]z|q`, 2, []string{"]z", "|z", "q"}, []string{"z"}},
		{`^550 5\.1\.1\b|user unknown`, 2, []string{"550 5.1.1 x", "User Unknown"}, []string{"450 5.1.1"}},
		{`(?s)a.b|c`, 1, []string{"a\nb", "c"}, []string{"ab"}},
		{`(?:x|y)z`, 1, []string{"yz"}, []string{"z"}},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			p, err := CompilePattern(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.parts) != tt.parts {
				t.Errorf("%d parts, want %d", len(p.parts), tt.parts)
			}
			for _, s := range tt.yes {
				if !p.MatchString(s) {
					t.Errorf("%q does not match %q", tt.src, s)
				}
			}
			for _, s := range tt.no {
				if p.MatchString(s) {
					t.Errorf("%q matches %q", tt.src, s)
				}
			}
		})
	}
}

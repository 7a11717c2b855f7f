package spf

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"facteur/relay/relaytest"
)

func spf(rec ...string) relaytest.Zone { return relaytest.Zone{TXT: rec} }

func TestCheckHost(t *testing.T) {
	const v4, v6 = "192.0.2.10", "2001:db8::10"
	zones := map[string]relaytest.Zone{
		"ip4.test":       spf("v=spf1 ip4:192.0.2.10 -all"),
		"cidr.test":      spf("v=spf1 ip4:192.0.2.0/24 -all"),
		"outside.test":   spf("v=spf1 ip4:192.0.3.0/24 -all"),
		"soft.test":      spf("v=spf1 ip4:198.51.100.0/24 ~all"),
		"neutral.test":   spf("v=spf1 ip4:198.51.100.0/24 ?all"),
		"noall.test":     spf("v=spf1 ip4:198.51.100.0/24"),
		"plus.test":      spf("v=spf1 +all"),
		"upper.test":     spf("V=SPF1 IP4:192.0.2.10 -ALL"),
		"ip6.test":       spf("v=spf1 ip6:2001:db8::/32 -all"),
		"ip6narrow.test": spf("v=spf1 ip6:2001:db8::11/128 -all"),
		"v10.test":       spf("v=spf10 ip4:192.0.2.10 -all"),
		"nospf.test":     spf("google-site-verification=abc"),
		"two.test":       spf("v=spf1 -all", "v=spf1 ip4:192.0.2.10 -all"),
		"spaces.test":    spf("v=spf1   ip4:192.0.2.10    -all"),
		"long.test":      spf("v=spf1 " + strings.Repeat("ip4:198.51.100.1 ", 20) + "ip4:192.0.2.10 -all"),

		// include and redirect
		"inc.test":           spf("v=spf1 include:_spf.provider.test -all"),
		"_spf.provider.test": spf("v=spf1 ip4:192.0.2.0/28 -all"),
		"incmiss.test":       spf("v=spf1 include:other.test ~all"),
		"other.test":         spf("v=spf1 -all"),
		"incnone.test":       spf("v=spf1 include:nospf.test -all"),
		"incnx.test":         spf("v=spf1 include:missing.test -all"),
		"nested.test":        spf("v=spf1 include:n1.test -all"),
		"n1.test":            spf("v=spf1 ip4:198.51.100.1 include:n2.test -all"),
		"n2.test":            spf("v=spf1 include:n3.test"),
		"n3.test":            spf("v=spf1 ip4:192.0.2.8/29"),
		"red.test":           spf("v=spf1 redirect=target.test"),
		"target.test":        spf("v=spf1 ip4:192.0.2.10 -all"),
		"redall.test":        spf("v=spf1 -all redirect=target.test"),
		"rednone.test":       spf("v=spf1 redirect=nospf.test"),
		"redfail.test":       spf("v=spf1 ip4:198.51.100.1 redirect=other.test"),
		"incservfail.test":   spf("v=spf1 include:broken.test -all"),
		"broken.test":        {ServFail: true},
		"loop1.test":         spf("v=spf1 include:loop2.test -all"),
		"loop2.test":         spf("v=spf1 include:loop1.test -all"),
		"selfredirect.test":  spf("v=spf1 redirect=selfredirect.test"),
		"twice.test":         spf("v=spf1 include:other.test include:other.test ip4:192.0.2.10 -all"),
		"redtwice.test":      spf("v=spf1 redirect=a.test redirect=b.test"),
		"syntaxlate.test":    spf("v=spf1 +all foo:bar"),
		"badcidr.test":       spf("v=spf1 ip4:192.0.2.0/33 -all"),
		"zerocidr.test":      spf("v=spf1 ip4:192.0.2.0/024 -all"),
		"badip.test":         spf("v=spf1 ip4:2001:db8::1 -all"),
		"badinc.test":        spf("v=spf1 include -all"),
		"badall.test":        spf("v=spf1 all:x"),
		"unknownmod.test":    spf("v=spf1 foo=bar ip4:192.0.2.10 -all"),
		"exp.test":           spf("v=spf1 -all exp=explain.%{d}"),
		"expbad.test":        spf("v=spf1 -all exp=%{c}"),
		"expcinmech.test":    spf("v=spf1 exists:%{c}.x.test -all"),

		// a and mx, with CIDR lengths
		"a.test":         {TXT: []string{"v=spf1 a -all"}, A: []string{v4}},
		"ahost.test":     spf("v=spf1 a:host.a.test/24 -all"),
		"host.a.test":    {A: []string{"192.0.2.200"}},
		"anarrow.test":   spf("v=spf1 a:host.a.test -all"),
		"a6.test":        {TXT: []string{"v=spf1 a//64 -all"}, AAAA: []string{"2001:db8::1"}},
		"adual.test":     {TXT: []string{"v=spf1 a/24//64 -all"}, A: []string{"192.0.2.1"}, AAAA: []string{"2001:db8::1"}},
		"mx.test":        {TXT: []string{"v=spf1 mx -all"}, MX: []relaytest.MX{{Host: "mx1.mx.test", Pref: 10}, {Host: "mx2.mx.test", Pref: 20}}},
		"mx1.mx.test":    {A: []string{"198.51.100.1"}},
		"mx2.mx.test":    {A: []string{v4}},
		"mxcidr.test":    {TXT: []string{"v=spf1 mx:mx.test/24 -all"}},
		"implicit.test":  {TXT: []string{"v=spf1 mx -all"}, A: []string{v4}},
		"manymx.test":    {TXT: []string{"v=spf1 mx -all"}, MX: manyMX(11)},
		"tenmx.test":     {TXT: []string{"v=spf1 mx -all"}, MX: manyMX(10)},
		"ptr.test":       spf("v=spf1 ptr -all"),
		"ptrother.test":  spf("v=spf1 ptr:elsewhere.test -all"),
		"relay.ptr.test": {A: []string{v4}},
		"ptrnofcr.test":  spf("v=spf1 ptr:liar.test -all"),
		"host.liar.test": {A: []string{"198.51.100.9"}},

		// macros
		"ex.test":                          spf("v=spf1 exists:%{i}.allow.test -all"),
		"192.0.2.10.allow.test":            {A: []string{"127.0.0.2"}},
		"rev.test":                         spf("v=spf1 exists:%{ir}.%{v}._spf.rev.test -all"),
		"10.2.0.192.in-addr._spf.rev.test": {A: []string{"127.0.0.2"}},
		"lo.test":                          spf("v=spf1 exists:%{l}.%{o}.users.test -all"),
		"alice.snd.test.users.test":        {A: []string{"127.0.0.2"}},
		"helo.test":                        spf("v=spf1 exists:%{h}.helo.test -all"),
		"relay.example.test.helo.test":     {A: []string{"127.0.0.2"}},
		"a.b.dm.test":                      spf("v=spf1 exists:%{d2}.dom.test -all"),
		"dm.test.dom.test":                 {A: []string{"127.0.0.2"}},
		"x.mi.test":                        spf("v=spf1 include:_spf.%{d2} -all"),
		"_spf.mi.test":                     spf("v=spf1 ip4:192.0.2.10"),
		"sdelim.test":                      spf("v=spf1 exists:%{s1r.@}.sd.test -all"),
		"dash.test":                        spf("v=spf1 exists:%{l1r-}.dash.test -all"),
		"john.dash.test":                   {A: []string{"127.0.0.2"}},
		"v6.test":                          spf("v=spf1 exists:%{ir}.%{v}.v6.test -all"),
		"p.test":                           spf("v=spf1 exists:%{p}.pm.test -all"),
		"relay.ptr.test.pm.test":           {A: []string{"127.0.0.2"}},
		"badmacro.test":                    spf("v=spf1 exists:%{z}.x.test -all"),
		"badpct.test":                      spf("v=spf1 exists:%x.x.test -all"),
		"zeromacro.test":                   spf("v=spf1 exists:%{d0}.x.test -all"),
		"0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.v6.test": {A: []string{"127.0.0.2"}},

		// limits
		"lim10.test":  spf("v=spf1 " + includes(10) + "-all"),
		"lim11.test":  spf("v=spf1 " + includes(11) + "ip4:192.0.2.10 -all"),
		"limmx.test":  spf("v=spf1 " + strings.Repeat("mx:tenmx.test ", 11) + "ip4:192.0.2.10 -all"),
		"limok.test":  spf("v=spf1 ip4:192.0.2.10 " + includes(11) + "-all"),
		"void2.test":  spf("v=spf1 a:nx1.test a:nx2.test -all"),
		"void3.test":  spf("v=spf1 a:nx1.test a:nx2.test exists:nx3.test -all"),
		"voidmx.test": spf("v=spf1 mx:nx1.test mx:nodata.test mx:nx3.test -all"),
		"nodata.test": {},
	}
	for i := range 11 {
		zones[fmt.Sprintf("i%d.lim.test", i+1)] = spf("v=spf1 ip4:198.51.100.1 -all")
	}
	for i := range 11 {
		zones[fmt.Sprintf("mx%d.many.test", i)] = relaytest.Zone{A: []string{"198.51.100.1"}}
	}
	zones[relaytest.DNSReverseName(t, v4)] = relaytest.Zone{PTR: []string{"relay.ptr.test", "host.liar.test"}}
	dns := newDNS(t, zones)

	tests := []struct {
		name    string
		domain  string
		ip      string // default v4
		sender  string
		result  Result
		match   string // when not empty, Match must equal it
		reason  string // when not empty, Reason must contain it
		lookups int    // when not 0, Lookups must equal it
	}{
		{name: "ip4 exact", domain: "ip4.test", result: Pass, match: "ip4:192.0.2.10", lookups: -1},
		{name: "ip4 CIDR /24", domain: "cidr.test", result: Pass, match: "ip4:192.0.2.0/24"},
		{name: "ip4 outside CIDR then -all", domain: "outside.test", result: Fail, match: "-all"},
		{name: "~all softfail", domain: "soft.test", result: SoftFail, match: "~all"},
		{name: "?all neutral", domain: "neutral.test", result: Neutral, match: "?all"},
		{name: "no all: neutral by default", domain: "noall.test", result: Neutral, match: ""},
		{name: "+all passes everyone", domain: "plus.test", result: Pass, match: "+all"},
		{name: "upper case record", domain: "upper.test", result: Pass},
		{name: "several spaces between terms", domain: "spaces.test", result: Pass},
		{name: "record longer than 255 bytes", domain: "long.test", result: Pass},
		{name: "ip6 CIDR /32", domain: "ip6.test", ip: v6, result: Pass, match: "ip6:2001:db8::/32"},
		{name: "ip6 /128 other address", domain: "ip6narrow.test", ip: v6, result: Fail},
		{name: "ip6 term never matches IPv4", domain: "ip6.test", result: Fail},
		{name: "IPv4-mapped client is IPv4", domain: "ip4.test", ip: "::ffff:192.0.2.10", result: Pass},
		{name: "v=spf10 is not SPF", domain: "v10.test", result: None},
		{name: "TXT without SPF", domain: "nospf.test", result: None, reason: "no SPF record"},
		{name: "domain does not exist", domain: "missing.test", result: None, reason: "does not exist"},
		{name: "not a FQDN", domain: "localhost", result: None},
		{name: "two SPF records", domain: "two.test", result: PermError, reason: "2 SPF records"},

		{name: "include passes", domain: "inc.test", result: Pass, match: "include:_spf.provider.test → ip4:192.0.2.0/28", lookups: 1},
		{name: "include fail goes on", domain: "incmiss.test", result: SoftFail, match: "~all"},
		{name: "include of domain without SPF", domain: "incnone.test", result: PermError, reason: "include:nospf.test"},
		{name: "include of missing domain", domain: "incnx.test", result: PermError, reason: "include:missing.test"},
		{name: "nested includes", domain: "nested.test", result: Pass, match: "include:n1.test → include:n2.test → include:n3.test → ip4:192.0.2.8/29", lookups: 3},
		{name: "redirect", domain: "red.test", result: Pass, match: "redirect=target.test → ip4:192.0.2.10", lookups: 1},
		{name: "redirect ignored after all", domain: "redall.test", result: Fail, match: "-all", lookups: -1},
		{name: "redirect to no SPF", domain: "rednone.test", result: PermError, reason: "redirect=nospf.test"},
		{name: "redirect result is the result", domain: "redfail.test", result: Fail, match: "redirect=other.test → -all"},
		{name: "include temporary failure", domain: "incservfail.test", result: TempError, reason: "SERVFAIL"},
		{name: "include loop", domain: "loop1.test", result: PermError, reason: "loop: loop1.test → loop2.test → loop1.test"},
		{name: "redirect to itself", domain: "selfredirect.test", result: PermError, reason: "loop"},
		{name: "same include twice is no loop", domain: "twice.test", result: Pass, lookups: 2},
		{name: "two redirects", domain: "redtwice.test", result: PermError, reason: "redirect= appears twice"},
		{name: "syntax error after a match", domain: "syntaxlate.test", result: PermError, reason: `unknown mechanism "foo"`},
		{name: "ip4 prefix over 32", domain: "badcidr.test", result: PermError, reason: "/33"},
		{name: "prefix with leading zero", domain: "zerocidr.test", result: PermError, reason: "/024"},
		{name: "IPv6 in ip4", domain: "badip.test", result: PermError, reason: "not an IPv4 address"},
		{name: "include without domain", domain: "badinc.test", result: PermError, reason: "needs a domain"},
		{name: "all with argument", domain: "badall.test", result: PermError},
		{name: "unknown modifier ignored", domain: "unknownmod.test", result: Pass},
		{name: "exp with macro", domain: "exp.test", result: Fail},
		{name: "%{c} in exp= domain", domain: "expbad.test", result: PermError, reason: "only in explanation text"},
		{name: "%{c} in a mechanism", domain: "expcinmech.test", result: PermError, reason: "only in explanation text"},

		{name: "a of the domain", domain: "a.test", result: Pass, match: "a"},
		{name: "a:host/24 widens", domain: "ahost.test", result: Pass, match: "a:host.a.test/24"},
		{name: "a:host exact misses", domain: "anarrow.test", result: Fail},
		{name: "a//64 for IPv6", domain: "a6.test", ip: v6, result: Pass},
		{name: "a/24//64 IPv4 side", domain: "adual.test", result: Pass},
		{name: "a/24//64 IPv6 side", domain: "adual.test", ip: v6, result: Pass},
		{name: "mx second exchanger", domain: "mx.test", result: Pass, match: "mx"},
		{name: "mx:domain/24", domain: "mxcidr.test", ip: "198.51.100.77", result: Pass},
		{name: "mx has no implicit MX", domain: "implicit.test", result: Fail},
		{name: "mx with 11 exchangers", domain: "manymx.test", result: PermError, reason: "11 exchangers"},
		{name: "mx with 10 exchangers", domain: "tenmx.test", result: Fail},
		{name: "ptr validated name", domain: "ptr.test", result: Pass, match: "ptr"},
		{name: "ptr other domain", domain: "ptrother.test", result: Fail},
		{name: "ptr name not resolving back", domain: "ptrnofcr.test", result: Fail},

		{name: "%{i}", domain: "ex.test", result: Pass, match: "exists:%{i}.allow.test"},
		{name: "%{ir}.%{v}", domain: "rev.test", result: Pass},
		{name: "%{l}.%{o} from sender", domain: "lo.test", sender: "alice@snd.test", result: Pass},
		{name: "%{h}", domain: "helo.test", result: Pass},
		{name: "%{d2}", domain: "a.b.dm.test", result: Pass},
		{name: "macro in include", domain: "x.mi.test", result: Pass, match: "include:_spf.%{d2} → ip4:192.0.2.10"},
		{name: "%{l1r-}", domain: "dash.test", sender: "john-smith@dash.test", result: Pass},
		{name: "%{i} IPv6 nibbles", domain: "v6.test", ip: v6, result: Pass},
		{name: "%{p} validated PTR", domain: "p.test", result: Pass},
		{name: "%{s} with a bad delimiter", domain: "sdelim.test", result: PermError, reason: "bad delimiter"},
		{name: "unknown macro letter", domain: "badmacro.test", result: PermError, reason: "unknown macro letter"},
		{name: "bare percent", domain: "badpct.test", result: PermError},
		{name: "zero part count", domain: "zeromacro.test", result: PermError, reason: "1 or more"},

		{name: "10 lookups is the limit", domain: "lim10.test", result: Fail, lookups: 10},
		{name: "11 lookups permerror", domain: "lim11.test", result: PermError, reason: "more than 10 DNS lookups", lookups: 11},
		{name: "11 mx lookups permerror", domain: "limmx.test", result: PermError, reason: "more than 10 DNS lookups"},
		{name: "match before the limit", domain: "limok.test", result: Pass, lookups: -1},
		{name: "two void lookups allowed", domain: "void2.test", result: Fail},
		{name: "third void lookup", domain: "void3.test", result: PermError, reason: "void lookups"},
		{name: "void mx lookups", domain: "voidmx.test", result: PermError, reason: "void lookups"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ip := netip.MustParseAddr(v4)
			if tc.ip != "" {
				ip = netip.MustParseAddr(tc.ip)
			}
			out := CheckHost(t.Context(), dns, Query{IP: ip, Domain: tc.domain, Sender: tc.sender, Helo: "relay.example.test"})
			if out.Result != tc.result {
				t.Fatalf("result %s, want %s (match %q, reason %q)", out.Result, tc.result, out.Match, out.Reason)
			}
			if tc.match != "" && out.Match != tc.match {
				t.Errorf("match %q, want %q", out.Match, tc.match)
			}
			if tc.match == "" && tc.result == Neutral && out.Match != "" {
				t.Errorf("match %q, want none", out.Match)
			}
			if tc.reason != "" && !strings.Contains(out.Reason, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", out.Reason, tc.reason)
			}
			switch {
			case tc.lookups > 0 && out.Lookups != tc.lookups:
				t.Errorf("lookups %d, want %d", out.Lookups, tc.lookups)
			case tc.lookups < 0 && out.Lookups != 0:
				t.Errorf("lookups %d, want 0", out.Lookups)
			}
		})
	}
}

func includes(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "include:i%d.lim.test ", i+1)
	}
	return b.String()
}

func manyMX(n int) []relaytest.MX {
	var mx []relaytest.MX
	for i := range n {
		mx = append(mx, relaytest.MX{Host: fmt.Sprintf("mx%d.many.test", i), Pref: uint16(i)})
	}
	return mx
}

// TestParse covers syntax alone: a receiver rejects the whole record for
// one bad term, before evaluating anything.
func TestParse(t *testing.T) {
	tests := []struct {
		record string
		err    string // "" means valid
	}{
		{"v=spf1", ""},
		{"v=spf1 -all", ""},
		{"v=spf1 a mx ptr ?all", ""},
		{"v=spf1 a:example.com/24//64 mx/28 ~all", ""},
		{"v=spf1 include:_spf.google.com include:%{d}.x.example ~all", ""},
		{"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all", ""},
		{"v=spf1 ip6:2001:db8::/32 ip4:0.0.0.0/0", ""},
		{"v=spf1 redirect=_spf.example.com", ""},
		{"v=spf1 exp=%{d}.example.com -all", ""},
		{"v=spf1 exp=%{r}.example.com -all", "only in explanation text"},
		{"v=spf1 foo.bar=baz -all", ""},
		{"spf1 -all", "starts with"},
		{"v=spf1-all", "starts with"},
		{"v=spf1 ip4:192.0.2.1/", "prefix length"},
		{"v=spf1 ip6:2001:db8::/129", "prefix length"},
		{"v=spf1 ip6:192.0.2.1", "not an IPv6"},
		{"v=spf1 ip4", "needs an address"},
		{"v=spf1 a:", "want a"},
		{"v=spf1 a:example", "fully qualified"},
		{"v=spf1 mx:example.123", "top-level label"},
		{"v=spf1 ptr:", "want ptr"},
		{"v=spf1 exists", "needs a domain"},
		{"v=spf1 exists:%{i", "unterminated"},
		{"v=spf1 exists:%{}.example.com", "empty macro"},
		{"v=spf1 exists:%{i}.exa\x01mple.com", "not allowed"},
		{"v=spf1 exists:abc%", "at the end"},
		{"v=spf1 exp=a.example.com exp=b.example.com", "twice"},
		{"v=spf1 -all foo=%{q}", "unknown macro"},
		{"v=spf1 ~include", "needs a domain"},
		{"v=spf1 !all", "unknown mechanism"},
	}
	for _, tc := range tests {
		t.Run(tc.record, func(t *testing.T) {
			err := Parse(tc.record)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.err != "" && err == nil:
				t.Fatalf("no error, want one containing %q", tc.err)
			case tc.err != "" && !strings.Contains(err.Error(), tc.err):
				t.Fatalf("error %q, want it to contain %q", err, tc.err)
			}
		})
	}
}

// FuzzParse: published records are untrusted; the parser must never
// panic, and a record it accepts must evaluate without a syntax error.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"v=spf1 -all", "v=spf1 a:%{ir}.x.example/24//64 mx redirect=%{d2}", "v=spf1 exists:%{L5r-_}.%{v}.x", "v=spf1 ip6:::1/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rec string) {
		r, err := parse(rec)
		if err != nil {
			return
		}
		e := &eval{ip: netip.MustParseAddr("192.0.2.1"), sender: "a@b.example", local: "a", senderDomain: "b.example", helo: "h.example"}
		for _, m := range r.mechanisms {
			if m.domain != "" {
				if _, err := walkMacros(m.domain, func(mc macro) (string, error) { return e.macroValue(mc, "d.example"), nil }); err != nil {
					t.Fatalf("accepted %q but its domain %q does not expand: %v", rec, m.domain, err)
				}
			}
		}
	})
}

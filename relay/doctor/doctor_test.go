package doctor

import (
	"bytes"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"facteur/dkim"
	"facteur/relay/config"
	"facteur/relay/relaytest"
	"facteur/relay/resolver"
)

// world is a domain set up right: SPF, DKIM, DMARC, FCrDNS, unlisted.
type world struct {
	zones map[string]relaytest.Zone
	opts  Options
}

// newWorld generates its keys once per call: callers share one world's
// files and copy its maps and options.
func newWorld(t *testing.T) world {
	t.Helper()
	dir := t.TempDir()
	edPEM, edValue, err := dkim.Keygen(dkim.AlgorithmEd25519, 0)
	if err != nil {
		t.Fatal(err)
	}
	edPath := filepath.Join(dir, "ed.key")
	if err := dkim.WriteKey(edPath, edPEM); err != nil {
		t.Fatal(err)
	}
	rsaPEM, rsaValue, err := dkim.Keygen(dkim.AlgorithmRSA, 0)
	if err != nil {
		t.Fatal(err)
	}
	rsaPath := filepath.Join(dir, "rsa.key")
	if err := dkim.WriteKey(rsaPath, rsaPEM); err != nil {
		t.Fatal(err)
	}
	return world{
		zones: map[string]relaytest.Zone{
			"example.test":                              {TXT: []string{"v=spf1 include:_spf.example.test -all"}},
			"_spf.example.test":                         {TXT: []string{"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/64"}},
			"ed._domainkey.example.test":                {TXT: []string{edValue}},
			"rsa._domainkey.example.test":               {TXT: []string{rsaValue}},
			"_dmarc.example.test":                       {TXT: []string{"v=DMARC1; p=quarantine; rua=mailto:dmarc@example.test"}},
			relaytest.DNSReverseName(t, "192.0.2.10"):   {PTR: []string{"Mail.Example.Test."}},
			relaytest.DNSReverseName(t, "2001:db8::10"): {PTR: []string{"mail.example.test"}},
			"mail.example.test":                         {A: []string{"192.0.2.10"}, AAAA: []string{"2001:db8::10"}},
			"other.test":                                {A: []string{"198.51.100.1"}},
			"bl.test":                                   {},
		},
		opts: Options{
			Domain:   "example.test",
			IP:       netip.MustParseAddr("192.0.2.10"),
			Hostname: "mail.example.test.",
			DKIM: []config.DKIMKey{
				{Domain: "example.test", Selector: "ed", Key: edPath},
				{Domain: "Example.Test.", Selector: "rsa", Key: rsaPath, Algorithm: "rsa"},
				{Domain: "elsewhere.test", Selector: "x", Key: edPath},
			},
			DNSBL: []string{"bl.test"},
		},
	}
}

func TestRun(t *testing.T) {
	type want struct {
		check  string
		status Status
		text   string // in the detail or the fix of one finding of check with status
	}
	tests := []struct {
		name   string
		change func(w *world)
		want   []want
	}{
		{
			name:   "all good",
			change: func(w *world) {},
			want: []want{
				{CheckSPF, OK, "through include:_spf.example.test → ip4:192.0.2.0/24"},
				{CheckDKIM, OK, "ed._domainkey.example.test publishes the public half"},
				{CheckDKIM, OK, "rsa._domainkey.example.test publishes the public half"},
				{CheckDMARC, OK, "quarantine"},
				{CheckPTR, OK, "matches the relay's hostname"},
				{CheckDNSBL, OK, "bl.test: 192.0.2.10 is not listed"},
			},
		},
		{
			name:   "IPv6 all good",
			change: func(w *world) { w.opts.IP = netip.MustParseAddr("2001:db8::10") },
			want: []want{
				{CheckSPF, OK, "ip6:2001:db8::/64"},
				{CheckPTR, OK, "forward-confirmed"},
				{CheckDNSBL, OK, "not listed"},
			},
		},
		{
			name: "pool IPs each match their EHLO",
			change: func(w *world) {
				w.zones[relaytest.DNSReverseName(t, "192.0.2.11")] = relaytest.Zone{PTR: []string{"out11.example.test"}}
				w.zones["out11.example.test"] = relaytest.Zone{A: []string{"192.0.2.11"}}
				w.opts.Sources = []Source{{Addr: netip.MustParseAddr("192.0.2.10"), Pool: "shop"}, {Addr: netip.MustParseAddr("192.0.2.11"), EHLO: "out11.example.test", Pool: "shop"}}
			},
			want: []want{
				{CheckPTR, OK, "pool shop: 192.0.2.10 has PTR mail.example.test"},
				{CheckPTR, OK, "pool shop: 192.0.2.11 has PTR out11.example.test"},
			},
		},
		{
			name: "pool IP whose PTR is not its EHLO",
			change: func(w *world) {
				w.zones[relaytest.DNSReverseName(t, "192.0.2.11")] = relaytest.Zone{PTR: []string{"out11.example.test"}}
				w.zones["out11.example.test"] = relaytest.Zone{A: []string{"192.0.2.11"}}
				w.opts.Sources = []Source{{Addr: netip.MustParseAddr("192.0.2.11"), EHLO: "wrong.example.test", Pool: "shop"}}
			},
			want: []want{
				{CheckPTR, OK, "192.0.2.10 has PTR"},
				{CheckPTR, Fail, `pool shop: 192.0.2.11 resolves to out11.example.test and back, but the relay introduces itself as "wrong.example.test"`},
			},
		},
		{
			name:   "IPv6 without PTR",
			change: func(w *world) { w.opts.IP = netip.MustParseAddr("2001:db8::11") },
			want:   []want{{CheckPTR, Fail, "Gmail refuses all mail from an IPv6 address without a PTR"}},
		},
		{
			name: "no IP known",
			change: func(w *world) {
				w.opts.IP = netip.Addr{}
			},
			want: []want{
				{CheckSPF, Warn, "cannot be checked"},
				{CheckPTR, Warn, "outbound IP address is unknown"},
				{CheckDNSBL, Warn, "bl.test: cannot check"},
				{CheckDKIM, OK, "ed._domainkey"},
			},
		},
		{
			name: "no IP and no SPF",
			change: func(w *world) {
				w.opts.IP = netip.Addr{}
				delete(w.zones, "example.test")
			},
			want: []want{{CheckSPF, Fail, "YOUR.OUTBOUND.IP"}},
		},
		{
			name:   "SPF +all",
			change: func(w *world) { w.zones["example.test"] = relaytest.Zone{TXT: []string{"v=spf1 a +all"}} },
			want:   []want{{CheckSPF, Warn, `example.test. IN TXT "v=spf1 ip4:192.0.2.10 a ~all"`}},
		},
		{
			name: "SPF passes early but exceeds the lookup limit",
			change: func(w *world) {
				w.zones["example.test"] = relaytest.Zone{TXT: []string{"v=spf1 ip4:192.0.2.10 a:x1.test a:x2.test a:x3.test -all"}}
			},
			want: []want{{CheckSPF, Warn, "for an address it does not list, the record is a permerror: more than 2 lookups found no record"}},
		},
		{
			name:   "SPF neutral",
			change: func(w *world) { w.zones["example.test"] = relaytest.Zone{TXT: []string{"v=spf1 ip4:198.51.100.1"}} },
			want:   []want{{CheckSPF, Fail, "no term matches it"}},
		},
		{
			name:   "SPF temperror",
			change: func(w *world) { w.zones["_spf.example.test"] = relaytest.Zone{ServFail: true} },
			want:   []want{{CheckSPF, Warn, "temperror"}},
		},
		{
			name: "SPF syntax error",
			change: func(w *world) {
				w.zones["example.test"] = relaytest.Zone{TXT: []string{"v=spf1 ip4:192.0.2.10 -all include"}}
			},
			want: []want{{CheckSPF, Fail, `v=spf1 ip4:192.0.2.10 ~all`}},
		},
		{
			name: "no DKIM key for the domain",
			change: func(w *world) {
				w.opts.DKIM = w.opts.DKIM[2:]
			},
			want: []want{{CheckDKIM, Warn, "goes out unsigned"}},
		},
		{
			name: "DKIM key of the parent with subdomains",
			change: func(w *world) {
				w.opts.Domain = "news.example.test"
				w.opts.DKIM[0].Subdomains = true
				w.zones["news.example.test"] = relaytest.Zone{TXT: []string{"v=spf1 ip4:192.0.2.10 -all"}}
			},
			want: []want{
				{CheckDKIM, OK, "ed._domainkey.example.test"},
				{CheckDMARC, OK, "the one of example.test applies"},
			},
		},
		{
			name: "DKIM parent key without subdomains",
			change: func(w *world) {
				w.opts.Domain = "news.example.test"
				w.zones["news.example.test"] = relaytest.Zone{TXT: []string{"v=spf1 ip4:192.0.2.10 -all"}}
			},
			want: []want{{CheckDKIM, Warn, "no DKIM key is configured for news.example.test"}},
		},
		{
			name: "DKIM record revoked",
			change: func(w *world) {
				w.zones["ed._domainkey.example.test"] = relaytest.Zone{TXT: []string{"v=DKIM1; k=ed25519; p="}}
			},
			want: []want{{CheckDKIM, Fail, "revoked"}},
		},
		{
			name: "DKIM record with the other key",
			change: func(w *world) {
				w.zones["ed._domainkey.example.test"] = w.zones["rsa._domainkey.example.test"]
			},
			want: []want{{CheckDKIM, Fail, "k=rsa key, the configured key is ed25519"}},
		},
		{
			name: "DKIM key in testing mode",
			change: func(w *world) {
				z := w.zones["ed._domainkey.example.test"]
				w.zones["ed._domainkey.example.test"] = relaytest.Zone{TXT: []string{"t=y; " + z.TXT[0]}}
			},
			want: []want{{CheckDKIM, Warn, "t=y"}},
		},
		{
			name:   "DKIM key file missing",
			change: func(w *world) { w.opts.DKIM[0].Key = filepath.Join(t.TempDir(), "none.key") },
			want:   []want{{CheckDKIM, Warn, "cannot compare ed._domainkey.example.test"}},
		},
		{
			name:   "DKIM algorithm misconfigured",
			change: func(w *world) { w.opts.DKIM[0].Algorithm = "rsa" },
			want:   []want{{CheckDKIM, Fail, "the config says algorithm rsa"}},
		},
		{
			name: "DMARC without p=",
			change: func(w *world) {
				w.zones["_dmarc.example.test"] = relaytest.Zone{TXT: []string{"v=DMARC1; rua=mailto:a@example.test"}}
			},
			want: []want{{CheckDMARC, Fail, "missing a 'p' parameter"}},
		},
		{
			name:   "DMARC p=none",
			change: func(w *world) { w.zones["_dmarc.example.test"] = relaytest.Zone{TXT: []string{"v=DMARC1; p=none"}} },
			want:   []want{{CheckDMARC, OK, "only monitors"}},
		},
		{
			name: "two DMARC records",
			change: func(w *world) {
				w.zones["_dmarc.example.test"] = relaytest.Zone{TXT: []string{"v=DMARC1; p=none", "v=DMARC1; p=reject"}}
			},
			want: []want{{CheckDMARC, Fail, `_dmarc.example.test. IN TXT "v=DMARC1; p=none; rua=mailto:postmaster@example.test"`}},
		},
		{
			name:   "DMARC lookup fails",
			change: func(w *world) { w.zones["_dmarc.example.test"] = relaytest.Zone{ServFail: true} },
			want:   []want{{CheckDMARC, Warn, "could not read"}},
		},
		{
			name:   "PTR lookup fails",
			change: func(w *world) { w.zones[relaytest.DNSReverseName(t, "192.0.2.10")] = relaytest.Zone{ServFail: true} },
			want:   []want{{CheckPTR, Warn, "could not look up"}},
		},
		{
			name: "PTR not resolving back",
			change: func(w *world) {
				w.zones[relaytest.DNSReverseName(t, "192.0.2.10")] = relaytest.Zone{PTR: []string{"other.test"}}
			},
			want: []want{{CheckPTR, Fail, "does not resolve back"}},
		},
		{
			name: "DNSBL listed with reason",
			change: func(w *world) {
				w.zones["10.2.0.192.bl.test"] = relaytest.Zone{A: []string{"127.0.0.2"}, TXT: []string{"spam seen from 192.0.2.10"}}
			},
			want: []want{{CheckDNSBL, Fail, "Reason given: spam seen from 192.0.2.10"}},
		},
		{
			name: "DNSBL IPv6 listing",
			change: func(w *world) {
				w.opts.IP = netip.MustParseAddr("2001:db8::10")
				w.zones["0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test"] = relaytest.Zone{A: []string{"127.0.0.4"}}
			},
			want: []want{{CheckDNSBL, Fail, "LISTED (127.0.0.4)"}},
		},
		{
			name:   "DNSBL refused (Spamhaus public resolver code)",
			change: func(w *world) { w.zones["10.2.0.192.bl.test"] = relaytest.Zone{A: []string{"127.255.255.254"}} },
			want:   []want{{CheckDNSBL, Warn, "refused the query"}},
		},
		{
			name:   "DNSBL answer outside 127/8",
			change: func(w *world) { w.zones["10.2.0.192.bl.test"] = relaytest.Zone{A: []string{"203.0.113.1"}} },
			want:   []want{{CheckDNSBL, Warn, "not a block-list code"}},
		},
		{
			name:   "DNSBL server failure",
			change: func(w *world) { w.zones["10.2.0.192.bl.test"] = relaytest.Zone{ServFail: true} },
			want:   []want{{CheckDNSBL, Warn, "could not check"}},
		},
	}
	base := newWorld(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := world{zones: maps.Clone(base.zones), opts: base.opts}
			w.opts.DKIM = slices.Clone(base.opts.DKIM)
			tc.change(&w)
			fs := Run(t.Context(), newDNS(t, w.zones), w.opts)
			t.Log("\n" + dump(fs))
			for _, wt := range tc.want {
				found := false
				for _, f := range fs {
					if f.Check == wt.check && f.Status == wt.status && strings.Contains(f.Detail+"\n"+f.Fix, wt.text) {
						found = true
					}
				}
				if !found {
					t.Errorf("no %s finding with status %s mentioning %q in:\n%s", wt.check, wt.status, wt.text, dump(fs))
				}
			}
			wantFail := false
			for _, wt := range tc.want {
				wantFail = wantFail || wt.status == Fail
			}
			if !wantFail && Failed(fs) {
				t.Errorf("unexpected failure:\n%s", dump(fs))
			}
			if wantFail != Failed(fs) {
				t.Errorf("Failed = %v, want %v", Failed(fs), wantFail)
			}
		})
	}
}

func dump(fs []Finding) string {
	var b bytes.Buffer
	WriteText(&b, fs)
	return b.String()
}

func TestWriteText(t *testing.T) {
	fs := []Finding{
		{Check: CheckSPF, Status: OK, Detail: "fine"},
		{Check: CheckDNSBL, Status: Fail, Detail: "a: listed", Fix: "delist"},
		{Check: CheckDNSBL, Status: Warn, Detail: "b: could not check"},
	}
	var b bytes.Buffer
	if err := WriteText(&b, fs); err != nil {
		t.Fatal(err)
	}
	want := `== SPF
OK    fine

== DNS block lists
FAIL  a: listed
      fix: delist
WARN  b: could not check

1 problem, 1 warning.
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestTXTRecordSplitsLongValues(t *testing.T) {
	long := strings.Repeat("a", 300)
	got := txtRecord("example.test.", `v="x\`+long)
	want := `example.test. IN TXT "v=\"x\\` + strings.Repeat("a", 250) + `" "` + strings.Repeat("a", 50) + `"`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestCheckHostname(t *testing.T) {
	for h, ok := range map[string]bool{"web1.example.com": true, "web1.example.com.": true, "vm": false, "localhost": false, "facteur.localhost": false, "": false, "a..b": false} {
		f := checkHostname(h)
		if (f.Status == OK) != ok || f.Check != CheckHostname || (!ok && f.Fix == "") {
			t.Errorf("checkHostname(%q) = %+v, want ok=%v", h, f, ok)
		}
	}
}

// newDNS serves zones on a loopback DNS server and returns the doctor's DNS
// over facteur's resolver, as the command builds it.
func newDNS(t *testing.T, zones map[string]relaytest.Zone) *resolver.Resolver {
	t.Helper()
	srv := relaytest.NewDNS(t, zones)
	r, err := resolver.New(resolver.Options{Server: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

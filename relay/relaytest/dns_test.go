package relaytest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsAsk sends one query over network with miekg/dns's client, without EDNS0
// (so UDP answers are cut at 512 bytes).
func dnsAsk(t *testing.T, srv *DNSServer, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.ExchangeContext(t.Context(), m, srv.Addr())
	if err != nil {
		t.Fatalf("%s %s over %s: %v", dns.TypeToString[qtype], name, network, err)
	}
	return resp
}

func TestDNSAnswers(t *testing.T) {
	srv := NewDNS(t, map[string]Zone{
		"Example.ORG":                  {MX: []MX{{"mx1.example.org", 10}, {"mx2.example.org.", 20}}, TXT: []string{"v=spf1 -all"}, TTL: 60},
		"mx1.example.org":              {A: []string{"127.0.0.2"}, AAAA: []string{"2001:db8::2"}},
		"alias.example":                {CNAME: "mx1.example.org"},
		"null.example":                 {NullMX: true},
		"fail.example":                 {ServFail: true},
		"refuse.example":               {Refused: true},
		"gone.example":                 {NXDomain: true, TTL: 30},
		DNSReverseName(t, "127.0.0.2"): {PTR: []string{"mx1.example.org"}},
	})
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string // answers in presentation format, minus the header
		soa   bool     // an SOA in the authority section (negative answer)
	}{
		{"example.org.", dns.TypeMX, dns.RcodeSuccess, []string{"10 mx1.example.org.", "20 mx2.example.org."}, false},
		{"EXAMPLE.org.", dns.TypeTXT, dns.RcodeSuccess, []string{`"v=spf1 -all"`}, false},
		{"mx1.example.org.", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.2"}, false},
		{"mx1.example.org.", dns.TypeAAAA, dns.RcodeSuccess, []string{"2001:db8::2"}, false},
		{"mx1.example.org.", dns.TypeMX, dns.RcodeSuccess, nil, true},
		{"alias.example.", dns.TypeA, dns.RcodeSuccess, []string{"mx1.example.org.", "127.0.0.2"}, false},
		{"null.example.", dns.TypeMX, dns.RcodeSuccess, []string{"0 ."}, false},
		{"fail.example.", dns.TypeMX, dns.RcodeServerFailure, nil, false},
		{"refuse.example.", dns.TypeA, dns.RcodeRefused, nil, false},
		{"gone.example.", dns.TypeMX, dns.RcodeNameError, nil, true},
		{"unknown.example.", dns.TypeMX, dns.RcodeNameError, nil, true},
		{"2.0.0.127.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"mx1.example.org."}, false},
	}
	for _, tt := range tests {
		t.Run(dns.TypeToString[tt.qtype]+" "+tt.name, func(t *testing.T) {
			resp := dnsAsk(t, srv, "udp", tt.name, tt.qtype)
			if resp.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			var got []string
			for _, rr := range resp.Answer {
				got = append(got, strings.TrimPrefix(rr.String(), rr.Header().String()))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("answer %q, want %q", got, tt.want)
			}
			hasSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == dns.TypeSOA
			if hasSOA != tt.soa {
				t.Errorf("authority %v, want SOA: %v", resp.Ns, tt.soa)
			}
		})
	}
}

func TestDNSTTL(t *testing.T) {
	srv := NewDNS(t, map[string]Zone{
		"ttl.example":     {A: []string{"127.0.0.3"}, TTL: 42},
		"default.example": {A: []string{"127.0.0.4"}},
		"gone.example":    {NXDomain: true, TTL: 30},
	})
	if got := dnsAsk(t, srv, "udp", "ttl.example.", dns.TypeA).Answer[0].Header().Ttl; got != 42 {
		t.Errorf("TTL %d, want 42", got)
	}
	if got := dnsAsk(t, srv, "udp", "default.example.", dns.TypeA).Answer[0].Header().Ttl; got != DNSDefaultTTL {
		t.Errorf("TTL %d, want %d", got, DNSDefaultTTL)
	}
	soa := dnsAsk(t, srv, "udp", "gone.example.", dns.TypeA).Ns[0].(*dns.SOA)
	if soa.Minttl != 30 || soa.Hdr.Ttl != 30 {
		t.Errorf("negative TTL %d/%d, want 30", soa.Hdr.Ttl, soa.Minttl)
	}
}

func TestDNSTruncationAndTCP(t *testing.T) {
	long := strings.Repeat("k", 1000) + `\"` + strings.Repeat("p", 999)
	var mx []MX
	for i := range 40 {
		mx = append(mx, MX{Host: "a-rather-long-exchanger-name-" + strings.Repeat("x", i%10) + ".example.net", Pref: uint16(i)})
	}
	srv := NewDNS(t, map[string]Zone{
		"dkim._domainkey.example": {TXT: []string{long}},
		"many.example":            {MX: mx},
	})
	udp := dnsAsk(t, srv, "udp", "dkim._domainkey.example.", dns.TypeTXT)
	if !udp.Truncated {
		t.Fatalf("UDP answer of %d bytes not truncated", udp.Len())
	}
	tcp := dnsAsk(t, srv, "tcp", "dkim._domainkey.example.", dns.TypeTXT)
	if tcp.Truncated || len(tcp.Answer) != 1 {
		t.Fatalf("TCP answer truncated=%v with %d records", tcp.Truncated, len(tcp.Answer))
	}
	txt := tcp.Answer[0].(*dns.TXT).Txt
	if len(txt) != 8 {
		t.Errorf("%d character-strings, want 8 (2001 bytes in 255-byte pieces)", len(txt))
	}
	if udp := dnsAsk(t, srv, "udp", "many.example.", dns.TypeMX); !udp.Truncated {
		t.Errorf("40 MX over UDP not truncated")
	}
	if tcp := dnsAsk(t, srv, "tcp", "many.example.", dns.TypeMX); len(tcp.Answer) != 40 {
		t.Errorf("TCP: %d MX, want 40", len(tcp.Answer))
	}
	want := []DNSQuery{
		{"TXT", "dkim._domainkey.example.", "udp"},
		{"TXT", "dkim._domainkey.example.", "tcp"},
		{"MX", "many.example.", "udp"},
		{"MX", "many.example.", "tcp"},
	}
	if got := srv.QueryLog(); !slices.Equal(got, want) {
		t.Errorf("query log %v, want %v", got, want)
	}
}

func TestDNSSetDeleteAndLog(t *testing.T) {
	srv := NewDNS(t, nil)
	if rc := dnsAsk(t, srv, "udp", "late.example.", dns.TypeA).Rcode; rc != dns.RcodeNameError {
		t.Fatalf("before Set: %s, want NXDOMAIN", dns.RcodeToString[rc])
	}
	srv.Set("late.example", Zone{A: []string{"127.0.0.9"}})
	if resp := dnsAsk(t, srv, "tcp", "LATE.example.", dns.TypeA); len(resp.Answer) != 1 {
		t.Fatalf("after Set: %v", resp.Answer)
	}
	srv.Delete("late.example.")
	if rc := dnsAsk(t, srv, "udp", "late.example.", dns.TypeA).Rcode; rc != dns.RcodeNameError {
		t.Fatalf("after Delete: %s, want NXDOMAIN", dns.RcodeToString[rc])
	}
	want := []string{"A late.example.", "A LATE.example.", "A late.example."}
	if got := srv.Queries(); !slices.Equal(got, want) {
		t.Errorf("Queries() = %q, want %q", got, want)
	}
	srv.ResetQueries()
	if got := srv.Queries(); len(got) != 0 {
		t.Errorf("after ResetQueries: %q", got)
	}
}

func TestDNSTimeoutAndBlock(t *testing.T) {
	release := make(chan struct{})
	srv := NewDNS(t, map[string]Zone{
		"silent.example":  {Timeout: true},
		"blocked.example": {A: []string{"127.0.0.5"}, Block: release},
	})
	m := new(dns.Msg)
	m.SetQuestion("silent.example.", dns.TypeA)
	c := &dns.Client{Timeout: 50 * time.Millisecond}
	if _, _, err := c.ExchangeContext(t.Context(), m, srv.Addr()); err == nil {
		t.Errorf("Timeout zone answered")
	}

	got := make(chan *dns.Msg, 1)
	go func() {
		m := new(dns.Msg)
		m.SetQuestion("blocked.example.", dns.TypeA)
		resp, _, err := (&dns.Client{Timeout: 10 * time.Second}).Exchange(m, srv.Addr())
		if err != nil {
			t.Errorf("blocked query: %v", err)
		}
		got <- resp
	}()
	close(release)
	if resp := <-got; resp != nil && len(resp.Answer) != 1 {
		t.Errorf("after release: %v", resp.Answer)
	}
}

func TestDNSBadZone(t *testing.T) {
	tests := []struct {
		name string
		zone Zone
	}{
		{"A not IPv4", Zone{A: []string{"2001:db8::1"}}},
		{"A garbage", Zone{A: []string{"127.0.0"}}},
		{"AAAA not IPv6", Zone{AAAA: []string{"127.0.0.1"}}},
		{"MX host with empty label", Zone{MX: []MX{{"mx..example", 10}}}},
		{"empty PTR", Zone{PTR: []string{""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkZone("bad.example", tt.zone); err == nil {
				t.Errorf("checkZone accepted %+v", tt.zone)
			}
		})
	}
	if err := checkZone("good.example", Zone{A: []string{"127.0.0.1"}, MX: []MX{{"mx.example", 1}}}); err != nil {
		t.Errorf("checkZone rejected a good zone: %v", err)
	}
}

package relaytest

import (
	"testing"

	"github.com/miekg/dns"
)

// Zones marked Secure answer with AD, as a validating resolver does; TLSA
// records are served; a typo in TLSA data fails loudly.
func TestDNSSecureAndTLSA(t *testing.T) {
	srv := NewDNS(t, map[string]Zone{
		"signed.test":          {A: []string{"192.0.2.1"}, Secure: true},
		"unsigned.test":        {A: []string{"192.0.2.2"}},
		"alias.test":           {CNAME: "signed.test"},
		"_25._tcp.signed.test": {TLSA: []TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: "ABCD"}}, Secure: true},
		"_25._tcp.nodata.test": {Secure: true},
	})
	tests := []struct {
		name  string
		qtype uint16
		ad    bool
		n     int
		rcode int
	}{
		{"signed.test.", dns.TypeA, true, 1, dns.RcodeSuccess},
		{"unsigned.test.", dns.TypeA, false, 1, dns.RcodeSuccess},
		{"alias.test.", dns.TypeA, false, 2, dns.RcodeSuccess}, // an unsigned link in the chain
		{"_25._tcp.signed.test.", dns.TypeTLSA, true, 1, dns.RcodeSuccess},
		{"_25._tcp.nodata.test.", dns.TypeTLSA, true, 0, dns.RcodeSuccess},
		{"nowhere.test.", dns.TypeTLSA, false, 0, dns.RcodeNameError},
	}
	for _, tt := range tests {
		resp := dnsAsk(t, srv, "udp", tt.name, tt.qtype)
		if resp.AuthenticatedData != tt.ad || len(resp.Answer) != tt.n || resp.Rcode != tt.rcode {
			t.Errorf("%s %s: AD=%v answers=%d rcode=%d, want %v %d %d", dns.TypeToString[tt.qtype], tt.name,
				resp.AuthenticatedData, len(resp.Answer), resp.Rcode, tt.ad, tt.n, tt.rcode)
		}
	}
	resp := dnsAsk(t, srv, "udp", "_25._tcp.signed.test.", dns.TypeTLSA)
	if r, ok := resp.Answer[0].(*dns.TLSA); !ok || r.Usage != 3 || r.Selector != 1 || r.MatchingType != 1 || r.Certificate != "abcd" {
		t.Errorf("TLSA answer %v", resp.Answer[0])
	}
	if err := checkZone("x.test", Zone{TLSA: []TLSA{{Usage: 3, Data: "not hex"}}}); err == nil {
		t.Error("TLSA data that is not hex was accepted")
	}
}

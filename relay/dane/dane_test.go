package dane

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"facteur/relay/relaytest"
)

func chainOf(t *testing.T, certs [][]byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, der := range certs {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func rec(t *testing.T, usage, selector, matching uint8, c *x509.Certificate) *dns.TLSA {
	t.Helper()
	r := relaytest.TLSAFor(t, usage, selector, matching, c)
	return &dns.TLSA{Usage: r.Usage, Selector: r.Selector, MatchingType: r.MatchingType, Certificate: r.Data}
}

func TestVerify(t *testing.T) {
	ca := relaytest.NewCA(t)
	other := relaytest.NewCA(t)
	good := chainOf(t, ca.Issue("mx.example.org").Certificate)
	expired := chainOf(t, ca.IssueExpired("mx.example.org").Certificate)
	wrongName := chainOf(t, ca.Issue("www.example.org").Certificate)
	self := chainOf(t, relaytest.SelfSignedCert(t, "anything.invalid").Certificate)
	now := time.Now()

	upper := rec(t, 3, 1, 1, self[0])
	upper.Certificate = strings.ToUpper(upper.Certificate)

	tests := []struct {
		name    string
		records []*dns.TLSA
		chain   []*x509.Certificate
		ok      bool
	}{
		{"EE cert full", []*dns.TLSA{rec(t, 3, 0, 0, self[0])}, self, true},
		{"EE cert sha256", []*dns.TLSA{rec(t, 3, 0, 1, self[0])}, self, true},
		{"EE cert sha512", []*dns.TLSA{rec(t, 3, 0, 2, self[0])}, self, true},
		{"EE spki full", []*dns.TLSA{rec(t, 3, 1, 0, self[0])}, self, true},
		{"EE spki sha256", []*dns.TLSA{rec(t, 3, 1, 1, self[0])}, self, true},
		{"EE spki sha512", []*dns.TLSA{rec(t, 3, 1, 2, self[0])}, self, true},
		{"EE upper-case hex", []*dns.TLSA{upper}, self, true},
		{"EE ignores an expired certificate", []*dns.TLSA{rec(t, 3, 1, 1, expired[0])}, expired, true},
		{"EE ignores the name", []*dns.TLSA{rec(t, 3, 1, 1, wrongName[0])}, wrongName, true},
		{"EE other key", []*dns.TLSA{rec(t, 3, 1, 1, good[0])}, self, false},
		{"one of several records", []*dns.TLSA{rec(t, 3, 1, 1, good[0]), rec(t, 3, 1, 1, self[0])}, self, true},
		{"TA cert sha256", []*dns.TLSA{rec(t, 2, 0, 1, ca.Cert())}, good, true},
		{"TA spki sha512", []*dns.TLSA{rec(t, 2, 1, 2, ca.Cert())}, good, true},
		{"TA checks the name", []*dns.TLSA{rec(t, 2, 0, 1, ca.Cert())}, wrongName, false},
		{"TA checks expiry", []*dns.TLSA{rec(t, 2, 0, 1, ca.Cert())}, expired, false},
		{"TA of another CA", []*dns.TLSA{rec(t, 2, 0, 1, other.Cert())}, good, false},
		{"TA not sent in the chain", []*dns.TLSA{rec(t, 2, 0, 1, ca.Cert())}, good[:1], false},
		{"PKIX-EE unusable", []*dns.TLSA{rec(t, 1, 1, 1, self[0])}, self, false},
		{"PKIX-TA unusable", []*dns.TLSA{rec(t, 0, 0, 1, ca.Cert())}, good, false},
		{"unknown matching type", []*dns.TLSA{{Usage: 3, Selector: 1, MatchingType: 3, Certificate: "00"}}, self, false},
		{"no certificate", []*dns.TLSA{rec(t, 3, 1, 1, self[0])}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.records, "mx.example.org", tt.chain, now)
			if (err == nil) != tt.ok {
				t.Fatalf("Verify = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrNoMatch) {
				t.Fatalf("error %v does not wrap ErrNoMatch", err)
			}
		})
	}
}

func TestUsable(t *testing.T) {
	in := []*dns.TLSA{
		{Usage: 3, Selector: 1, MatchingType: 1, Certificate: "ab"},
		{Usage: 2, Selector: 0, MatchingType: 0, Certificate: "ab"},
		{Usage: 1, Selector: 1, MatchingType: 1, Certificate: "ab"},
		{Usage: 0, Selector: 1, MatchingType: 1, Certificate: "ab"},
		{Usage: 3, Selector: 2, MatchingType: 1, Certificate: "ab"},
		{Usage: 3, Selector: 1, MatchingType: 3, Certificate: "ab"},
		{Usage: 3, Selector: 1, MatchingType: 1, Certificate: "zz"},
		nil,
	}
	if got := Usable(in); len(got) != 2 || got[0] != in[0] || got[1] != in[1] {
		t.Fatalf("Usable = %v", got)
	}
}

package delivery_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"facteur/relay/delivery"
	"facteur/relay/relaytest"
)

func TestSecurityRejected(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.2")
	for name, sec := range map[string]*delivery.Security{
		"dane without VerifyPeer": {Mode: delivery.ProtDANE},
		"testing with encrypt":    {Mode: delivery.ProtEncrypt, Testing: true},
		"unknown mode":            {Mode: "strict"},
	} {
		t.Run(name, func(t *testing.T) {
			if c, err := delivery.Dial(t.Context(), "mx", ip, delivery.Options{Hostname: hostname, Security: sec}); err == nil {
				c.Close()
				t.Fatal("Dial accepted bad Security")
			}
		})
	}
}

// Each Security mode against servers without STARTTLS, with a certificate
// the roots trust, and with one they do not.
func TestSecurityModes(t *testing.T) {
	trusted, pool := selfSignedTLS(t, "mx.dest.test")
	untrusted, _ := selfSignedTLS(t, "mx.dest.test")
	accept := func([]*x509.Certificate) error { return nil }
	refuse := func([]*x509.Certificate) error { return errors.New("no TLSA record matches") }
	tests := []struct {
		name    string
		tls     *tls.Config // nil: no STARTTLS
		sec     delivery.Security
		ok      bool
		prot    string
		report  string // in Report(); "" for none
		wantTLS bool   // the sink saw TLS
	}{
		{"none never starts TLS", trusted, delivery.Security{Mode: delivery.ProtNone}, true, delivery.ProtNone, "", false},
		{"opportunistic, plaintext", nil, delivery.Security{}, true, delivery.ProtNone, "", false},
		{"opportunistic, untrusted", untrusted, delivery.Security{Mode: delivery.ProtOpportunistic}, true, delivery.ProtOpportunistic, "", true},
		{"encrypt, untrusted", untrusted, delivery.Security{Mode: delivery.ProtEncrypt}, true, delivery.ProtEncrypt, "", true},
		{"encrypt, plaintext", nil, delivery.Security{Mode: delivery.ProtEncrypt}, false, "", "", false},
		{"verify, trusted", trusted, delivery.Security{Mode: delivery.ProtVerify}, true, delivery.ProtVerify, "", true},
		{"verify, untrusted", untrusted, delivery.Security{Mode: delivery.ProtVerify}, false, "", "", false},
		{"mta-sts, trusted", trusted, delivery.Security{Mode: delivery.ProtMTASTS}, true, delivery.ProtMTASTS, "", true},
		{"mta-sts, plaintext", nil, delivery.Security{Mode: delivery.ProtMTASTS}, false, "", "", false},
		{"dane, match", untrusted, delivery.Security{Mode: delivery.ProtDANE, VerifyPeer: accept}, true, delivery.ProtDANE, "", true},
		{"dane, no match", trusted, delivery.Security{Mode: delivery.ProtDANE, VerifyPeer: refuse}, false, "", "", false},
		{"testing, trusted", trusted, delivery.Security{Testing: true}, true, delivery.ProtOpportunistic, "", true},
		{"testing, untrusted", untrusted, delivery.Security{Testing: true}, true, delivery.ProtOpportunistic, "certificate not valid", true},
		{"testing, plaintext, MX outside", nil, delivery.Security{Testing: true, TestingNote: "MX host not in the policy"}, true, delivery.ProtNone, "MX host not in the policy; STARTTLS not offered", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{TLS: tc.tls})
			ap := netip.MustParseAddrPort(s.Addr())
			o := opts(int(ap.Port()))
			o.RootCAs = pool
			sec := tc.sec
			o.Security = &sec
			c, err := delivery.Dial(t.Context(), "mx.dest.test", ap.Addr(), o)
			if !tc.ok {
				if err == nil {
					c.Close()
					t.Fatal("Dial succeeded, want a refusal")
				}
				if !delivery.PolicyFailure(err) {
					t.Fatalf("error %v is not a policy failure", err)
				}
				if s.Connections() != 1 {
					t.Errorf("%d connections: a refused session must not be retried in plaintext", s.Connections())
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if got := c.Protection(); got != tc.prot {
				t.Errorf("Protection() = %q, want %q", got, tc.prot)
			}
			if got := c.Report(); tc.report == "" && got != "" || !strings.Contains(got, tc.report) {
				t.Errorf("Report() = %q, want %q", got, tc.report)
			}
			if _, err := c.Send(t.Context(), msg("b@dest.test")); err != nil {
				t.Fatal(err)
			}
			if m := s.Messages(); len(m) != 1 || m[0].TLS != tc.wantTLS {
				t.Errorf("sink got %+v, want one message with TLS=%v", m, tc.wantTLS)
			}
		})
	}
}

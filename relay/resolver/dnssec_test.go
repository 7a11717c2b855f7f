package resolver

import (
	"errors"
	"testing"

	"facteur/relay/relaytest"
)

// The AD bit of the server's answers reaches Route and LookupTLSA, cached
// with the answer (issue 15: DANE starts from authenticated MX and address
// answers).
func TestSecureRoute(t *testing.T) {
	tlsa := relaytest.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: "AB12"}
	r, _ := newResolver(t, map[string]relaytest.Zone{
		"signed.example":             {MX: []relaytest.MX{mx("mx.signed.example", 10), mx("mx.unsigned.example", 20)}, Secure: true},
		"mx.signed.example":          {A: []string{"192.0.2.1"}, Secure: true},
		"mx.unsigned.example":        {A: []string{"192.0.2.2"}},
		"unsigned.example":           {MX: []relaytest.MX{mx("mx.signed.example", 10)}},
		"implicit.example":           {A: []string{"192.0.2.3"}, Secure: true},
		"_25._tcp.mx.signed.example": {TLSA: []relaytest.TLSA{tlsa}, Secure: true},
		"_25._tcp.nodata.example":    {Secure: true},
		"_25._tcp.insecure.example":  {TLSA: []relaytest.TLSA{tlsa}},
		"_25._tcp.bogus.example":     {ServFail: true},
		"_25._tcp.alias.example":     {CNAME: "_25._tcp.mx.signed.example", Secure: false},
	}, Options{IPVersion: IPv4})

	route, err := r.Route(t.Context(), "signed.example")
	if err != nil {
		t.Fatal(err)
	}
	if !route.Secure || len(route.MX) != 2 || !route.MX[0].Secure || route.MX[1].Secure {
		t.Fatalf("signed route %+v: want secure, first host secure, second not", route)
	}
	if route, _ := r.Route(t.Context(), "unsigned.example"); route.Secure || !route.MX[0].Secure {
		t.Fatalf("unsigned MX %+v: want route insecure, its (signed) host secure", route)
	}
	if route, _ := r.Route(t.Context(), "implicit.example"); !route.Implicit || !route.Secure || !route.MX[0].Secure {
		t.Fatalf("implicit %+v: want secure (the MX denial and the address are signed)", route)
	}
	// Cached answers keep their AD bit.
	if route, _ := r.Route(t.Context(), "signed.example"); !route.Secure {
		t.Fatal("cached route lost its AD bit")
	}

	tests := []struct {
		host    string
		records int
		secure  bool
		err     bool
	}{
		{"mx.signed.example", 1, true, false},
		{"nodata.example", 0, true, false},
		{"insecure.example", 1, false, false},
		{"nowhere.example", 0, false, false}, // NXDOMAIN, not signed
		{"bogus.example", 0, false, true},
		{"alias.example", 1, false, false}, // an unsigned CNAME breaks the chain
	}
	for _, tt := range tests {
		got, err := r.LookupTLSA(t.Context(), 25, tt.host)
		if (err != nil) != tt.err || len(got.Records) != tt.records || got.Secure != tt.secure {
			t.Errorf("LookupTLSA(%s) = %+v, %v; want %d records, secure %v, error %v", tt.host, got, err, tt.records, tt.secure, tt.err)
		}
		if err != nil && !errors.Is(err, ErrServFail) {
			t.Errorf("LookupTLSA(%s) error %v, want SERVFAIL", tt.host, err)
		}
	}
	got, _ := r.LookupTLSA(t.Context(), 25, "mx.signed.example")
	if rec := got.Records[0]; rec.Usage != 3 || rec.Selector != 1 || rec.MatchingType != 1 || rec.Certificate != "ab12" {
		t.Errorf("TLSA record %+v", rec)
	}
}

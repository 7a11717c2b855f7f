package doctor

import (
	"slices"
	"strings"
	"testing"

	"facteur/relay/relaytest"
	"facteur/relay/resolver"
)

// TestDMARCOrganizationalDomain: a domain without its own record falls
// under its organizational domain's, found with the public suffix list
// (RFC 7489 §6.6.3), never under a public suffix's, and without querying
// the names in between.
func TestDMARCOrganizationalDomain(t *testing.T) {
	tests := []struct {
		name    string
		domain  string
		zones   map[string]relaytest.Zone
		status  Status
		detail  string
		asked   []string // TXT queries, in order
		unasked string   // a name that must not be queried
	}{
		{
			name:   "subdomain of a ccTLD second level",
			domain: "news.example.co.uk",
			zones: map[string]relaytest.Zone{
				"_dmarc.example.co.uk": {TXT: []string{"v=DMARC1; p=reject; sp=quarantine"}},
			},
			status: OK,
			detail: "the one of example.co.uk applies",
			asked:  []string{"TXT _dmarc.news.example.co.uk.", "TXT _dmarc.example.co.uk."},
		},
		{
			name:   "a public suffix's record is not the organization's",
			domain: "example.co.uk",
			zones: map[string]relaytest.Zone{
				"_dmarc.co.uk": {TXT: []string{"v=DMARC1; p=reject"}},
			},
			status:  Fail,
			detail:  "no DMARC record at _dmarc.example.co.uk",
			asked:   []string{"TXT _dmarc.example.co.uk."},
			unasked: "_dmarc.co.uk.",
		},
		{
			name:   "deep subdomain goes straight to the organizational domain",
			domain: "a.b.example.test",
			zones: map[string]relaytest.Zone{
				"_dmarc.b.example.test": {TXT: []string{"v=DMARC1; p=none"}},
				"_dmarc.example.test":   {TXT: []string{"v=DMARC1; p=reject"}},
			},
			status:  OK,
			detail:  "rejected by receivers",
			asked:   []string{"TXT _dmarc.a.b.example.test.", "TXT _dmarc.example.test."},
			unasked: "_dmarc.b.example.test.",
		},
		{
			name:   "own record first",
			domain: "example.com.br",
			zones: map[string]relaytest.Zone{
				"_dmarc.example.com.br": {TXT: []string{"v=DMARC1; p=none"}},
			},
			status: OK,
			detail: "only monitors",
			asked:  []string{"TXT _dmarc.example.com.br."},
		},
		{
			name:   "bad policy value",
			domain: "example.test",
			zones: map[string]relaytest.Zone{
				"_dmarc.example.test": {TXT: []string{"v=DMARC1; p=block"}},
			},
			status: Fail,
			detail: "not a valid DMARC record",
			asked:  []string{"TXT _dmarc.example.test."},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := relaytest.NewDNS(t, tc.zones)
			r, err := resolver.New(resolver.Options{Server: srv.Addr()})
			if err != nil {
				t.Fatal(err)
			}
			f := checkDMARC(t.Context(), r, Options{Domain: tc.domain})
			if f.Status != tc.status || !strings.Contains(f.Detail, tc.detail) {
				t.Errorf("%s %q, want %s mentioning %q", f.Status, f.Detail, tc.status, tc.detail)
			}
			var txt []string
			for _, q := range srv.QueryLog() {
				if q.Type == "TXT" && !slices.Contains(txt, q.String()) {
					txt = append(txt, q.String())
				}
			}
			if !slices.Equal(txt, tc.asked) {
				t.Errorf("queries %q, want %q", txt, tc.asked)
			}
			if tc.unasked != "" && slices.Contains(txt, "TXT "+tc.unasked) {
				t.Errorf("queried %s", tc.unasked)
			}
		})
	}
}

package policy

import (
	"fmt"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Recognition: which provider a recipient domain belongs to, by its name or its MX hosts.

// domainPattern is a recipient domain (`gmail.com`, or `yahoo.*` for every country variant)
// or an MX host pattern (`.mail.protection.outlook.com`: a suffix; without the leading dot,
// the host itself or any host under it).
type domainPattern struct {
	name     string
	wild     bool
	suffix   bool
	provider *Provider
}

func parseDomainPattern(s string, mx bool) (domainPattern, error) {
	n := normalizeHost(s)
	dp := domainPattern{name: n}
	switch {
	case !mx && strings.HasSuffix(n, ".*"):
		dp.wild, dp.name = true, strings.TrimSuffix(n, ".*")
	case mx && strings.HasPrefix(n, "."):
		dp.suffix, dp.name = true, strings.TrimPrefix(n, ".")
	}
	if !hostRE.MatchString(dp.name) {
		if mx {
			return dp, fmt.Errorf("bad mx pattern %q: want a host name or a suffix such as .mail.protection.outlook.com", s)
		}
		return dp, fmt.Errorf("bad domain %q: want a domain such as gmail.com or a pattern such as yahoo.*", s)
	}
	return dp, nil
}

func normalizeHost(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// publicSuffix: the part a `name.*` pattern stands for is a public suffix of the ICANN section
// of the public suffix list (`fr`, `com`, `co.uk`, `com.br`), so that `yahoo.fr` and
// `hotmail.co.uk` are the providers' while `yahoo.example.org` and `yahoo.abc.de` are not, nor
// a privately registered suffix such as `yahoo.blogspot.com`.
func publicSuffix(s string) bool {
	ps, icann := publicsuffix.PublicSuffix(s)
	return icann && ps == s
}

// Recognize returns the provider of a recipient domain whose MX hosts are mxHosts (in
// preference order): by domain first (exact, then `name.*`), else by the first MX host that a
// provider's mx pattern matches (the longest pattern wins), else DefaultProvider. Names are
// compared case-insensitively and trailing dots are ignored. A custom domain hosted by
// Microsoft 365 or Google Workspace is recognised by its MX (issue 5 §2).
func (p *Policy) Recognize(domain string, mxHosts []string) string {
	d := normalizeHost(domain)
	if pr := p.exact[d]; pr != nil {
		return pr.Name
	}
	for _, w := range p.wild {
		if rest, ok := strings.CutPrefix(d, w.name+"."); ok && publicSuffix(rest) {
			return w.provider.Name
		}
	}
	for _, h := range mxHosts {
		h = normalizeHost(h)
		var best *domainPattern
		for i := range p.mx {
			m := &p.mx[i]
			ok := h == m.name && !m.suffix || strings.HasSuffix(h, "."+m.name)
			if ok && (best == nil || len(m.name) > len(best.name)) {
				best = m
			}
		}
		if best != nil {
			return best.provider.Name
		}
	}
	return DefaultProvider
}

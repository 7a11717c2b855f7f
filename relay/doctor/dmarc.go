package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"facteur/relay/resolver"
)

// checkDMARC looks for the domain's DMARC policy (RFC 7489 §6.1): a TXT
// record at _dmarc.DOMAIN starting with v=DMARC1 and naming a policy. Gmail
// and Yahoo require one, p=none at least, from bulk senders since 2024.
func checkDMARC(ctx context.Context, dns DNS, o Options) Finding {
	f := Finding{Check: CheckDMARC}
	suggest := txtRecord("_dmarc."+o.Domain, "v=DMARC1; p=none; rua=mailto:postmaster@"+o.Domain)
	rec, where, err := dmarcRecord(ctx, dns, o.Domain)
	if err != nil {
		f.Status = Warn
		f.Detail = fmt.Sprintf("could not read the DMARC record of %s: %v", o.Domain, err)
		return f
	}
	if rec == "" {
		f.Status = Fail
		f.Detail = fmt.Sprintf("no DMARC record at _dmarc.%s: Gmail and Yahoo require one (p=none at least) from bulk senders, and without it receivers have no policy for mail forged in the domain's name. rua= sends you daily reports of who sends as %s.", o.Domain, o.Domain)
		f.Fix = suggest
		return f
	}
	parsed, err := dmarc.Parse(rec)
	if err != nil {
		f.Status = Fail
		f.Detail = fmt.Sprintf("_dmarc.%s: %q is not a valid DMARC record: %s. A DMARC record must name a policy, none, quarantine or reject (RFC 7489 §6.3).", where, rec, strings.TrimPrefix(err.Error(), "dmarc: "))
		f.Fix = suggest
		return f
	}
	policy := parsed.Policy
	if where != o.Domain && parsed.SubdomainPolicy != "" {
		// RFC 7489 §6.6.3: a subdomain without a record falls under its
		// organizational domain's, with sp= when given.
		policy = parsed.SubdomainPolicy
	}
	f.Status = OK
	if policy == dmarc.PolicyNone {
		f.Detail = fmt.Sprintf("_dmarc.%s: %q. p=none only monitors: enough for the providers' requirement; once the reports show all your mail passing, move to quarantine, then reject.", where, rec)
	} else {
		f.Detail = fmt.Sprintf("_dmarc.%s: %q: mail failing both SPF and DKIM alignment is %sed by receivers; check that everything sending as %s passes.", where, rec, strings.TrimSuffix(string(policy), "e"), o.Domain)
	}
	if where != o.Domain {
		f.Detail = fmt.Sprintf("%s has no DMARC record of its own; the one of %s applies. ", o.Domain, where) + f.Detail
	}
	return f
}

// dmarcRecord finds the record at _dmarc.DOMAIN, then, as receivers do
// (RFC 7489 §6.6.3), at the organizational domain: the public suffix list's
// registrable domain (news.example.co.uk → example.co.uk), never a public
// suffix such as co.uk. More than one record means none (§6.6.3 step 5).
func dmarcRecord(ctx context.Context, dns DNS, domain string) (rec, where string, err error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	candidates := []string{domain}
	if org, err := publicsuffix.EffectiveTLDPlusOne(domain); err == nil && org != domain {
		candidates = append(candidates, org)
	}
	for _, d := range candidates {
		txts, err := dns.LookupTXT(ctx, "_dmarc."+d)
		if err != nil && !errors.Is(err, resolver.ErrNXDomain) {
			return "", "", err
		}
		var recs []string
		for _, t := range txts {
			if strings.HasPrefix(t, "v=DMARC1") {
				recs = append(recs, t)
			}
		}
		if len(recs) == 1 {
			return recs[0], d, nil
		}
	}
	return "", "", nil
}

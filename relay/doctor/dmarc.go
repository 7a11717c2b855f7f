package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"

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
	tags := dmarcTags(rec)
	policy, ok := tags["p"]
	if where != o.Domain {
		// RFC 7489 §6.6.3: a subdomain without a record falls under its
		// organizational domain's, with sp= when given.
		if sp, has := tags["sp"]; has {
			policy = sp
		}
	}
	switch strings.ToLower(policy) {
	case "none":
		f.Status = OK
		f.Detail = fmt.Sprintf("_dmarc.%s: %q. p=none only monitors: enough for the providers' requirement; once the reports show all your mail passing, move to quarantine, then reject.", where, rec)
	case "quarantine", "reject":
		f.Status = OK
		f.Detail = fmt.Sprintf("_dmarc.%s: %q: mail failing both SPF and DKIM alignment is %sed by receivers; check that everything sending as %s passes.", where, rec, strings.TrimSuffix(strings.ToLower(policy), "e"), o.Domain)
	default:
		f.Status = Fail
		if !ok {
			f.Detail = fmt.Sprintf("_dmarc.%s: %q has no p= tag; a DMARC record must name a policy (RFC 7489 §6.3).", where, rec)
		} else {
			f.Detail = fmt.Sprintf("_dmarc.%s: %q: p=%s is not a policy (none, quarantine or reject).", where, rec, policy)
		}
		f.Fix = suggest
	}
	if where != o.Domain && f.Status == OK {
		f.Detail = fmt.Sprintf("%s has no DMARC record of its own; the one of %s applies. ", o.Domain, where) + f.Detail
	}
	return f
}

// dmarcRecord finds the record at _dmarc.DOMAIN, then, as receivers do
// (RFC 7489 §6.6.3), at the organizational domain. Without the public
// suffix list the parents are tried up to the last two labels. More than
// one record means none (§6.6.3 step 5).
func dmarcRecord(ctx context.Context, dns DNS, domain string) (rec, where string, err error) {
	for d := domain; strings.Count(d, ".") >= 1; {
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
		_, d, _ = strings.Cut(d, ".")
	}
	return "", "", nil
}

// dmarcTags parses the record's tag=value pairs (RFC 7489 §6.4).
func dmarcTags(rec string) map[string]string {
	tags := make(map[string]string)
	for part := range strings.SplitSeq(rec, ";") {
		if name, value, ok := strings.Cut(part, "="); ok {
			tags[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
		}
	}
	return tags
}

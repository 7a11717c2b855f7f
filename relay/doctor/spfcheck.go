package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"facteur/relay/doctor/spf"
	"facteur/relay/resolver"
)

// checkSPF evaluates the domain's SPF record for the relay's address, as
// the receiving MX will (RFC 7208). The receiver checks the MAIL FROM
// domain; DMARC then needs that domain aligned with From:, so Domain is
// used for both.
func checkSPF(ctx context.Context, dns DNS, o Options) Finding {
	f := Finding{Check: CheckSPF}
	if !o.IP.IsValid() {
		return spfWithoutIP(ctx, dns, o)
	}
	mech := ipMechanism(o.IP)
	// The record to suggest when there is none: this relay, and a soft
	// fail for the rest until every other sender of the domain is listed.
	fresh := txtRecord(o.Domain, "v=spf1 "+mech+" ~all")
	out := spf.CheckHost(ctx, dns, spf.Query{IP: o.IP, Domain: o.Domain, Helo: o.Hostname})
	lookups := fmt.Sprintf("%d of the %d DNS lookups allowed", out.Lookups, spf.MaxLookups)
	switch out.Result {
	case spf.Pass:
		f.Status = OK
		f.Detail = fmt.Sprintf("%q authorises %s (pass, through %s); %s.", out.Record, o.IP, out.Match, lookups)
		// The relay may match before the limits are reached while every
		// other sender of the domain gets a permerror: evaluate once more
		// for an address no sane record lists, which walks every term.
		other := netip.AddrFrom4([4]byte{255, 255, 255, 255})
		if o.IP.Is6() {
			other = netip.MustParseAddr("100::ffff") // RFC 6666 discard prefix
		}
		if worst := spf.CheckHost(ctx, dns, spf.Query{IP: other, Domain: o.Domain, Helo: o.Hostname}); worst.Result == spf.PermError {
			f.Status = Warn
			f.Detail += fmt.Sprintf(" But for an address it does not list, the record is a permerror: %s; mail from the domain's other senders fails SPF.", worst.Reason)
			f.Fix = "remove include: terms of services no longer used, or replace them by the ip4:/ip6: ranges they publish (flattening)"
		}
		if top, _, _ := strings.Cut(out.Match, " "); strings.EqualFold(strings.TrimPrefix(top, "+"), "all") {
			f.Status = Warn
			f.Detail = fmt.Sprintf("%q ends in +all: it authorises every address on the Internet to send as %s, so SPF proves nothing and some filters score it as spam.", out.Record, o.Domain)
			f.Fix = txtRecord(o.Domain, withMechanism(softAll(out.Record), mech))
		}
	case spf.Fail, spf.SoftFail, spf.Neutral:
		how := "no term matches it (neutral by default)"
		if out.Match != "" {
			how = fmt.Sprintf("it matches %s, which gives %s", out.Match, out.Result)
		}
		f.Status = Fail
		f.Detail = fmt.Sprintf("%q does not authorise %s: %s. Receivers that check SPF (all the big providers) will treat mail from this relay as unauthenticated, and DMARC will fail unless DKIM passes.", out.Record, o.IP, how)
		f.Fix = txtRecord(o.Domain, withMechanism(out.Record, mech))
	case spf.None:
		f.Status = Fail
		f.Detail = fmt.Sprintf("%s has no SPF record (%s). Gmail and Yahoo require SPF or DKIM from every sender, and SPF and DKIM from bulk senders.", o.Domain, out.Reason)
		f.Fix = fresh + "   (add the other services that send as " + o.Domain + ", then ~all can become -all)"
	case spf.PermError:
		f.Status = Fail
		f.Detail = fmt.Sprintf("the SPF record of %s is broken for receivers (permerror): %s. A permerror counts as a failed SPF check for DMARC.", o.Domain, out.Reason)
		switch {
		case out.Lookups > spf.MaxLookups:
			f.Fix = "remove include: terms of services no longer used, or replace them by the ip4:/ip6: ranges they publish (flattening); list this relay before any include: so that it passes without lookups: " +
				txtRecord(o.Domain, withMechanism(out.Record, mech))
		case out.Record == "":
			f.Fix = "publish exactly one SPF record, for instance " + fresh
		default:
			f.Fix = "correct the record; for this relay alone it would be " + fresh
		}
	default:
		f.Status = Warn
		f.Detail = fmt.Sprintf("could not evaluate the SPF record of %s (temperror): %s. Receivers will defer mail while this lasts.", o.Domain, out.Reason)
	}
	return f
}

// spfWithoutIP checks what can be checked without the address: one record,
// well formed.
func spfWithoutIP(ctx context.Context, dns DNS, o Options) Finding {
	f := noIP(CheckSPF)
	txts, err := dns.LookupTXT(ctx, o.Domain)
	if err != nil && !errors.Is(err, resolver.ErrNXDomain) {
		f.Detail = fmt.Sprintf("could not read the SPF record of %s: %v", o.Domain, err)
		return f
	}
	var recs []string
	for _, t := range txts {
		if spf.IsRecord(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		f.Status = Fail
		f.Detail = fmt.Sprintf("%s has no SPF record; without -ip or delivery.source_ip the record to publish cannot be written here.", o.Domain)
		f.Fix = txtRecord(o.Domain, "v=spf1 ip4:YOUR.OUTBOUND.IP ~all")
	case 1:
		if err := spf.Parse(recs[0]); err != nil {
			f.Status = Fail
			f.Detail = fmt.Sprintf("the SPF record %q is malformed (receivers return permerror): %v", recs[0], err)
			return f
		}
		f.Detail = fmt.Sprintf("%s publishes %q, but whether it authorises this relay cannot be checked: the outbound IP address is unknown.", o.Domain, recs[0])
	default:
		f.Status = Fail
		f.Detail = fmt.Sprintf("%s publishes %d SPF records; receivers return permerror when there is more than one (RFC 7208 §4.5).", o.Domain, len(recs))
		f.Fix = "merge them into one record"
	}
	return f
}

// withMechanism inserts mech right after "v=spf1", where it is evaluated
// first and costs no lookup.
func withMechanism(record, mech string) string {
	if record == "" {
		return "v=spf1 " + mech + " ~all"
	}
	rest := strings.TrimLeft(record[6:], " ")
	if rest == "" {
		return "v=spf1 " + mech + " ~all"
	}
	return "v=spf1 " + mech + " " + rest
}

// softAll turns the record's "all" and "+all" into "~all".
func softAll(record string) string {
	terms := strings.Split(record, " ")
	for i, t := range terms {
		if strings.EqualFold(strings.TrimPrefix(t, "+"), "all") {
			terms[i] = "~all"
		}
	}
	return strings.Join(terms, " ")
}

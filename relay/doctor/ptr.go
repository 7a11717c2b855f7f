package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"facteur/relay/resolver"
)

// checkPTR checks forward-confirmed reverse DNS (FCrDNS): the address has a
// PTR, the name it gives resolves back to the address, and that name is the
// relay's EHLO name (config `hostname`). Most receivers refuse or score
// down mail from an address without one; Gmail refuses every message from
// an IPv6 address without a PTR ("550-5.7.1 ... does not meet IPv6 sending
// guidelines regarding PTR records and authentication").
func checkPTR(ctx context.Context, dns DNS, o Options) Finding {
	if !o.IP.IsValid() {
		return noIP(CheckPTR)
	}
	f := Finding{Check: CheckPTR}
	host := normHost(o.Hostname)
	askISP := fmt.Sprintf("ask whoever owns %s (the hosting provider, usually in its control panel) to set its PTR to %s, and keep the A record of %s pointing to %s", o.IP, host, host, o.IP)
	v6 := " If this host also has IPv6, its IPv6 address needs the same, or Gmail refuses the mail sent over IPv6 (or set delivery.ip_version: ipv4)."
	if o.IP.Is6() {
		askISP = fmt.Sprintf("ask whoever owns %s (the hosting provider) to set its PTR to %s, with an AAAA record of %s pointing back; or send over IPv4 only (delivery.ip_version: ipv4)", o.IP, host, host)
		v6 = " Gmail refuses all mail from an IPv6 address without a PTR that resolves back to it."
	}

	names, err := dns.LookupPTR(ctx, o.IP)
	switch {
	case errors.Is(err, resolver.ErrNXDomain), err == nil && len(names) == 0:
		f.Status = Fail
		f.Detail = fmt.Sprintf("%s has no PTR record: many receivers refuse mail from addresses without reverse DNS.%s", o.IP, v6)
		f.Fix = askISP
		return f
	case err != nil:
		f.Status = Warn
		f.Detail = fmt.Sprintf("could not look up the PTR of %s: %v", o.IP, err)
		return f
	}
	var confirmed []string
	var tempErr error
	for _, n := range names {
		n = normHost(n)
		var addrs []netip.Addr
		var err error
		if o.IP.Is4() {
			addrs, err = dns.LookupA(ctx, n)
		} else {
			addrs, err = dns.LookupAAAA(ctx, n)
		}
		if err != nil && resolver.Temporary(err) {
			tempErr = err
		}
		if slices.Contains(addrs, o.IP) {
			confirmed = append(confirmed, n)
		}
	}
	list := strings.Join(names, ", ")
	switch {
	case len(confirmed) == 0 && tempErr != nil:
		f.Status = Warn
		f.Detail = fmt.Sprintf("%s has PTR %s, but resolving it back failed: %v", o.IP, list, tempErr)
	case len(confirmed) == 0:
		f.Status = Fail
		f.Detail = fmt.Sprintf("%s has PTR %s, but that name does not resolve back to %s (no forward-confirmed reverse DNS): receivers treat it as no PTR at all.%s", o.IP, list, o.IP, v6)
		f.Fix = askISP
	case host != "" && !slices.Contains(confirmed, host):
		f.Status = Fail
		f.Detail = fmt.Sprintf("%s resolves to %s and back, but the relay introduces itself as %q (config hostname): receivers such as Microsoft and many spam filters check that the EHLO name matches the PTR.", o.IP, strings.Join(confirmed, ", "), host)
		f.Fix = fmt.Sprintf("set hostname: %s in the config, or %s", confirmed[0], askISP)
	default:
		f.Status = OK
		f.Detail = fmt.Sprintf("%s has PTR %s, which resolves back to it and matches the relay's hostname (forward-confirmed reverse DNS).", o.IP, strings.Join(confirmed, ", "))
		if o.IP.Is4() {
			f.Detail += v6
		}
	}
	return f
}

// normHost compares names as DNS does: case-insensitively, trailing dot
// ignored.
func normHost(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
}

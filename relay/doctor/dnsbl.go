package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"facteur/relay/resolver"
)

// dnsblRemoval is where each well-known list explains a listing and takes
// removal requests.
var dnsblRemoval = map[string]string{
	"zen.spamhaus.org":       "https://check.spamhaus.org/",
	"bl.spamcop.net":         "https://www.spamcop.net/bl.shtml",
	"b.barracudacentral.org": "https://www.barracudacentral.org/rbl/removal-request",
}

// checkDNSBL queries one DNS block list the way receivers do: the
// address's octets reversed (nibbles for IPv6) under the list's zone. An A
// answer in 127.0.0.0/8 means listed, NXDOMAIN means not listed.
func checkDNSBL(ctx context.Context, dns DNS, ip netip.Addr, zone string) Finding {
	zone = strings.ToLower(strings.Trim(strings.TrimSpace(zone), "."))
	if !ip.IsValid() {
		f := noIP(CheckDNSBL)
		f.Detail = zone + ": " + f.Detail
		return f
	}
	f := Finding{Check: CheckDNSBL}
	name := reversedName(ip) + "." + zone
	addrs, err := dns.LookupA(ctx, name)
	switch {
	case errors.Is(err, resolver.ErrNXDomain), err == nil && len(addrs) == 0:
		f.Status = OK
		f.Detail = fmt.Sprintf("%s: %s is not listed.", zone, ip)
		return f
	case err != nil:
		f.Status = Warn
		f.Detail = fmt.Sprintf("%s: could not check %s: %v", zone, ip, err)
		return f
	}
	var codes []string
	listed := false
	for _, a := range addrs {
		codes = append(codes, a.String())
		a = a.Unmap()
		var b [4]byte
		if a.Is4() {
			b = a.As4()
		}
		switch {
		case b[0] != 127:
			// Not a list answer: a resolver that rewrites NXDOMAIN
			// into an advertising page, typically.
		case b[1] == 255 && b[2] == 255:
			// Spamhaus's refusals (127.255.255.252 typo, .254 query
			// through a public resolver, .255 too many queries) say
			// nothing about the address; other lists that signal
			// errors use the same range.
			f.Status = Warn
			f.Detail = fmt.Sprintf("%s: could not check %s: the list refused the query (answer %s; Spamhaus refuses queries that come through public resolvers such as 8.8.8.8, or above its free volume).", zone, ip, a)
			f.Fix = "point the config's resolver at a resolver of your own (a local unbound, for instance) to query the list"
			return f
		default:
			listed = true
		}
	}
	if !listed {
		f.Status = Warn
		f.Detail = fmt.Sprintf("%s: could not check %s: the answer %s is not a block-list code (127.0.0.0/8); the resolver may rewrite unknown names.", zone, ip, strings.Join(codes, ", "))
		return f
	}
	reason := ""
	if txts, err := dns.LookupTXT(ctx, name); err == nil && len(txts) > 0 {
		reason = " Reason given: " + strings.Join(txts, " / ")
	}
	f.Status = Fail
	f.Detail = fmt.Sprintf("%s: %s is LISTED (%s); receivers using this list refuse or junk its mail.%s", zone, ip, strings.Join(codes, ", "), reason)
	f.Fix = "find and stop the cause (a compromised site or account sending spam: see facteur queue list and the log), then request removal"
	if u, ok := dnsblRemoval[zone]; ok {
		f.Fix += " at " + u
	} else {
		f.Fix += " from the list's operator"
	}
	return f
}

// reversedName is the address's query label: "2.0.0.127" for 127.0.0.2,
// 32 nibbles for IPv6 (RFC 5782 §2.1, §2.4).
func reversedName(ip netip.Addr) string {
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
	}
	b := ip.As16()
	var s strings.Builder
	const hex = "0123456789abcdef"
	for i := len(b) - 1; i >= 0; i-- {
		if i != len(b)-1 {
			s.WriteByte('.')
		}
		s.WriteByte(hex[b[i]&15])
		s.WriteByte('.')
		s.WriteByte(hex[b[i]>>4])
	}
	return s.String()
}

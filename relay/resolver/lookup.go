package resolver

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// The lookups below serve the deliverability doctor (SPF, DKIM, DMARC, PTR
// checks). They share Route's cache and error typing: a name that does not
// exist is an error wrapping ErrNXDomain (permanent); a name that exists
// without records of the type is an empty result and a nil error; anything
// else is temporary.

// LookupTXT returns the TXT records of name, each one's character-strings
// joined (RFC 7208 §3.3: a long SPF or DKIM record is split into 255-byte
// strings that are concatenated).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.records(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range rrs {
		var b strings.Builder
		for _, s := range rr.(*dns.TXT).Txt {
			b.WriteString(unescape(s))
		}
		out = append(out, b.String())
	}
	return out, nil
}

// LookupA returns the IPv4 addresses of name.
func (r *Resolver) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	rrs, err := r.records(ctx, name, dns.TypeA)
	return addrsOf(rrs), err
}

// LookupAAAA returns the IPv6 addresses of name.
func (r *Resolver) LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error) {
	rrs, err := r.records(ctx, name, dns.TypeAAAA)
	return addrsOf(rrs), err
}

// LookupIP returns the addresses of name in the families allowed by
// Options.IPVersion, in the order Route would try them. When one family
// fails and the other has addresses, those are returned without error.
func (r *Resolver) LookupIP(ctx context.Context, name string) ([]netip.Addr, error) {
	host, err := canonical(name)
	if err != nil {
		return nil, err
	}
	addrs, _, _, err := r.addresses(ctx, host)
	return addrs, err
}

// LookupMX returns the exchanger names of name's MX records, most preferred
// first (equal preferences in the order of the answer), lower case without
// the trailing dot: the records as published, without Route's implicit MX,
// address lookups or removal of repeated names, as SPF's mx mechanism
// counts them (RFC 7208 §4.6.4). A null MX (RFC 7505) is no exchanger.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.records(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	mx := make([]*dns.MX, 0, len(rrs))
	for _, rr := range rrs {
		if m := rr.(*dns.MX); m.Mx != "." {
			mx = append(mx, m)
		}
	}
	slices.SortStableFunc(mx, func(a, b *dns.MX) int { return cmp.Compare(a.Preference, b.Preference) })
	out := make([]string, 0, len(mx))
	for _, m := range mx {
		out = append(out, display(strings.ToLower(m.Mx)))
	}
	return out, nil
}

// LookupPTR returns the names ip's reverse zone points to: lower case,
// without the trailing dot. An IPv4-mapped IPv6 address is looked up as IPv4.
func (r *Resolver) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	if !ip.IsValid() {
		return nil, fmt.Errorf("%w: invalid IP address", ErrInvalidName)
	}
	rev, err := dns.ReverseAddr(ip.Unmap().WithZone("").String())
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrInvalidName, ip, err)
	}
	rrs, err := r.records(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range rrs {
		out = append(out, display(strings.ToLower(rr.(*dns.PTR).Ptr)))
	}
	return out, nil
}

// TLSA is the answer to a TLSA query (RFC 6698) for DANE (RFC 7672).
type TLSA struct {
	// Records are the TLSA records found; empty for NXDOMAIN or NODATA.
	Records []*dns.TLSA
	// Secure is the AD bit: the answer, or the denial that there is one,
	// was authenticated by the (validating) server.
	Secure bool
}

// LookupTLSA looks up the TLSA records of port/tcp at host
// ("_25._tcp.mx.example.org"). A name that does not exist is not an error
// here: for DANE an authenticated denial means "no TLSA" (RFC 7672 §2.2.3).
// Errors (SERVFAIL, which a validating resolver answers for bogus data,
// timeouts) are temporary: the caller must not fall back to plaintext.
func (r *Resolver) LookupTLSA(ctx context.Context, port int, host string) (TLSA, error) {
	cname, err := canonical(fmt.Sprintf("_%d._tcp.%s", port, strings.TrimSuffix(host, ".")))
	if err != nil {
		return TLSA{}, err
	}
	a, err := r.lookup(ctx, cname, dns.TypeTLSA)
	if err != nil {
		return TLSA{}, err
	}
	out := TLSA{Secure: a.secure}
	for _, rr := range a.rrs {
		out.Records = append(out.Records, rr.(*dns.TLSA))
	}
	return out, nil
}

// records is a lookup of one type with NXDOMAIN turned into an error.
func (r *Resolver) records(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	cname, err := canonical(name)
	if err != nil {
		return nil, err
	}
	a, err := r.lookup(ctx, cname, qtype)
	if err != nil {
		return nil, err
	}
	if a.nxdomain {
		return nil, r.fail(cname, qtype, ErrNXDomain)
	}
	return a.rrs, nil
}

// unescape undoes miekg/dns's presentation escapes in a character-string:
// \DDD (a decimal byte) and \X (X itself), so that callers get the bytes
// that were published.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b = append(b, s[i])
			continue
		}
		i++
		if i+2 < len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]) {
			n := int(s[i]-'0')*100 + int(s[i+1]-'0')*10 + int(s[i+2]-'0')
			if n <= 255 {
				b = append(b, byte(n))
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

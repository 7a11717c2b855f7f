package resolver

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Route is where mail for a domain goes: the hosts to try, in order.
type Route struct {
	// Domain is the recipient domain as queried: A-labels, lower case, no
	// trailing dot.
	Domain string
	// MX lists the hosts in the order to try them: by preference, equal
	// preferences shuffled. Each has at least one address. Hosts whose
	// name did not resolve are left out. The names also serve to recognise
	// the mailbox provider (issue 5), which is thus cached with the answer.
	MX []Host
	// Implicit is true when the domain has no MX record and MX holds the
	// domain itself (RFC 5321 §5.1).
	Implicit bool
	// Expires is when the first of the DNS answers this route was built
	// from runs out; a caller keeping the route longer should ask again.
	Expires time.Time
	// Secure is true when the server set the AD bit on the MX answer (for
	// an implicit MX, on the domain's address answers): DNSSEC says these
	// are the domain's hosts. DANE (RFC 7672 §2.2.1) starts from there.
	Secure bool
}

// Host is one mail exchanger and its addresses.
type Host struct {
	Name string // lower case, A-labels, no trailing dot
	Pref uint16 // 0 for an implicit MX
	// Addrs holds the addresses of the families allowed by
	// Options.IPVersion, in the order to try them. With IPAny the families
	// alternate and the first one is picked at random on each Route call,
	// as Postfix 3.x does by default (smtp_address_preference = any,
	// smtp_balance_inet_protocols = yes): neither family is favoured, and a
	// broken one costs at most every other attempt. Within a family the
	// DNS order is kept (RFC 5321 §5.1).
	Addrs []netip.Addr
	// Secure is true when every address answer used was authenticated
	// (AD bit): the host's zone is signed, so its TLSA records may be
	// looked up (RFC 7672 §2.2.2).
	Secure bool
}

// Route looks up the mail exchangers of domain (U-labels are accepted and
// converted to A-labels) and their addresses.
//
// Errors: ErrInvalidName, ErrNXDomain, ErrNullMX and ErrNoAddress are
// permanent; the caller bounces (5.1.10 for a null MX). Anything else
// (ErrServFail, ErrRefused, ErrTimeout, ErrNoMXAddress, network errors,
// ctx's error) is temporary: Temporary(err) is true and the caller defers.
func (r *Resolver) Route(ctx context.Context, domain string) (Route, error) {
	name, err := canonical(domain)
	if err != nil {
		return Route{}, err
	}
	mx, err := r.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return Route{}, err
	}
	if mx.nxdomain {
		return Route{}, r.fail(name, dns.TypeMX, ErrNXDomain)
	}
	route := Route{Domain: display(name), Expires: mx.expires, Secure: mx.secure}
	if len(mx.rrs) == 0 {
		return r.implicit(ctx, route, name)
	}

	records := make([]*dns.MX, 0, len(mx.rrs))
	for _, rr := range mx.rrs {
		records = append(records, rr.(*dns.MX))
	}
	slices.SortStableFunc(records, func(a, b *dns.MX) int { return cmp.Compare(a.Preference, b.Preference) })
	// RFC 7505 §3: a domain with a null MX publishes no other MX. Postfix
	// decides on the most preferred record, and so do we; a stray "."
	// among real exchangers is skipped.
	if records[0].Mx == "." {
		return Route{}, r.fail(name, dns.TypeMX, ErrNullMX)
	}

	seen := make(map[string]bool)
	var reasons []string
	for _, rec := range records {
		if rec.Mx == "." {
			continue
		}
		host, err := canonical(rec.Mx)
		if err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		if seen[host] {
			continue // listed twice: the better preference came first
		}
		seen[host] = true
		h := Host{Name: display(host), Pref: rec.Preference}
		if ip, err := netip.ParseAddr(h.Name); err == nil {
			// Not valid per RFC 5321 §5.1, yet published; Postfix
			// connects to the address, so do we.
			if h.Addrs = r.filter(ip); h.Addrs != nil {
				route.MX = append(route.MX, h)
			}
			continue
		}
		addrs, expires, secure, err := r.addresses(ctx, host)
		if err != nil {
			if ctx.Err() != nil {
				return Route{}, err
			}
			reasons = append(reasons, err.Error())
			continue
		}
		if len(addrs) == 0 {
			reasons = append(reasons, fmt.Sprintf("%s: no address", h.Name))
			continue
		}
		h.Addrs, h.Secure = addrs, secure
		route.MX = append(route.MX, h)
		route.Expires = earliest(route.Expires, expires)
	}
	if len(route.MX) == 0 {
		// The per-host reasons go in as text: an MX host's NXDOMAIN must
		// not make the whole domain look permanently dead.
		err := fmt.Errorf("%w: %s", ErrNoMXAddress, strings.Join(reasons, "; "))
		return Route{}, r.fail(name, dns.TypeMX, err)
	}
	r.shuffleEqual(route.MX)
	return route, nil
}

// implicit builds the route of a domain without MX records: the domain
// itself at preference 0 (RFC 5321 §5.1).
func (r *Resolver) implicit(ctx context.Context, route Route, name string) (Route, error) {
	addrs, expires, secure, err := r.addresses(ctx, name)
	if err != nil {
		return Route{}, err
	}
	if len(addrs) == 0 {
		return Route{}, r.fail(name, dns.TypeMX, ErrNoAddress)
	}
	route.Implicit = true
	// The authenticated denial of MX and secure addresses make the domain
	// itself a secure host (RFC 7672 §2.2.1).
	route.Secure = route.Secure && secure
	route.MX = []Host{{Name: route.Domain, Addrs: addrs, Secure: secure}}
	route.Expires = earliest(route.Expires, expires)
	return route, nil
}

// addresses looks up the A and/or AAAA records of host (canonical) allowed
// by the IP version, ordered as Host.Addrs says. A failure of one family is
// tolerated when the other has addresses. A name that does not exist is an
// error wrapping ErrNXDomain; a name without addresses is (nil, nil).
// secure says every answer used carried the AD bit.
func (r *Resolver) addresses(ctx context.Context, host string) ([]netip.Addr, time.Time, bool, error) {
	var types []uint16
	switch r.ipVersion {
	case IPv4:
		types = []uint16{dns.TypeA}
	case IPv6:
		types = []uint16{dns.TypeAAAA}
	default:
		types = []uint16{dns.TypeA, dns.TypeAAAA}
	}
	var (
		byFamily [2][]netip.Addr
		expires  time.Time
		firstErr error
		secure   = true
	)
	for i, qtype := range types {
		a, err := r.lookup(ctx, host, qtype)
		if err != nil {
			if ctx.Err() != nil {
				return nil, time.Time{}, false, err
			}
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		if a.nxdomain {
			// The name does not exist, whatever the type: no need to ask
			// for the other family.
			return nil, time.Time{}, false, r.fail(host, qtype, ErrNXDomain)
		}
		byFamily[i] = addrsOf(a.rrs)
		expires = earliest(expires, a.expires)
		secure = secure && a.secure
	}
	if len(byFamily[0])+len(byFamily[1]) == 0 {
		return nil, time.Time{}, false, firstErr
	}
	if len(types) == 2 && r.coin() {
		byFamily[0], byFamily[1] = byFamily[1], byFamily[0]
	}
	return interleave(byFamily[0], byFamily[1]), expires, secure, nil
}

// filter keeps ip if its family is allowed.
func (r *Resolver) filter(ip netip.Addr) []netip.Addr {
	ip = ip.Unmap()
	switch {
	case r.ipVersion == IPv4 && !ip.Is4(), r.ipVersion == IPv6 && !ip.Is6():
		return nil
	}
	return []netip.Addr{ip}
}

func addrsOf(rrs []dns.RR) []netip.Addr {
	var out []netip.Addr
	for _, rr := range rrs {
		var raw []byte
		switch rr := rr.(type) {
		case *dns.A:
			raw = rr.A
		case *dns.AAAA:
			raw = rr.AAAA
		}
		if ip, ok := netip.AddrFromSlice(raw); ok {
			if rr.Header().Rrtype == dns.TypeA {
				ip = ip.Unmap()
			}
			out = append(out, ip)
		}
	}
	return out
}

func interleave(a, b []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(a)+len(b))
	for i := 0; i < max(len(a), len(b)); i++ {
		if i < len(a) {
			out = append(out, a[i])
		}
		if i < len(b) {
			out = append(out, b[i])
		}
	}
	return out
}

// shuffleEqual shuffles each run of hosts with the same preference (RFC 5321
// §5.1: "the sender-SMTP MUST randomize them to spread the load"). hosts is
// sorted by preference.
func (r *Resolver) shuffleEqual(hosts []Host) {
	for start := 0; start < len(hosts); {
		end := start + 1
		for end < len(hosts) && hosts[end].Pref == hosts[start].Pref {
			end++
		}
		if run := hosts[start:end]; len(run) > 1 {
			r.shuffle(len(run), func(i, j int) { run[i], run[j] = run[j], run[i] })
		}
		start = end
	}
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

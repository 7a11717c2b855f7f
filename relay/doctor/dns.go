package doctor

import (
	"context"
	"errors"
	"net/netip"

	"facteur/relay/resolver"
)

// DNS is what the checks ask of DNS. The checks call it from one goroutine
// except the block-list check, which queries its zones concurrently, so an
// implementation must be safe for concurrent use.
//
// Errors follow facteur/relay/resolver: a name that does not exist is an
// error wrapping resolver.ErrNXDomain; a name that exists without records of
// the type is an empty result and a nil error; a name that cannot be queried
// wraps resolver.ErrInvalidName; anything else is temporary
// (resolver.Temporary).
type DNS interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupA(ctx context.Context, name string) ([]netip.Addr, error)
	LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error)
	// LookupMX returns the exchanger names of name's MX records, most
	// preferred first. Unlike mail routing there is no implicit MX: a
	// name without MX records has none (RFC 7208 §5.4).
	LookupMX(ctx context.Context, name string) ([]string, error)
	LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error)
}

// ResolverDNS is DNS over facteur's own resolver, so that the doctor asks
// the server configured as `resolver` and shares its error typing. The
// resolver should allow both address families (resolver.IPAny): SPF and
// FCrDNS look at IPv4 and IPv6 alike.
type ResolverDNS struct {
	*resolver.Resolver
}

// LookupMX answers from Route, the only MX lookup the resolver has. Route
// leaves out the exchangers whose names have no address; SPF could not
// match those anyway, so the mx mechanism's outcome is the same, with two
// differences: the RFC 7208 §4.6.4 cap of 10 exchangers counts only
// resolvable ones, and when no exchanger's address can be looked up, even
// for a temporary reason (resolver.ErrNoMXAddress), the mechanism does not
// match instead of giving temperror. Route's other "no MX" outcomes
// (implicit MX, null MX, no address at all) are no exchanger here.
func (d ResolverDNS) LookupMX(ctx context.Context, name string) ([]string, error) {
	route, err := d.Route(ctx, name)
	switch {
	case errors.Is(err, resolver.ErrNullMX), errors.Is(err, resolver.ErrNoAddress), errors.Is(err, resolver.ErrNoMXAddress):
		return nil, nil
	case err != nil:
		return nil, err
	case route.Implicit:
		return nil, nil
	}
	names := make([]string, 0, len(route.MX))
	for _, h := range route.MX {
		names = append(names, h.Name)
	}
	return names, nil
}

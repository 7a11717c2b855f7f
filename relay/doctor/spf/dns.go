package spf

import (
	"context"
	"net/netip"
	"strings"

	"facteur/relay/resolver"
)

// DNS is what an evaluation asks of DNS. CheckHost calls it from one
// goroutine; callers that share an implementation across goroutines (the
// doctor's block-list checks do) need it safe for concurrent use.
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

// facteur's resolver is the DNS of the doctor and of its SPF check: it asks
// the server configured as `resolver` with facteur's error typing. It
// should allow both address families (resolver.IPAny): SPF looks at IPv4
// and IPv6 alike.
var _ DNS = (*resolver.Resolver)(nil)

// IsRecord reports whether a TXT record is an SPF record (RFC 7208 §4.5):
// "v=spf1" exactly, followed by a space or nothing; ABNF literals are
// case-insensitive, so "V=SPF1" is one and "v=spf10" is not.
func IsRecord(txt string) bool {
	return len(txt) >= 6 && strings.EqualFold(txt[:6], "v=spf1") && (len(txt) == 6 || txt[6] == ' ')
}

package resolver

import (
	"errors"
	"fmt"
)

// Permanent conditions: the caller bounces.
var (
	// ErrNXDomain: the name does not exist. Postfix bounces on it; so do we.
	ErrNXDomain = errors.New("domain does not exist (NXDOMAIN)")
	// ErrNullMX: the domain publishes the RFC 7505 null MX "0 ."; the caller
	// bounces with 5.1.10.
	ErrNullMX = errors.New("domain does not accept mail (null MX, RFC 7505)")
	// ErrNoAddress: the domain has no MX record and no address of the
	// allowed family, so there is no host to try (Postfix: 5.4.4 "Host
	// found but no data record of requested type").
	ErrNoAddress = errors.New("domain has no MX record and no address record")
	// ErrInvalidName: the name cannot be a domain name (bad characters,
	// empty or overlong label, failed IDNA conversion).
	ErrInvalidName = errors.New("invalid domain name")
)

// Temporary conditions: the caller defers.
var (
	// ErrNoMXAddress: MX records exist but none of their hosts has a usable
	// address right now (Postfix defers this case too).
	ErrNoMXAddress = errors.New("no MX host has a usable address")
	// ErrServFail: the server answered SERVFAIL.
	ErrServFail = errors.New("server failure (SERVFAIL)")
	// ErrRefused: the server answered REFUSED.
	ErrRefused = errors.New("query refused (REFUSED)")
	// ErrTimeout: no answer within Options.Timeout.
	ErrTimeout = errors.New("no answer in time")
)

// permanent lists the sentinels Temporary reports false for.
var permanent = []error{ErrNXDomain, ErrNullMX, ErrNoAddress, ErrInvalidName}

// Temporary reports whether err is worth retrying later. It is false for nil
// and for the permanent sentinels (ErrNXDomain, ErrNullMX, ErrNoAddress,
// ErrInvalidName), true for everything else, including errors this package
// does not know: deferring a message by mistake costs a retry, bouncing it by
// mistake loses it.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	for _, p := range permanent {
		if errors.Is(err, p) {
			return false
		}
	}
	return true
}

// Error is a failed lookup: which query, at which server, and why. Err wraps
// one of the package's sentinels or a network error.
type Error struct {
	Type   string // query type: "MX", "A", "AAAA", "TXT", "PTR"
	Name   string // the name as queried: lower case, A-labels, fully qualified
	Server string // host:port of the DNS server
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("dns %s %s: %v", e.Type, e.Name, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary is Temporary(e).
func (e *Error) Temporary() bool { return Temporary(e) }

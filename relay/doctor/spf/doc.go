// Package spf is RFC 7208's check_host(): it evaluates a domain's SPF
// policy for a client address as a receiving MX would, for `facteur
// doctor`. It is written here (it is small) rather than added as a
// dependency so that every lookup goes through the DNS interface, which
// facteur/relay/resolver implements: the doctor asks the
// configured `resolver` with facteur's error typing, never the system's.
//
// It implements every mechanism (all, include, a, mx, ptr, ip4, ip6,
// exists) with dual CIDR lengths, qualifiers, redirect=, the macros of §7
// (s l o d i p h v, transformers and URL escaping; c r t only in exp=,
// which is checked but not fetched since nobody reads an explanation here),
// the limits of §4.6.4 (10 lookups, 2 void lookups, 10 MX names) and loop
// detection. The openspf.org RFC 7208 test suite runs against it
// (suite_test.go).
//
// Invariants:
//   - Nothing panics on published data: records are parsed, never trusted;
//     a malformed record is a permerror.
//   - DNS errors never escape CheckHost: they are temperror, as the RFC
//     prescribes.
package spf

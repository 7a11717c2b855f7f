// Package doctor checks that a domain is set up for its mail from this relay
// to be delivered (issue 8 §5, `facteur doctor`): SPF authorises the
// relay's address, the DKIM keys in DNS are the configured ones, DMARC is
// published, the address has forward-confirmed reverse DNS matching the
// relay's hostname, and the address is on no DNS block list. Each check
// yields a Finding (ok, warn or fail) that explains itself and, when
// something is wrong, gives the record to publish or the action to take.
//
// SPF is evaluated by the subpackage facteur/relay/doctor/spf (RFC 7208's
// check_host()); this package turns its outcome into a finding.
//
// It does not own DNS: every lookup goes through the DNS interface, which
// *resolver.Resolver implements over facteur/relay/resolver, so that tests and
// the command share one code path against a loopback DNS server.
//
// Invariants:
//   - Nothing panics on published data: records are parsed, never trusted;
//     a malformed record is a permerror or a Fail finding.
//   - A DNS failure is never reported as a problem of the domain: it makes
//     the finding Warn ("could not check"), or temperror in SPF.
//   - Only Fail findings make Failed true, and so the command's exit status
//     non-zero.
package doctor

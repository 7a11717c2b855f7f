// Package resolver turns a recipient domain into the mail exchangers to try,
// with their addresses, over DNS spoken directly with github.com/miekg/dns
// (issue 4 §1). The standard library's resolver hides TTLs and cannot tell
// NXDOMAIN from a timeout reliably; delivery needs both.
//
// It owns the relay's DNS cache and nothing else: it opens no SMTP
// connection, knows no provider, and starts no goroutine. Every query goes to
// one server (config `resolver`, default the first nameserver of
// /etc/resolv.conf), over UDP with EDNS0, and again over TCP when the answer
// is truncated.
//
// Routing follows RFC 5321 §5.1 and Postfix:
//   - MX hosts in preference order; equal preferences shuffled on every
//     Route call, so that load spreads over them.
//   - No MX records (NOERROR, no data): the domain itself is the only host
//     (Route.Implicit).
//   - RFC 7505 null MX ("MX 0 ."): ErrNullMX, permanent (5.1.10).
//   - NXDOMAIN: ErrNXDomain, permanent, as Postfix treats it.
//   - SERVFAIL, REFUSED, timeouts, network errors: temporary.
//   - An MX host whose name does not resolve is skipped; when none
//     resolves the error is temporary (ErrNoMXAddress), when the implicit
//     host has no address it is permanent (ErrNoAddress), as in Postfix.
//
// Invariants:
//   - A cached answer is used only while the injected clock is before its
//     expiry: the smallest TTL of the records used (CNAMEs included, at most
//     MaxTTL), or for a negative answer the SOA minimum (RFC 2308 §5, at most
//     MaxNegativeTTL). Failures (SERVFAIL, timeouts) are never cached: the
//     delivery schedule already spaces retries, and a cached failure would
//     only delay the recovery.
//   - Concurrent lookups of the same name and type share one query
//     (golang.org/x/sync/singleflight); the shared query is not cancelled by
//     one caller's context, only bounded by Options.Timeout.
//   - Names leave the package in lower case, A-labels, without the trailing
//     dot. Errors wrap the sentinels of errors.go; Temporary(err) says
//     whether to defer (true) or bounce (false), and anything unknown is
//     temporary, since deferring is the safe mistake.
package resolver

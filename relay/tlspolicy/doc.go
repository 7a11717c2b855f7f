// Package tlspolicy decides, for each MX host of a recipient domain, the TLS
// an SMTP connection to it must reach: DANE (RFC 7672) when the host's
// TLSA records are DNSSEC-authenticated, else the domain's MTA-STS policy
// (RFC 8461) in enforce or testing mode, else opportunistic STARTTLS.
//
// It owns that decision only. The records come from relay/resolver (TLSA,
// with the AD bit) and relay/mtasts (the policy and its cache); the
// certificate matching is relay/dane's; the handshake and the refusal to go
// on are relay/delivery's (delivery.Security); the scheduler applies a
// routes entry's tls pin instead of asking here, and turns a refusal into a
// 4.7.5 deferral.
//
// Invariants:
//   - DANE is considered only when DANE is trusted (config delivery.dane),
//     the MX answer and the host's address answers were authenticated, and
//     then it takes precedence over MTA-STS for that host (RFC 8461 §2).
//   - A TLSA lookup that fails for a signed host (SERVFAIL: bogus data, a
//     timeout) refuses the host: never a fallback to plaintext (RFC 7672
//     §2.2). An authenticated denial, or an unsigned answer, means no DANE.
//   - Under MTA-STS enforce, a host that matches no mx pattern is refused,
//     never tried; the others must present a PKIX-valid certificate for
//     their name. Testing mode never refuses anything.
package tlspolicy

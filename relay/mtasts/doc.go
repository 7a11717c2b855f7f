// Package mtasts implements the sending side of SMTP MTA Strict Transport
// Security (RFC 8461): the _mta-sts TXT record, the HTTPS policy fetch, the
// strict policy parser, the MX patterns, and the policy cache kept in the
// queue database.
//
// It owns policy discovery and nothing about delivery: what a policy means
// for one MX connection (enforce, testing, none; DANE taking precedence) is
// relay/tlspolicy's decision, and the check of the MX certificate is
// relay/delivery's. No served Go module does this (the brief of issue 15),
// so the parser and the cache are ours; the fetch is net/http + crypto/tls
// with the system's roots (SSL_CERT_FILE and SSL_CERT_DIR are honoured) or
// an injected pool.
//
// Invariants:
//   - A policy is fetched only over HTTPS from mta-sts.DOMAIN with a
//     certificate valid for that name, no redirects followed, at most
//     MaxPolicySize bytes, within Options.Timeout, and it is used only if
//     it parses strictly (RFC 8461 §3.2, §3.3).
//   - A cached policy is never used past its max_age (§5.1); a changed id
//     in the TXT record refetches it; a failed refetch or a vanished TXT
//     record keeps the cached one until it expires (§3.3, §10.2).
//   - Without a usable record and without a cached policy, the domain has no
//     policy: nothing here ever blocks mail by itself.
//   - Name resolution for the fetch goes through the relay's resolver (the
//     `resolver` setting), never the system resolver.
package mtasts

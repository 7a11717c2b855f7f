// Package dkim owns facteur's DKIM signing keys: loading and checking them,
// signing outgoing messages with them (RFC 6376, RFC 8463 for Ed25519), and
// generating new keys with the DNS TXT record to publish.
//
// It does not read configuration files, log, or look anything up in DNS: the
// relay hands New the configured keys and logs the Result of each Sign.
//
// Invariants:
//   - A Signer is immutable once New returns: keys are loaded and checked
//     once, and Sign may be called from any number of goroutines.
//   - New refuses every key that is unreadable, malformed, weaker than 1024
//     bits (RSA), group or world accessible, or not of the configured
//     algorithm, and reports all of them at once.
//   - Sign only prepends DKIM-Signature fields: the lines of the message are
//     never re-wrapped or edited. The only changes it makes are to line
//     endings (bare LF becomes CRLF, as on the wire) and, for a message
//     that has no header/body separator, the empty line that ends the header.
//   - Every signature uses relaxed/relaxed canonicalisation and rsa-sha256 or
//     ed25519-sha256, signs From once more than it appears (so that a From
//     added later breaks the signature), and, when Options.Expiration is
//     set, carries an x= at least that far after its t=.
package dkim

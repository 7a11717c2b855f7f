// Package delivery runs outbound SMTP transactions on one connection: the
// client half of the relay, between the scheduler (which decides what goes
// where, and when) and the remote MX or relayhost.
//
// It owns: the TCP connection (from an optional source address), the
// greeting, EHLO with the configured hostname (HELO when EHLO is not
// recognised), opportunistic STARTTLS with the certificate checked but not
// required (Postfix's "may" level, RFC 7435), the plaintext retry on a new
// connection when TLS negotiation itself fails, AUTH PLAIN to a relayhost,
// and MAIL/RCPT/DATA with the per-phase timeouts of RFC 5321 §4.5.3.2.
//
// For an MX connection the caller may give a Security (issue 15), decided
// by relay/tlspolicy: it makes STARTTLS mandatory (encrypt), the PKIX
// certificate check fatal (verify, mta-sts) or replaces that check by DANE
// TLSA matching (dane); a session that does not reach it is refused
// (PolicyFailure), never retried in plaintext. Conn.Protection says what
// protected a session, Conn.Report what an MTA-STS policy in testing mode
// would have refused.
//
// It does not own routing, queueing, policy or logging: Dial and Send return
// what happened (replies verbatim, TLS details, which phase failed) and the
// caller decides and logs.
//
// Invariants:
//   - A recipient is reported delivered (RcptResult.Delivered) only when its
//     RCPT was accepted and the server answered 2xx after the final ".".
//   - A recipient whose fate is not known, because the connection broke or
//     timed out before the server answered for it, has a zero Reply: the
//     caller must keep it queued. Send then also returns an error.
//   - Every network read and write runs under a deadline from Timeouts;
//     cancelling ctx closes the connection, which ends any blocked I/O.
//   - The message bytes are sent as given; the only change is the
//     dot-stuffing of the DATA encoding (and a CRLF for a bare LF), so the
//     DKIM signature made at acceptance stays valid.
//   - After a 421 reply, a broken connection or a timeout, the Conn is
//     closed and Usable reports false.
//
// A Conn is not safe for concurrent use: one goroutine drives it. To abandon
// a transaction from elsewhere, cancel the ctx given to Send.
//
// go-smtp's client (v0.25.1) has no exported STARTTLS that keeps a chosen
// EHLO name, so this package sends STARTTLS itself on the raw connection
// after go-smtp's EHLO, and gives go-smtp a fresh client over the TLS
// connection. go-smtp also adds BODY=8BITMIME to MAIL whenever the server
// offers 8BITMIME, whatever the content: harmless, since 7-bit data is also
// valid 8BITMIME content.
package delivery

// Package bounce reads asynchronous bounces: the messages that come back to
// facteur's Return-Path after a remote server accepted a message and failed
// to deliver it later, and the feedback reports (complaints) of the mailbox
// providers' loops.
//
// It owns three things:
//   - Parse: turning one raw message into a Report, whatever its format:
//     RFC 3464 delivery status notifications (multipart/report;
//     report-type=delivery-status, also when the delivery-status part is
//     inside a multipart/mixed or pasted into the text), RFC 5965 ARF
//     feedback reports, Amazon SES JSON notifications (also inside SNS's
//     envelope), a bounce a gateway returned attached to its own notice,
//     and the non-standard
//     human-readable bounces of qmail, Exim, old Exchange, Sendmail v5,
//     Domino/Notes, Gmail, Yahoo and others. Auto-replies (vacation, out of
//     office) and successful DSNs are recognised as not_a_bounce.
//   - Decide: classifying each recipient's failure with the policy package's
//     rules (the SMTP reply found in the bounce), refined by what only a
//     bounce carries (the DSN Action and Status fields), and deciding
//     suppression per issue 7.
//   - VERP tokens: a return path bounces+TOKEN@domain that names the queue ID
//     and the recipient, authenticated with a truncated HMAC.
//
// Invariants:
//   - Parse never panics on any input and changes nothing; it reads only the
//     message. Decide reads only the policy.
//   - Parse reads, per recipient, the SMTP stage the remote reply answered,
//     from each MTA's own format (Postfix's "(in reply to RCPT TO
//     command)", Exim's "after MAIL FROM:", Sendmail's transcript, qmail's
//     "does not like recipient"), and whether the reason belongs to this
//     recipient alone (a DSN group, its own block of text, the only
//     recipient of the bounce).
//   - A recipient is suppressed at once only on positive evidence: a failed
//     Action with a 5.x.x status or 5xx reply, of class user_unknown or
//     host_unknown, that belongs to this recipient, not in reply to MAIL
//     FROM, the greeting or DATA, with no contrary words (a rate, a policy,
//     a block, an IP, the sender, a transient DNS failure); or on a
//     complaint (ARF abuse report). The one 4xx that suppresses is a failed
//     user unknown at RCPT that the reporting MTA retried until it gave up.
//   - Doubt is a soft bounce (Soft): never suppressed at once, counted by
//     the caller towards the repeated-bounce rule of a full mailbox.
//   - Every decision says why (Rule, Evidence).
//   - Extraction and classification are separate steps: Parse fills
//     addresses, actions, statuses and diagnostics; only Decide fills class
//     and suppression.
package bounce

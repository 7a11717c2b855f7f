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
//     feedback reports, Amazon SES JSON notifications, and the non-standard
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
//   - A recipient is suppressed only on permanent evidence (a failed Action
//     with a 5.x.x status or 5xx reply) whose class is user_unknown or
//     host_unknown, or on a complaint (ARF abuse report). A delayed or 4xx
//     result never suppresses; neither does a block, a policy or spam
//     verdict, a full mailbox, nor anything that names the sender.
//   - Extraction and classification are separate steps: Parse fills
//     addresses, actions, statuses and diagnostics; only Decide fills class
//     and suppression.
package bounce

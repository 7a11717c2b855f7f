// Package dsn builds the delivery status notifications facteur sends back to
// a message's envelope sender when a recipient fails permanently, expires,
// or (optionally) is delayed (issue 4 §6).
//
// A DSN is an RFC 3464 multipart/report; report-type=delivery-status with
// three parts, as Postfix's bounce daemon writes them: a text/plain
// explanation for people, the machine-readable message/delivery-status
// (Reporting-MTA, X-Facteur-Queue-ID, Arrival-Date, then per recipient
// Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code with the
// remote's full reply, Last-Attempt-Date, Will-Retry-Until), and the
// original message's header as text/rfc822-headers.
//
// It owns only the bytes. Invariants of the output: CRLF line endings, no
// bare CR or LF, every line shorter than 998 octets (RFC 5322 §2.1.1),
// header fields free of injected line breaks, deterministic for a given
// Bounce (the boundary and Message-ID derive from the queue ID and Now), so
// that golden files pin it. Queuing the DSN with the null sender <> and
// never bouncing to <> (no bounce loops, no backscatter) is the caller's job;
// Build refuses an empty Sender to make that mistake loud.
package dsn

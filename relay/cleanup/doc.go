// Package cleanup is Postfix's cleanup role: it turns a submission (from an
// SMTP session or the maildrop) into a queued message. It normalises line
// endings and refuses SMTP smuggling and NUL bytes, rewrites the envelope
// (aliases, senders, local_domain), removes Bcc, adds missing From, Date and
// Message-ID, prepends Received, refuses loops by hop count, DKIM-signs once
// (so that every retry sends the same bytes) and enqueues with one fsync'd
// commit. It logs the "received" event. It holds no state of its own.
package cleanup

// Package dashboard is the web dashboard for the people on call (issue
// 18): overview, providers, senders, queue and suppressions pages,
// rendered on the server with html/template, its stylesheet embedded. It
// is served on the admin listener at "/" and "/ui/..." and hands every
// other path to the admin API.
//
// It owns the browser's session (a login form that checks admin_token and
// sets an HttpOnly, SameSite=Strict cookie), the CSRF tokens of its forms,
// the Host check against DNS rebinding, the per-provider and per-sender
// outcome counts of the last day (Tally) and the recent log lines of each
// message (LogBook). It owns no queue or policy state: it reads and
// changes them through Source, which the daemon implements.
//
// Invariants: every state change is a POST carrying the session's CSRF
// token from the same origin; a page is never served without a session or
// the admin bearer token, and never without admin_token configured; no
// message body is shown but on its own page, reached by an explicit click.
// A page reads the queue's counters, never the whole queue: the queue page
// stops its walk after a bounded number of messages.
package dashboard

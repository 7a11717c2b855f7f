// Package breaker is the per-sender circuit breaker of issue 21: it watches
// how each sender's recipients fare and stops the one whose mail is failing
// (a hacked PHP site mailing harvested addresses) before the mailbox
// providers block the server's IP for every sender on it.
//
// A sender is watched under several keys at once, each one separately
// (config `per`): the local user that submitted the message
// (`user=www-data`), the authenticated SMTP user (`auth_user=alice`, both
// under `per: user`) and the envelope sender's domain
// (`sender_domain=example.com`). For each key, over a sliding window
// (config `window`, kept as 60 buckets), it counts the recipients
// attempted, those that failed (bounced with a 5xx, or found suppressed)
// and those deferred (their attempt got a 4xx). Each recipient counts once:
// a recipient deferred and then delivered (greylisting) ends up counted as
// delivered, so a retry never inflates the figures. Deferrals that are the
// provider's doing, not the sender's (a `rate_limited` class, or a reply
// whose rule suspends, throttles or backs off the whole provider, such as
// Yahoo's [TSS04] wave), are not counted at all. Past `min_recipients`
// recipients in the window, a failed share above `max_failed` or a deferred
// share above `max_deferred` trips the key.
//
// A tripped key stays tripped until a human resets it (Reset); the breaker
// then re-arms with an empty window, so that the mail released by the reset
// is judged afresh. The package decides only: it does no I/O, reads no
// clock (every time is an argument) and starts no goroutine. The daemon
// (relay/daemon) holds the sender's mail, logs, notifies and saves the state
// (MarshalState) in the queue's state store so that it survives a restart.
//
// Memory: per watched key, 60 buckets and the last 256 failures (for the
// top domains and replies of the notification); per recipient deferred in
// the window, one entry (bounded by maxPending). Keys idle for a whole
// window and not tripped are forgotten.
package breaker

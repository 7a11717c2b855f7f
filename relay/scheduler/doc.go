// Package scheduler is Postfix's qmgr and smtp roles: it moves due
// recipients from the queue's due-time index into delivery, shaped by the
// provider policy.
//
// Each cycle takes a bounded window of due recipients (Store.Due, never a
// scan of the queue), groups them by message and destination domain into
// lanes, and starts workers up to the provider's connection limit and the
// global worker count. A worker resolves the domain (MX, or the relayhost
// or a route), asks the policy for a connection slot and for each message a
// token of the provider's rate, sends over one connection as many messages
// as messages_per_connection allows (several recipients of a domain in one
// transaction), and records each recipient's outcome: 2xx delivered; a
// failing reply judged by the policy (defer on its schedule, bounce with a
// DSN, and suppress, throttle, suspend or back off as the policy says). A
// suspended provider's recipients are deferred to the end of the
// suspension without an attempt; nothing extends a recipient's lifetime,
// at whose end it expires with a DSN. A destination that does not answer
// (the relayhost, a route, a domain's MX set) is marked dead after a
// failed connection: its due recipients are deferred in bulk as they come
// due, without a connection each, until one probe at the end of a back-off
// period finds it alive (dead.go, Postfix's dead-site logic).
//
// Invariants: a recipient is in flight in at most one lane; its status
// changes only on a remote reply (or a local verdict such as expiry, NXDOMAIN
// or a null MX), so that what was not acknowledged stays due; an attempt
// cut by shutdown counts as none. The scheduler owns its goroutines: Run
// returns once every worker has exited. Time comes from the injected Clock.
package scheduler

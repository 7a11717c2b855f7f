package scheduler

import (
	"time"

	"facteur/policy"
)

// Shaper is what the scheduler asks the provider policy (issue 5): who a
// destination is, whether it may connect or send now, and what a reply
// means. It is a decision over state and the time it is given; it does no
// I/O and starts no goroutine. EngineShaper adapts policy.Engine to it.
type Shaper interface {
	// Recognize names the provider of domain, from the domain and its MX
	// host names (none with a relayhost or a route).
	Recognize(domain string, mx []string) string
	// Limits are the provider's per-connection knobs.
	Limits(provider string) Limits
	// Every shaping call names the source IP (src, "" the default
	// address): limits and suspensions are kept per (source IP, provider)
	// (issue 17 §2); with src "" Suspended says only what holds every IP.
	//
	// Acquire asks for a connection slot. Not ok: wait until `until`
	// (the end of a suspension when suspended, else the zero time: retry
	// when a connection of the provider closes).
	Acquire(src, provider, domain string, now time.Time) (release func(), ok bool, until time.Time, suspended bool, why string)
	// Allow takes one message from the provider's rate now, or says when
	// to ask again.
	Allow(src, provider, domain string, now time.Time) (ok bool, at time.Time)
	// Suspended returns the end of the provider's suspension, if any.
	Suspended(src, provider, domain string, now time.Time) (until time.Time, why string, ok bool)
	// Observe judges a failing reply and applies any provider-wide action.
	Observe(src, provider, domain string, r policy.Reply, now time.Time) Verdict
	// Delivered reports a success (resets backoff, lets throttles recover).
	Delivered(src, provider, domain string, now time.Time) []policy.Event
	// NextAttempt is the recipient's next retry after `attempts` attempts
	// since queuedAt; expired when the provider's lifetime is over.
	NextAttempt(provider string, attempts int, queuedAt, now time.Time) (next time.Time, expired bool)
	// Deadline is when a recipient queued at queuedAt expires.
	Deadline(provider string, queuedAt time.Time) time.Time
	// MailboxFullSuppress applies issue 7's repeated-bounce rule to the
	// times of an address's permanent mailbox_full bounces.
	MailboxFullSuppress(bounces []time.Time, now time.Time) bool
}

// Limits are the per-connection shaping knobs (0: no limit).
type Limits struct {
	Connections           int
	MessagesPerConnection int
	RecipientsPerMessage  int
}

// Verdict is the policy's answer to a reply, plus the provider events to log.
type Verdict struct {
	Decision policy.Decision
	Events   []policy.Event
}

// EngineShaper is the Shaper of a running facteur: the policy engine.
type EngineShaper struct{ E *policy.Engine }

func (s EngineShaper) Recognize(domain string, mx []string) string {
	return s.E.Policy().Recognize(domain, mx)
}

func (s EngineShaper) Limits(provider string) Limits {
	l := s.E.Limits(provider)
	return Limits{Connections: l.Connections, MessagesPerConnection: l.MessagesPerConnection, RecipientsPerMessage: l.RecipientsPerMessage}
}

func (s EngineShaper) Acquire(src, provider, domain string, now time.Time) (func(), bool, time.Time, bool, string) {
	release, wait, why, ok := s.E.AcquireFrom(src, provider, domain, now)
	return release, ok, wait, !ok && !wait.IsZero(), why
}

func (s EngineShaper) Allow(src, provider, domain string, now time.Time) (bool, time.Time) {
	return s.E.AllowFrom(src, provider, domain, now)
}

func (s EngineShaper) Suspended(src, provider, domain string, now time.Time) (time.Time, string, bool) {
	until, why := s.E.SuspendedUntilFrom(src, provider, domain, now)
	return until, why, !until.IsZero()
}

func (s EngineShaper) Observe(src, provider, domain string, r policy.Reply, now time.Time) Verdict {
	o := s.E.ObserveFrom(src, provider, domain, r, now)
	return Verdict{Decision: o.Decision, Events: o.Events}
}

func (s EngineShaper) Delivered(src, provider, domain string, now time.Time) []policy.Event {
	return s.E.DeliveredFrom(src, provider, domain, now)
}

func (s EngineShaper) NextAttempt(provider string, attempts int, queuedAt, now time.Time) (time.Time, bool) {
	return s.E.NextAttempt(provider, attempts, queuedAt, now)
}

func (s EngineShaper) Deadline(provider string, queuedAt time.Time) time.Time {
	return s.E.Deadline(provider, queuedAt)
}

func (s EngineShaper) MailboxFullSuppress(bounces []time.Time, now time.Time) bool {
	return s.E.Policy().MailboxFullSuppress(bounces, now)
}

package scheduler

import (
	"fmt"
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
	// Observe judges a failing reply to mail of sender domain sender ("" the
	// null sender) and applies any provider-wide action; a reply about the
	// sender domain (DMARC, SPF, DKIM, domain reputation) holds only that
	// sender domain's mail (issue 14 §2).
	Observe(src, sender, provider, domain string, r policy.Reply, now time.Time) Verdict
	// SenderHeld returns the end of the hold of sender domain sender's mail
	// at the provider, if any: the connection and other senders go on.
	SenderHeld(sender, provider, domain string, now time.Time) (until time.Time, why string, ok bool)
	// Delivered reports a success (resets backoff, lets throttles recover).
	Delivered(src, sender, provider, domain string, now time.Time) []policy.Event
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
type EngineShaper struct {
	E     *policy.Engine
	Fleet Fleet
}

// Fleet is what the scheduler asks of the nodes it shares its limits and
// reputation with (relay/cluster, issue 14): connection slots and rates
// counted for every node sending from the same source IP, and the news of
// what this node learned. Its calls have short timeouts and fall back to
// this node's share of each limit by themselves.
type Fleet interface {
	// Acquire takes one of limit slots of budget (0: no limit).
	Acquire(budget string, limit int) (release func(), ok bool)
	// Allow takes one message of budget's rate, one per interval (0:
	// unlimited), or says when to ask again.
	Allow(budget string, interval time.Duration, now time.Time) (ok bool, at time.Time)
	// Learned tells the others of a suspension, backoff or throttle of
	// scope key (the engine's scope key) with the scope of the reply; src
	// is the pool's source IP the key holds ("" the node's own).
	Learned(scope policy.Scope, src, key string, st policy.ScopeState, now time.Time)
}

func (s EngineShaper) Recognize(domain string, mx []string) string {
	return s.E.Policy().Recognize(domain, mx)
}

func (s EngineShaper) Limits(provider string) Limits {
	l := s.E.Limits(provider)
	return Limits{Connections: l.Connections, MessagesPerConnection: l.MessagesPerConnection, RecipientsPerMessage: l.RecipientsPerMessage}
}

func (s EngineShaper) Acquire(src, provider, domain string, now time.Time) (func(), bool, time.Time, bool, string) {
	release, wait, why, ok := s.E.AcquireFrom(src, provider, domain, now)
	if !ok || s.Fleet == nil {
		return release, ok, wait, !ok && !wait.IsZero(), why
	}
	budget, _, limit := s.E.ShapeFrom(src, provider, domain, now)
	shared, ok := s.Fleet.Acquire(budget, limit)
	if !ok {
		release()
		return nil, false, time.Time{}, false, fmt.Sprintf("connections: %d in use by the nodes sending from this IP", limit)
	}
	return func() { shared(); release() }, true, time.Time{}, false, ""
}

func (s EngineShaper) Allow(src, provider, domain string, now time.Time) (bool, time.Time) {
	if s.Fleet == nil {
		return s.E.AllowFrom(src, provider, domain, now)
	}
	// The shared rate replaces the node's own: a suspension still stops
	// the message first.
	if until, _ := s.E.SuspendedUntilFrom(src, provider, domain, now); !until.IsZero() {
		return false, until
	}
	budget, r, _ := s.E.ShapeFrom(src, provider, domain, now)
	return s.Fleet.Allow(budget, r.Interval(), now)
}

func (s EngineShaper) Suspended(src, provider, domain string, now time.Time) (time.Time, string, bool) {
	until, why := s.E.SuspendedUntilFrom(src, provider, domain, now)
	return until, why, !until.IsZero()
}

func (s EngineShaper) Observe(src, sender, provider, domain string, r policy.Reply, now time.Time) Verdict {
	o := s.E.ObserveSender(src, sender, provider, domain, r, now)
	if s.Fleet != nil {
		_, sk := s.E.Keys(provider, domain)
		for _, ev := range o.Events {
			// The engine holds an IP's news under SRC|KEY, a rule's
			// `scope: provider` under the bare key (every source IP), a
			// sender domain's under from:DOMAIN|KEY (every node, that
			// domain's mail only).
			key, scope := policy.SourceKey(ev.SourceIP, sk), policy.ScopeOf(o.Decision, r)
			if ev.SenderDomain != "" {
				key, scope = policy.SenderKey(ev.SenderDomain, sk), policy.ScopeDomain
			} else if scope == policy.ScopeDomain {
				// A reply about the domain that could not be kept per
				// sender domain (no sender, a `scope: provider` rule, a
				// throttle) holds what the engine held.
				scope = policy.ScopeProvider
				if ev.SourceIP != "" {
					scope = policy.ScopeIP
				}
			}
			if src != "" && ev.SourceIP == "" && ev.SenderDomain == "" {
				scope = policy.ScopeProvider
			}
			s.Fleet.Learned(scope, ev.SourceIP, key, s.E.ScopeOfKey(key), now)
			break // one scope changed: one news
		}
	}
	return Verdict{Decision: o.Decision, Events: o.Events}
}

func (s EngineShaper) SenderHeld(sender, provider, domain string, now time.Time) (time.Time, string, bool) {
	until, why := s.E.SenderHeld(sender, provider, domain, now)
	return until, why, !until.IsZero()
}

func (s EngineShaper) Delivered(src, sender, provider, domain string, now time.Time) []policy.Event {
	return s.E.DeliveredSender(src, sender, provider, domain, now)
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

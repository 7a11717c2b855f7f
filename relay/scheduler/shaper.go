package scheduler

import (
	"fmt"
	"time"

	"facteur/policy"
)

// EngineShaper is what the scheduler asks about providers (issue 5): the
// policy engine E, whose answers are policy values (an Admission to
// connect or send, an Outcome for a reply), and the Fleet it shares its
// limits and news with (nil: this node alone). Its methods are the calls
// where the fleet has a say; for the rest (recognition, limits, retry
// schedule, suspensions and holds) the scheduler asks E. It does no I/O of
// its own and starts no goroutine.
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

// Acquire asks for a connection slot from source IP src ("" the default
// address): the engine's, then, with a fleet, one of the slots the nodes
// sending from that IP share.
func (s EngineShaper) Acquire(src, provider, domain string, now time.Time) policy.Admission {
	a := s.E.AcquireFrom(src, provider, domain, now)
	if !a.OK || s.Fleet == nil {
		return a
	}
	budget, _, limit := s.E.ShapeFrom(src, provider, domain, now)
	shared, ok := s.Fleet.Acquire(budget, limit)
	if !ok {
		a.Release()
		return policy.Admission{Source: src, Why: fmt.Sprintf("connections: %d in use by the nodes sending from this IP", limit)}
	}
	release := a.Release
	a.Release = func() { shared(); release() }
	return a
}

// Allow takes one message from the rate of (src, provider), or says when
// to ask again; with a fleet, the shared rate replaces the node's own.
func (s EngineShaper) Allow(src, provider, domain string, now time.Time) policy.Admission {
	if s.Fleet == nil {
		return s.E.AllowFrom(src, provider, domain, now)
	}
	// The shared rate replaces the node's own: a suspension still stops
	// the message first.
	if until, why := s.E.SuspendedUntilFrom(src, provider, domain, now); !until.IsZero() {
		return policy.Admission{Source: src, Until: until, Suspended: true, Why: why}
	}
	budget, r, _ := s.E.ShapeFrom(src, provider, domain, now)
	ok, at := s.Fleet.Allow(budget, r.Interval(), now)
	if ok {
		return policy.Admission{OK: true, Source: src}
	}
	return policy.Admission{Source: src, Until: at, Why: "rate: " + r.String() + ", shared by the nodes sending from this IP"}
}

// Observe judges a failing reply to mail of sender domain sender ("" the
// null sender) and applies any provider-wide action; a reply about the
// sender domain (DMARC, SPF, DKIM, domain reputation) holds only that
// sender domain's mail (issue 14 §2). With a fleet, the others learn of the
// scope it changed.
func (s EngineShaper) Observe(src, sender, provider, domain string, r policy.Reply, now time.Time) policy.Outcome {
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
	return o
}

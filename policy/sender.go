package policy

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// Sender-domain scopes (issue 14 §2): a reply about the sender domain (DMARC, SPF, DKIM,
// domain reputation) judges that domain's mail, not the IP nor the provider. Its suspension or
// backoff is kept per (sender domain, provider) under SenderKey, and holds only the messages
// of that sender domain: the connection, the rate and the other sender domains' mail go on.

// senderPrefix marks a sender-domain key, so that it can never be mistaken for a source IP's.
const senderPrefix = "from:"

// SenderKey is the state key of (sender domain, provider scope key): `from:DOMAIN|KEY`. A
// resume of the provider (its bare key) ends it too, as it ends each source IP's window.
func SenderKey(senderDomain, key string) string {
	return senderPrefix + normalizeHost(senderDomain) + "|" + key
}

// senderScope returns the scope of (sender, provider) for the reply judged as d, or nil when
// the reply is not about the sender domain (or no sender domain is known, as for the null
// sender of a bounce, which has no domain to judge).
func (e *Engine) senderScope(sender, provider, domain string, d Decision, r Reply) (*scope, string) {
	if sender == "" || d.Scope == RuleScopeProvider || ScopeOf(d, r) != ScopeDomain {
		return nil, ""
	}
	_, _, sk := e.keys(provider, domain)
	k := SenderKey(sender, sk)
	return e.scope(k), k
}

// ObserveSender is ObserveFrom for the mail of sender domain sender ("" unknown): a suspension
// or backoff caused by a reply about the sender domain holds (sender domain, provider) only,
// so that the other sender domains keep delivering on the same IP. Throttles stay with the
// connection's rate (ObserveFrom): a rate is the IP's, shared by every sender domain.
func (e *Engine) ObserveSender(src, sender, provider, domain string, r Reply, now time.Time) Outcome {
	e.mu.Lock()
	d := e.p.Classify(provider, r)
	s, _ := e.senderScope(sender, provider, domain, d, r)
	if s == nil || (d.Action != Suspend && d.Action != Backoff) {
		e.mu.Unlock()
		return e.ObserveFrom(src, provider, domain, r, now)
	}
	defer e.mu.Unlock()
	pr, b, _, _ := e.budgetFrom(src, provider, domain, now)
	out := Outcome{Decision: d}
	ev := Event{Provider: pr.Name, Domain: b.domain, Group: pr.Group, Affects: e.affects(pr), Reason: r.String(),
		SenderDomain: normalizeHost(sender)}
	switch d.Action {
	case Suspend:
		if until := now.Add(d.Duration); until.After(s.until) {
			s.until, s.reason, s.cause, s.scope = until, r.String(), Suspend, ScopeDomain
			ev.Kind, ev.Until = Suspended, until
			out.Events = append(out.Events, ev)
		}
	case Backoff:
		if now.Before(s.until) && s.cause == Backoff {
			break
		}
		s.backoff++
		if until := now.Add(backoffWindow(pr.Knobs.Backoff, s.backoff)); until.After(s.until) {
			s.until = until
		}
		s.reason, s.cause, s.scope = r.String(), Backoff, ScopeDomain
		ev.Kind, ev.Until, ev.BackoffLevel = Suspended, s.until, s.backoff
		out.Events = append(out.Events, ev)
	}
	if now.Before(s.until) {
		out.Until = s.until
	}
	return out
}

// SenderHeld returns the end of the window of (sender domain, provider) and the reply that
// caused it, or the zero time when sender's mail may go: the scheduler asks it for each
// message before sending it on a connection.
func (e *Engine) SenderHeld(sender, provider, domain string, now time.Time) (time.Time, string) {
	if sender == "" {
		return time.Time{}, ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _, sk := e.keys(provider, domain)
	if s := e.scopes[SenderKey(sender, sk)]; s != nil && now.Before(s.until) {
		return s.until, s.reason
	}
	return time.Time{}, ""
}

// DeliveredSender records a delivered message of sender domain sender: its own backoff level
// goes back to zero, as DeliveredFrom does for the IP and the provider.
func (e *Engine) DeliveredSender(src, sender, provider, domain string, now time.Time) []Event {
	if sender != "" {
		e.mu.Lock()
		_, _, sk := e.keys(provider, domain)
		if s := e.scopes[SenderKey(sender, sk)]; s != nil {
			s.backoff = 0
		}
		e.mu.Unlock()
	}
	return e.DeliveredFrom(src, provider, domain, now)
}

// SenderState is one sender domain held at one provider (`providers --json`, issue 14).
type SenderState struct {
	Domain          string     `json:"domain"`
	SuspendedUntil  *time.Time `json:"suspended_until"`
	SuspendedReason *string    `json:"suspended_reason"`
	Scope           Scope      `json:"scope"`
	BackoffLevel    int        `json:"backoff_level"`
}

// sendersOf returns the sender domains held at scope key sk now, sorted. Caller holds e.mu.
func (e *Engine) sendersOf(sk string, now time.Time) []SenderState {
	var keys []string
	for k, s := range e.scopes {
		if strings.HasPrefix(k, senderPrefix) && strings.HasSuffix(k, "|"+sk) && now.Before(s.until) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, k := range keys {
		seen[k] = true
	}
	var out []SenderState
	for _, k := range slices.Sorted(maps.Keys(seen)) {
		s := e.scopes[k]
		u, r := s.until.UTC(), s.reason
		out = append(out, SenderState{Domain: strings.TrimSuffix(strings.TrimPrefix(k, senderPrefix), "|"+sk),
			SuspendedUntil: &u, SuspendedReason: &r, Scope: ScopeDomain, BackoffLevel: s.backoff})
	}
	return out
}

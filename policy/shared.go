package policy

import (
	"regexp"
	"time"
)

// Scope says what a reply judged, and so which senders a suspension, throttle or backoff it
// causes holds for when nodes share their state (issue 14 §2). Its string is the JSON
// contract of `providers --json`.
type Scope string

// Scopes of a reply.
const (
	ScopeIP       Scope = "ip"       // the sending IP: every node sending from it
	ScopeDomain   Scope = "domain"   // the sender domain: every node, for that domain's mail
	ScopeProvider Scope = "provider" // the provider (or its reputation group) as a whole
)

// Replies about the sending IP name it, a block list, or a provider's IP-reputation code:
// Yahoo's TSS/IPTS, Microsoft's S3140 and SC-00x, Free's "trop d'erreurs"/"too many errors
// from your IP", Orange/SFR's OFR codes about IPs.
var ipWords = regexp.MustCompile(`(?i)\bIP\b|\bTSS0\d\b|\bIPTS0\d\b|\bS3140\b|\bSC-00\d\b|\bRP-00\d\b|block ?list|black ?list|spamhaus|barracuda|spamcop|\bRBL\b|\bDNSBL\b|too many (errors|connections)`)

// Replies about the sender domain: authentication (SPF/DKIM/DMARC) and domain reputation.
var domainWords = regexp.MustCompile(`(?i)\bDMARC\b|\bDKIM\b|\bSPF\b|domain reputation|sender domain|from domain|5\.7\.(26|27|515)\b`)

// ScopeOf is the scope of the reply r judged as d: the IP for replies about the IP (and for
// ip_blocked and rate_limited, which providers apply per IP), the sender domain for
// authentication failures and domain reputation, the provider otherwise.
func ScopeOf(d Decision, r Reply) Scope {
	line := r.String()
	switch {
	case d.Class == AuthFailure || domainWords.MatchString(line):
		return ScopeDomain
	case d.Class == IPBlocked || d.Class == RateLimited || ipWords.MatchString(line):
		return ScopeIP
	}
	return ScopeProvider
}

// ScopeState is the reputation state of one scope key (a group, a provider or a default
// destination), as nodes exchange it.
type ScopeState struct {
	Until       time.Time `json:"until,omitzero"`
	Reason      string    `json:"reason,omitempty"`
	Cause       Action    `json:"cause,omitempty"`
	Scope       Scope     `json:"scope,omitempty"`
	Backoff     int       `json:"backoff,omitempty"`
	Throttle    int       `json:"throttle,omitempty"`
	ThrottledAt time.Time `json:"throttled_at,omitzero"`
}

// Keys returns the budget key (where connections and the rate are counted) and the scope key
// (where suspensions, backoff and throttles are kept) of provider, and of domain under the
// default provider.
func (e *Engine) Keys(provider, domain string) (budgetKey, scopeKey string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, bk, sk := e.keys(provider, domain)
	return bk, sk
}

// Shape returns the budget key of provider (domain) and the rate and connection limit in
// force there now (the rate divided by any throttle), for a caller that counts them across
// nodes.
func (e *Engine) Shape(provider, domain string, now time.Time) (budgetKey string, r Rate, connections int) {
	return e.ShapeFrom("", provider, domain, now)
}

// ShapeFrom is Shape for source IP src (issue 17's pools): its budget key is SRC|KEY.
func (e *Engine) ShapeFrom(src, provider, domain string, now time.Time) (budgetKey string, r Rate, connections int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pr, b, _, _ := e.budgetFrom(src, provider, domain, now)
	return b.key, b.rate, pr.Knobs.Connections
}

// ScopeOfKey returns the state of scope key (zero when none).
func (e *Engine) ScopeOfKey(key string) ScopeState {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.scopes[key]
	if s == nil {
		return ScopeState{}
	}
	return ScopeState{Until: s.until, Reason: s.reason, Cause: s.cause, Scope: s.scope, Backoff: s.backoff, Throttle: s.throttle, ThrottledAt: s.throttledAt}
}

// Impose applies the state another node learned for scope key: a suspension or backoff
// window is never shortened (only extended), the backoff level never lowered, and the
// throttle level becomes the other node's when it changed later than this one's. It reports
// whether anything changed.
func (e *Engine) Impose(key string, st ScopeState, now time.Time) bool {
	if key == "" || st.Backoff < 0 || st.Throttle < 0 || st.Throttle > 64 {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.scope(key)
	changed := false
	if st.Until.After(s.until) && now.Before(st.Until) {
		s.until, s.reason, s.cause, s.scope = st.Until, st.Reason, st.Cause, st.Scope
		changed = true
	}
	if st.Backoff > s.backoff {
		s.backoff, changed = st.Backoff, true
	}
	if st.ThrottledAt.After(s.throttledAt) && st.Throttle != s.throttle {
		s.throttle, s.throttledAt = st.Throttle, st.ThrottledAt
		e.applyScopeRates(s, now)
		changed = true
	}
	return changed
}

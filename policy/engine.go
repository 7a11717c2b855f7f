package policy

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ErrUnknownProvider is returned by Resume for a name that is neither a provider, a group nor
// a destination domain of the default provider.
var ErrUnknownProvider = errors.New("unknown provider")

// Engine holds the live shaping state of every provider: connection counts, rate limiters,
// suspensions, backoff and throttle levels (issue 5 §3-§7). It is a decision over that state
// and the time the caller passes: it starts no goroutine and never reads the clock. All
// methods are safe for concurrent use.
//
// Limits (connections, rate) apply per provider, or per destination domain under the default
// provider. Reputation state (suspension, backoff, throttle) applies per reputation group, so
// that a block at orange holds sfr and laposte too.
type Engine struct {
	mu sync.Mutex // guards all below
	p  *Policy
	// budgets by budget key: the provider name, or "default:<domain>".
	budgets map[string]*budget
	// scopes by scope key: the group, else the budget key.
	scopes map[string]*scope
	// sources are the outbound IPs Snapshot reports (SetSources).
	sources []string
	// sincePrune counts budgets created since the last prune of idle default destinations.
	sincePrune int
}

// budget is the limits state of one provider (or one default destination).
type budget struct {
	key      string
	src      string // the source IP ("" the default address)
	provider string
	domain   string // set under the default provider only
	conns    int
	lim      *rate.Limiter // always set; rate.Inf when unlimited
	rate     Rate          // what lim is set to
}

// scope is the reputation state of a group, a provider or a default destination.
type scope struct {
	until  time.Time // no new connection before this
	reason string    // the reply that caused the suspension
	cause  Action    // Suspend or Backoff
	// scope is what the reply that caused the window judged (issue 14).
	scope Scope
	// backoff is the number of backoff windows since the last delivery.
	backoff int
	// throttle is the number of rate divisions in force; throttledAt the last change.
	throttle    int
	throttledAt time.Time
}

func (s *scope) idle(now time.Time) bool {
	return !now.Before(s.until) && s.backoff == 0 && s.throttle == 0
}

// NewEngine returns an engine for p with no state. Time comes with each call (now arguments),
// never from the engine.
func NewEngine(p *Policy) *Engine {
	return &Engine{p: p, budgets: map[string]*budget{}, scopes: map[string]*scope{}}
}

// Policy returns the policy in force.
func (e *Engine) Policy() *Policy {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.p
}

// Swap puts p in force at once (SIGHUP, `policy reload`). Connections, suspensions, backoff
// and throttle levels are kept; rates take the new values from now on.
func (e *Engine) Swap(p *Policy, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.p = p
	for _, b := range e.budgets {
		e.applyRate(b, now)
	}
}

// keys returns the provider a call applies to and its budget and scope keys. An unknown
// provider name is treated as the default provider.
func (e *Engine) keys(provider, domain string) (pr *Provider, budgetKey, scopeKey string) {
	pr = e.p.Provider(provider)
	if pr.Name == DefaultProvider {
		k := DefaultProvider + ":" + normalizeHost(domain)
		return pr, k, k
	}
	if pr.Group != "" {
		return pr, pr.Name, pr.Group
	}
	return pr, pr.Name, pr.Name
}

// SourceKey is the shaping state key of a source IP: limits, suspensions, throttles and
// backoff are kept per (source IP, provider) (issue 17 §2), as `SRC|KEY`; the "" source (the
// default, unbound address) keeps the provider's bare key, as before pools existed. A rule
// with `scope: provider` acts on the bare key, which holds every source IP.
func SourceKey(src, key string) string {
	if src == "" {
		return key
	}
	return src + "|" + key
}

// srcKeys is keys for a source IP: the budget and scope keys of (src, provider), and the
// provider-wide scope key.
func (e *Engine) srcKeys(src, provider, domain string) (pr *Provider, budgetKey, scopeKey, wideKey string) {
	pr, bk, sk := e.keys(provider, domain)
	return pr, SourceKey(src, bk), SourceKey(src, sk), sk
}

func (e *Engine) scope(key string) *scope {
	s := e.scopes[key]
	if s == nil {
		s = &scope{}
		e.scopes[key] = s
	}
	return s
}

func (e *Engine) budget(provider, domain string, now time.Time) (*Provider, *budget, *scope) {
	pr, b, s, _ := e.budgetFrom("", provider, domain, now)
	return pr, b, s
}

// budgetFrom returns the budget and scope of (src, provider), and the provider-wide scope
// (the same scope when src is "").
func (e *Engine) budgetFrom(src, provider, domain string, now time.Time) (*Provider, *budget, *scope, *scope) {
	pr, bk, sk, wk := e.srcKeys(src, provider, domain)
	s := e.scope(sk)
	w := e.scope(wk)
	b := e.budgets[bk]
	if b == nil {
		b = &budget{key: bk, src: src, provider: pr.Name}
		if pr.Name == DefaultProvider {
			b.domain = normalizeHost(domain)
		}
		// Burst 1 and x/time/rate's full start: the bucket holds exactly one token, so a
		// restart or a new destination can never burst (issue 5 §3).
		b.rate = e.effectiveRate(pr, s, w)
		b.lim = rate.NewLimiter(b.rate.Limit(), 1)
		e.budgets[bk] = b
		e.sincePrune++
		if e.sincePrune >= 1024 {
			e.prune(now)
		}
	}
	return pr, b, s, w
}

// prune forgets default destinations with nothing to remember: no connection, a full bucket
// (a new limiter starts full too) and an idle scope. Named providers are kept.
func (e *Engine) prune(now time.Time) {
	e.sincePrune = 0
	for k, b := range e.budgets {
		if b.domain == "" || b.conns > 0 || b.lim.TokensAt(now) < 1 {
			continue
		}
		if s := e.scopes[k]; s != nil && !s.idle(now) {
			continue
		}
		delete(e.budgets, k)
		delete(e.scopes, k)
	}
	// A sender domain's window that ended, with no backoff level left, has nothing to keep.
	for k, s := range e.scopes {
		if strings.HasPrefix(k, senderPrefix) && s.idle(now) {
			delete(e.scopes, k)
		}
	}
}

// effectiveRate is the provider's rate divided by the throttle level in force (the higher
// of the IP's and the provider-wide one), floored at throttle.min (or at the base rate, when
// that is already lower).
func (e *Engine) effectiveRate(pr *Provider, s, w *scope) Rate {
	base := pr.Knobs.Rate
	level := max(s.throttle, w.throttle)
	if level == 0 {
		return base
	}
	t := pr.Knobs.Throttle
	if base.Unlimited() {
		base = t.FromUnlimited
	}
	floor := t.Min
	if base.Less(floor) {
		floor = base
	}
	r := base
	for i := 0; i < level; i++ {
		r = r.Div(t.Factor)
		if r.Less(floor) {
			return floor
		}
	}
	return r
}

func (e *Engine) applyRate(b *budget, now time.Time) {
	pr, _, sk, wk := e.srcKeys(b.src, b.provider, b.domain)
	r := e.effectiveRate(pr, e.scope(sk), e.scope(wk))
	if r != b.rate {
		b.rate = r
		b.lim.SetLimitAt(now, r.Limit())
	}
}

// Admission is the engine's answer to a connection or a message that asks to go now: go, or
// wait until when, and why. Acquire and Allow return it; the scheduler acts on it.
type Admission struct {
	// OK: go now. For a connection, Release must be called once it is closed (it is
	// idempotent).
	OK      bool
	Release func()
	// Source is the source IP the answer is for ("" the default address).
	Source string
	// Until, when not OK, is when to ask again: the end of the suspension or backoff window
	// when Suspended; the next token of the rate for a message; the zero time when every
	// connection is in use (ask again when one is released).
	Until time.Time
	// Suspended: a suspension or backoff window holds the provider (for this source IP, or
	// for every IP with `scope: provider`) until Until.
	Suspended bool
	// Why says what holds it, for the log: "suspended until ...: <the reply>", "connections:
	// 4 of 4 in use".
	Why string
}

// Acquire asks whether a new connection to provider (destination domain, for the default
// provider) may open now, from the default address.
func (e *Engine) Acquire(provider, domain string, now time.Time) Admission {
	return e.AcquireFrom("", provider, domain, now)
}

// held returns the scope of s and w whose window ends last, when one is in force at now.
func held(s, w *scope, now time.Time) *scope {
	var out *scope
	for _, x := range []*scope{s, w} {
		if now.Before(x.until) && (out == nil || x.until.After(out.until)) {
			out = x
		}
	}
	return out
}

// suspension is the Admission of a scope's window in force.
func (h *scope) suspension(src string) Admission {
	return Admission{Source: src, Until: h.until, Suspended: true,
		Why: fmt.Sprintf("%s until %s: %s", h.cause.pastTense(), h.until.UTC().Format(time.RFC3339), h.reason)}
}

// AcquireFrom asks whether a new connection from source IP src ("" the default address) may
// open now: the connection limit and suspensions are those of (src, provider), and a
// provider-wide suspension (`scope: provider`) holds every source.
func (e *Engine) AcquireFrom(src, provider, domain string, now time.Time) Admission {
	e.mu.Lock()
	defer e.mu.Unlock()
	pr, b, s, w := e.budgetFrom(src, provider, domain, now)
	if h := held(s, w, now); h != nil {
		return h.suspension(src)
	}
	if b.conns >= pr.Knobs.Connections {
		return Admission{Source: src, Why: fmt.Sprintf("connections: %d of %d in use", b.conns, pr.Knobs.Connections)}
	}
	b.conns++
	var once sync.Once
	return Admission{OK: true, Source: src, Release: func() {
		once.Do(func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			b.conns--
		})
	}}
}

func (a Action) pastTense() string {
	if a == Backoff {
		return "backed off"
	}
	return "suspended"
}

// Allow asks whether one more message may be sent to provider now, from the default address,
// and takes it from the rate budget when so.
func (e *Engine) Allow(provider, domain string, now time.Time) Admission {
	return e.AllowFrom("", provider, domain, now)
}

// AllowFrom asks whether one more message may be sent from source IP src now, and takes it
// from the rate of (src, provider) when so. When not, Until is the earliest time it may: the
// end of a suspension, or the next token of the rate.
func (e *Engine) AllowFrom(src, provider, domain string, now time.Time) Admission {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, b, s, w := e.budgetFrom(src, provider, domain, now)
	if h := held(s, w, now); h != nil {
		return h.suspension(src)
	}
	if b.lim.AllowN(now, 1) {
		return Admission{OK: true, Source: src}
	}
	missing := 1 - b.lim.TokensAt(now)
	wait := time.Duration(math.Ceil(missing / float64(b.lim.Limit()) * float64(time.Second)))
	if wait <= 0 {
		wait = 1
	}
	return Admission{Source: src, Until: now.Add(wait), Why: "rate: " + b.rate.String()}
}

// Limits returns the static limits of provider (messages_per_connection,
// recipients_per_message, ...), as in the policy in force.
func (e *Engine) Limits(provider string) Limits {
	return e.Policy().Limits(provider)
}

// EventKind names a provider event of the log (ARCHITECTURE.md §3).
type EventKind string

// Provider events.
const (
	Suspended EventKind = "suspended"
	Throttled EventKind = "throttled"
	Resumed   EventKind = "resumed"
)

// Event is a change of a provider's state for the caller to log, one line each.
type Event struct {
	Kind EventKind
	// Provider is the provider whose reply (or resume) caused the event; Domain the
	// destination under the default provider.
	Provider string
	Domain   string
	Group    string
	// Affects lists every provider the change applies to (the whole group).
	Affects []string
	// Until ends a suspension or backoff window (Suspended).
	Until time.Time
	// Rate is the rate now in force (Throttled).
	Rate Rate
	// BackoffLevel is the number of backoff windows since the last delivery.
	BackoffLevel int
	// Reason is the reply that caused the change, verbatim, or why it ended.
	Reason string
	// SourceIP is the outbound address the change holds for; "" every address.
	SourceIP string
	// SenderDomain is the sender domain the change holds for (a reply about the domain,
	// ObserveSender); "" every sender domain.
	SenderDomain string
}

// LogAttrs returns the event as slog key/value pairs, with the log's stable keys (provider,
// resp) and a few of its own (group, affects, until, rate, level, domain).
func (ev Event) LogAttrs() []any {
	kv := []any{"provider", ev.Provider}
	if ev.Domain != "" {
		kv = append(kv, "domain", ev.Domain)
	}
	if ev.SourceIP != "" {
		kv = append(kv, "source_ip", ev.SourceIP)
	}
	if ev.SenderDomain != "" {
		kv = append(kv, "sender_domain", ev.SenderDomain, "scope", string(ScopeDomain))
	}
	if ev.Group != "" {
		kv = append(kv, "group", ev.Group, "affects", strings.Join(ev.Affects, ","))
	}
	if !ev.Until.IsZero() {
		kv = append(kv, "until", ev.Until.UTC().Format(time.RFC3339))
	}
	if ev.Kind == Throttled {
		kv = append(kv, "rate", FormatRate(ev.Rate))
	}
	if ev.BackoffLevel > 0 {
		kv = append(kv, "level", ev.BackoffLevel)
	}
	if ev.Reason != "" {
		kv = append(kv, "resp", ev.Reason)
	}
	return kv
}

// Outcome is what Observe decided and did.
type Outcome struct {
	Decision Decision
	// Events are the provider state changes to log.
	Events []Event
	// Until is the end of the provider's suspension or backoff window, if one is in force.
	Until time.Time
}

// Observe classifies a reply from provider and applies its action to the provider's state:
// suspend (until now + the rule's duration, never shortening one in force), backoff (a window
// doubling from backoff.initial to backoff.max on each failure; a reply inside a window in
// force is the same failure), throttle (divide the rate, once per cooldown). Defer and bounce
// leave the provider alone: a provider closing after N messages, a full mailbox, an unknown
// user are not the provider's failures.
func (e *Engine) Observe(provider, domain string, r Reply, now time.Time) Outcome {
	return e.ObserveFrom("", provider, domain, r, now)
}

// ObserveFrom is Observe for a reply to a connection from source IP src: the action holds
// (src, provider) only, so that the pool's other IPs keep sending, unless the rule that
// matched says `scope: provider`.
func (e *Engine) ObserveFrom(src, provider, domain string, r Reply, now time.Time) Outcome {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.p.Classify(provider, r)
	pr, b, ipScope, w := e.budgetFrom(src, provider, domain, now)
	s := ipScope
	if d.Scope == RuleScopeProvider {
		s = w
	}
	out := Outcome{Decision: d}
	ev := Event{Provider: pr.Name, Domain: b.domain, Group: pr.Group, Affects: e.affects(pr), Reason: r.String()}
	if s != w {
		ev.SourceIP = src
	}
	switch d.Action {
	case Suspend:
		if until := now.Add(d.Duration); until.After(s.until) {
			s.until, s.reason, s.cause, s.scope = until, r.String(), Suspend, ScopeOf(d, r)
			ev.Kind, ev.Until = Suspended, until
			out.Events = append(out.Events, ev)
		}
	case Backoff:
		if now.Before(s.until) && s.cause == Backoff {
			break // the same incident, reported by another recipient or connection
		}
		s.backoff++
		win := backoffWindow(pr.Knobs.Backoff, s.backoff)
		if until := now.Add(win); until.After(s.until) {
			s.until = until
		}
		s.reason, s.cause, s.scope = r.String(), Backoff, ScopeOf(d, r)
		ev.Kind, ev.Until, ev.BackoffLevel = Suspended, s.until, s.backoff
		out.Events = append(out.Events, ev)
	case Throttle:
		if s.throttle > 0 && now.Sub(s.throttledAt) < pr.Knobs.Throttle.Cooldown {
			break
		}
		s.throttledAt = now
		before := e.effectiveRate(pr, ipScope, w)
		s.throttle++
		after := e.effectiveRate(pr, ipScope, w)
		if after == before {
			s.throttle-- // at the floor already: nothing changes but the recovery clock
			break
		}
		e.applyScopeRates(s, now)
		ev.Kind, ev.Rate = Throttled, after
		out.Events = append(out.Events, ev)
	}
	if now.Before(s.until) {
		out.Until = s.until
	}
	return out
}

// backoffWindow is initial × 2^(level-1), at most max.
func backoffWindow(k BackoffKnobs, level int) time.Duration {
	w := k.Initial
	for i := 1; i < level && w < k.Max; i++ {
		w *= 2
	}
	return min(w, k.Max)
}

func (e *Engine) applyScopeRates(s *scope, now time.Time) {
	for _, b := range e.budgets {
		_, _, sk, wk := e.srcKeys(b.src, b.provider, b.domain)
		if e.scopes[sk] == s || e.scopes[wk] == s {
			e.applyRate(b, now)
		}
	}
}

func (e *Engine) affects(pr *Provider) []string {
	if pr.Group == "" {
		return []string{pr.Name}
	}
	return e.p.Group(pr.Group)
}

// Delivered records a delivered message: the backoff level goes back to zero, and a throttled
// rate steps back up one level when throttle.recover_after has passed since the last change
// (so recovery needs both time and mail that goes through). It returns the events to log.
func (e *Engine) Delivered(provider, domain string, now time.Time) []Event {
	return e.DeliveredFrom("", provider, domain, now)
}

// DeliveredFrom is Delivered for a message sent from source IP src: the IP's state and the
// provider-wide state both recover (a delivery proves the provider takes mail again).
func (e *Engine) DeliveredFrom(src, provider, domain string, now time.Time) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	pr, b, ipScope, w := e.budgetFrom(src, provider, domain, now)
	var evs []Event
	scopes := []*scope{ipScope}
	if w != ipScope {
		scopes = append(scopes, w)
	}
	for _, s := range scopes {
		s.backoff = 0
		if s.throttle == 0 || now.Sub(s.throttledAt) < pr.Knobs.Throttle.RecoverAfter {
			continue
		}
		s.throttle--
		s.throttledAt = now
		e.applyScopeRates(s, now)
		ev := Event{Kind: Throttled, Provider: pr.Name, Domain: b.domain, Group: pr.Group, Affects: e.affects(pr),
			Rate: e.effectiveRate(pr, ipScope, w), Reason: fmt.Sprintf("recovering: no throttle reply for %s", FormatDuration(pr.Knobs.Throttle.RecoverAfter))}
		if s == ipScope {
			ev.SourceIP = src
		}
		evs = append(evs, ev)
	}
	return evs
}

// Resume ends the suspension or backoff window of name at once (ops delisted the IP): name is
// a provider, a group, or a destination domain of the default provider (`example.org` or
// `default:example.org`). The backoff level is kept: the next failure waits twice as long.
func (e *Engine) Resume(name string, now time.Time) (Event, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	key, ev := "", Event{Kind: Resumed, Provider: name, Reason: "resumed by an operator"}
	switch pr, ok := e.p.Lookup(name); {
	case ok && pr.Name != DefaultProvider:
		_, _, key = e.keys(pr.Name, "")
		ev.Group, ev.Affects = pr.Group, e.affects(pr)
	case len(e.p.Group(name)) > 0:
		key, ev.Group, ev.Affects = name, name, e.p.Group(name)
	case strings.Contains(name, "."):
		domain := strings.TrimPrefix(name, DefaultProvider+":")
		_, _, key = e.keys(DefaultProvider, domain)
		ev.Provider, ev.Domain = DefaultProvider, normalizeHost(domain)
	default:
		return Event{}, fmt.Errorf("resume %q: %w", name, ErrUnknownProvider)
	}
	s := e.scope(key)
	if now.Before(s.until) {
		s.until = now
	}
	// Every source IP's window of it ends too: ops resumed the provider.
	for k, o := range e.scopes {
		if strings.HasSuffix(k, "|"+key) && now.Before(o.until) {
			o.until = now
		}
	}
	ev.BackoffLevel = s.backoff
	return ev, nil
}

// SuspendedUntil returns the end of provider's suspension or backoff window and the reply that
// caused it, or the zero time when none is in force. The scheduler sets a deferred
// recipient's next attempt to the later of its own schedule and this (never past the
// recipient's Deadline).
func (e *Engine) SuspendedUntil(provider, domain string, now time.Time) (time.Time, string) {
	return e.SuspendedUntilFrom("", provider, domain, now)
}

// SuspendedUntilFrom is SuspendedUntil for source IP src: the later of its own window and
// the provider-wide one.
func (e *Engine) SuspendedUntilFrom(src, provider, domain string, now time.Time) (time.Time, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _, sk, wk := e.srcKeys(src, provider, domain)
	var until time.Time
	var reason string
	for _, k := range []string{sk, wk} {
		if s := e.scopes[k]; s != nil && now.Before(s.until) && s.until.After(until) {
			until, reason = s.until, s.reason
		}
	}
	return until, reason
}

// NextAttempt returns when a recipient of provider queued at queuedAt, after its attempts-th
// failed attempt at now, is tried again: the retry schedule's interval for that attempt (the
// last interval repeats; or every), never later than the recipient's Deadline, where the last
// attempt happens. expired is true when the deadline has passed: the recipient bounces.
func (e *Engine) NextAttempt(provider string, attempts int, queuedAt, now time.Time) (next time.Time, expired bool) {
	p := e.Policy()
	k := p.Provider(provider).Knobs
	deadline := p.Deadline(provider, queuedAt)
	if !now.Before(deadline) {
		return time.Time{}, true
	}
	interval := k.Retry.Every
	if n := len(k.Retry.Intervals); n > 0 {
		interval = k.Retry.Intervals[min(max(attempts, 1), n)-1]
	}
	next = now.Add(interval)
	if next.After(deadline) {
		next = deadline
	}
	return next, false
}

// Deadline is when a recipient of provider queued at queuedAt expires: max_lifetime after
// queueing, or the retry schedule's `for` when shorter. A suspension never extends it.
func (p *Policy) Deadline(provider string, queuedAt time.Time) time.Time {
	k := p.Provider(provider).Knobs
	life := k.MaxLifetime
	if k.Retry.For > 0 && k.Retry.For < life {
		life = k.Retry.For
	}
	return queuedAt.Add(life)
}

// Deadline is Policy.Deadline with the policy in force.
func (e *Engine) Deadline(provider string, queuedAt time.Time) time.Time {
	return e.Policy().Deadline(provider, queuedAt)
}

package policy

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// ProviderState is one entry of `facteur providers --json` (issue 5 §6). The engine fills
// everything but Queued and Deferred, which come from the queue.
type ProviderState struct {
	Name        string `json:"name"`
	Group       string `json:"group"`
	Limits      Limits `json:"limits"`
	Connections int    `json:"connections"`
	Queued      int    `json:"queued"`
	Deferred    int    `json:"deferred"`
	// SuspendedUntil is RFC 3339, null when not suspended.
	SuspendedUntil  *time.Time `json:"suspended_until"`
	SuspendedReason *string    `json:"suspended_reason"`
	// Scope is what the reply behind the suspension judged (ip, domain,
	// provider), null when not suspended (issue 14).
	Scope *Scope `json:"scope"`
	// ClusterConnections counts the connections open from every node of
	// the cluster sending from this node's IP; absent without a cluster.
	ClusterConnections *int `json:"cluster_connections,omitempty"`
	// ThrottledRate is the rate in force while throttled (`500/h`), null otherwise.
	ThrottledRate *string `json:"throttled_rate"`
	BackoffLevel  int     `json:"backoff_level"`
	// Destinations, for the default provider only: each destination domain with state.
	Destinations []DestinationState `json:"destinations,omitempty"`
	// IPs is the state of each outbound IP of the pools at this provider (issue 17 §4); the
	// engine fills addr, connections and the suspension, the caller the pool and warm-up.
	IPs []IPState `json:"ips"`
	// Senders are the sender domains held at this provider by a reply about the domain
	// (scope domain, issue 14): their mail waits, the other sender domains' goes on.
	Senders []SenderState `json:"senders,omitempty"`
}

// IPState is one source IP at one provider.
type IPState struct {
	Addr        string `json:"addr"`
	Pool        string `json:"pool"`
	Connections int    `json:"connections"`
	// SentToday is the messages sent from Addr to the provider since UTC midnight; CapToday
	// its warm-up cap for today, null when the IP is warm.
	SentToday       int        `json:"sent_today"`
	CapToday        *int       `json:"cap_today"`
	SuspendedUntil  *time.Time `json:"suspended_until"`
	SuspendedReason *string    `json:"suspended_reason"`
}

// SetSources names the outbound IPs Snapshot reports per provider (the pools' addresses),
// in order.
func (e *Engine) SetSources(srcs []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sources = append([]string(nil), srcs...)
}

// DestinationState is the state of one destination domain of the default provider.
type DestinationState struct {
	Domain          string     `json:"domain"`
	Connections     int        `json:"connections"`
	Queued          int        `json:"queued"`
	Deferred        int        `json:"deferred"`
	SuspendedUntil  *time.Time `json:"suspended_until"`
	SuspendedReason *string    `json:"suspended_reason"`
	Scope           *Scope     `json:"scope"`
	ThrottledRate   *string    `json:"throttled_rate"`
	BackoffLevel    int        `json:"backoff_level"`
	// ClusterConnections: as ProviderState's.
	ClusterConnections *int `json:"cluster_connections,omitempty"`
	// Senders: as ProviderState's, for this destination.
	Senders []SenderState `json:"senders,omitempty"`
}

// Snapshot returns the state of every provider of the policy in force, sorted by name, the
// default provider with one destination per domain the engine holds state for (sorted).
func (e *Engine) Snapshot(now time.Time) []ProviderState {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []ProviderState
	for _, pr := range e.p.Providers {
		ps := ProviderState{Name: pr.Name, Group: pr.Group, Limits: e.p.Limits(pr.Name)}
		if pr.Name == DefaultProvider {
			seen := map[string]bool{}
			for k, b := range e.budgets {
				if b.domain != "" && b.src == "" {
					seen[k] = true
				}
			}
			for k := range e.scopes {
				if strings.HasPrefix(k, DefaultProvider+":") && !strings.Contains(k, "|") && !e.scopes[k].idle(now) {
					seen[k] = true
				}
			}
			for _, k := range slices.Sorted(maps.Keys(seen)) {
				domain := strings.TrimPrefix(k, DefaultProvider+":")
				ds := DestinationState{Domain: domain}
				if b := e.budgets[k]; b != nil {
					ds.Connections = b.conns
					ps.Connections += b.conns
				}
				if s := e.scopes[k]; s != nil {
					ds.SuspendedUntil, ds.SuspendedReason, ds.ThrottledRate, ds.BackoffLevel = e.scopeState(pr, s, now)
					ds.Scope = scopeOf(s, now)
				}
				ds.Senders = e.sendersOf(k, now)
				ps.Destinations = append(ps.Destinations, ds)
			}
		} else {
			for _, b := range e.budgets {
				if b.provider == pr.Name {
					ps.Connections += b.conns
				}
			}
			_, _, sk := e.keys(pr.Name, "")
			if s := e.scopes[sk]; s != nil {
				ps.SuspendedUntil, ps.SuspendedReason, ps.ThrottledRate, ps.BackoffLevel = e.scopeState(pr, s, now)
				ps.Scope = scopeOf(s, now)
			}
			ps.Senders = e.sendersOf(sk, now)
		}
		ps.IPs = []IPState{}
		for _, src := range e.sources {
			ip := IPState{Addr: src}
			for _, b := range e.budgets {
				if b.src == src && b.provider == pr.Name {
					ip.Connections += b.conns
				}
			}
			if pr.Name != DefaultProvider {
				_, _, sk, _ := e.srcKeys(src, pr.Name, "")
				if sc := e.scopes[sk]; sc != nil && now.Before(sc.until) {
					u, r := sc.until.UTC(), sc.reason
					ip.SuspendedUntil, ip.SuspendedReason = &u, &r
				}
			}
			ps.IPs = append(ps.IPs, ip)
		}
		out = append(out, ps)
	}
	return out
}

// scopeOf is the scope of s's window in force, nil when none (a window
// restored from a state saved before issue 14 is the provider's).
func scopeOf(s *scope, now time.Time) *Scope {
	if !now.Before(s.until) {
		return nil
	}
	sc := s.scope
	if sc == "" {
		sc = ScopeProvider
	}
	return &sc
}

func (e *Engine) scopeState(pr *Provider, s *scope, now time.Time) (*time.Time, *string, *string, int) {
	var until *time.Time
	var reason, throttled *string
	if now.Before(s.until) {
		u, r := s.until.UTC(), s.reason
		until, reason = &u, &r
	}
	if s.throttle > 0 {
		r := FormatRate(e.effectiveRate(pr, s, s))
		throttled = &r
	}
	return until, reason, throttled, s.backoff
}

// WriteProviders prints states as the text table of `facteur providers`.
func WriteProviders(w io.Writer, states []ProviderState) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tGROUP\tCONN\tRATE\tQUEUED\tDEFERRED\tSUSPENDED UNTIL\tREASON")
	row := func(name, group string, conns, maxConns int, rate string, throttled *string, queued, deferred int, until *time.Time, reason *string) {
		if throttled != nil {
			rate = *throttled + " (throttled from " + rate + ")"
		}
		u, r := "-", "-"
		if until != nil {
			u = until.UTC().Format(time.RFC3339)
		}
		if reason != nil {
			r = *reason
		}
		if group == "" {
			group = "-"
		}
		conn := fmt.Sprintf("%d/%d", conns, maxConns)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", name, group, conn, rate, queued, deferred, u, r)
	}
	for _, s := range states {
		row(s.Name, s.Group, s.Connections, s.Limits.Connections, s.Limits.Rate, s.ThrottledRate, s.Queued, s.Deferred, s.SuspendedUntil, s.SuspendedReason)
		for _, d := range s.Destinations {
			row("  "+d.Domain, "-", d.Connections, s.Limits.Connections, s.Limits.Rate, d.ThrottledRate, d.Queued, d.Deferred, d.SuspendedUntil, d.SuspendedReason)
		}
		// One row per source IP with something to say: the pool in GROUP,
		// today's count (and warm-up cap) in RATE, its own suspension.
		for _, ip := range s.IPs {
			if ip.Connections == 0 && ip.SentToday == 0 && ip.CapToday == nil && ip.SuspendedUntil == nil {
				continue
			}
			today := fmt.Sprintf("%d today", ip.SentToday)
			if ip.CapToday != nil {
				today = fmt.Sprintf("%d/%d today (warm-up)", ip.SentToday, *ip.CapToday)
			}
			row("  from "+ip.Addr, ip.Pool, ip.Connections, s.Limits.Connections, today, nil, 0, 0, ip.SuspendedUntil, ip.SuspendedReason)
		}
		for _, sd := range s.Senders {
			row("  sender "+sd.Domain, "-", 0, s.Limits.Connections, s.Limits.Rate, nil, 0, 0, sd.SuspendedUntil, sd.SuspendedReason)
		}
	}
	return tw.Flush()
}

// stateVersion is the format of MarshalState; RestoreState refuses others.
const stateVersion = 1

type savedState struct {
	Version int          `json:"version"`
	Scopes  []savedScope `json:"scopes"`
}

type savedScope struct {
	Key            string    `json:"key"`
	SuspendedUntil time.Time `json:"suspended_until,omitzero"`
	Reason         string    `json:"reason,omitempty"`
	Cause          Action    `json:"cause,omitempty"`
	Scope          Scope     `json:"scope,omitempty"`
	BackoffLevel   int       `json:"backoff_level,omitempty"`
	ThrottleLevel  int       `json:"throttle_level,omitempty"`
	ThrottledAt    time.Time `json:"throttled_at,omitzero"`
}

// MarshalState returns what must survive a restart (suspensions, backoff and throttle levels)
// for the caller to store in the queue database. Connection counts and rate buckets are not
// saved: after a restart there is no connection, and a bucket starts with one token.
func (e *Engine) MarshalState() ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := savedState{Version: stateVersion, Scopes: []savedScope{}}
	for _, k := range slices.Sorted(maps.Keys(e.scopes)) {
		s := e.scopes[k]
		if s.until.IsZero() && s.backoff == 0 && s.throttle == 0 {
			continue
		}
		st.Scopes = append(st.Scopes, savedScope{Key: k, SuspendedUntil: s.until.UTC(), Reason: s.reason, Cause: s.cause, Scope: s.scope,
			BackoffLevel: s.backoff, ThrottleLevel: s.throttle, ThrottledAt: s.throttledAt.UTC()})
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("marshal policy state: %w", err)
	}
	return b, nil
}

// RestoreState loads what MarshalState saved, replacing the reputation state of the scopes it
// names. Entries with nothing left in force at now are dropped.
func (e *Engine) RestoreState(b []byte, now time.Time) error {
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("restore policy state: %w", err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("restore policy state: version %d, want %d", st.Version, stateVersion)
	}
	for i, s := range st.Scopes {
		if s.Key == "" || s.BackoffLevel < 0 || s.ThrottleLevel < 0 || s.ThrottleLevel > 64 || s.BackoffLevel > 1<<20 {
			return fmt.Errorf("restore policy state: entry %d (%q) is invalid", i, s.Key)
		}
		if s.Cause != "" && s.Cause != Suspend && s.Cause != Backoff {
			return fmt.Errorf("restore policy state: entry %d (%q): bad cause %q", i, s.Key, s.Cause)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range st.Scopes {
		sc := &scope{until: s.SuspendedUntil, reason: s.Reason, cause: s.Cause, scope: s.Scope, backoff: s.BackoffLevel,
			throttle: s.ThrottleLevel, throttledAt: s.ThrottledAt}
		if sc.idle(now) {
			continue
		}
		e.scopes[s.Key] = sc
	}
	for _, bu := range e.budgets {
		e.applyRate(bu, now)
	}
	return nil
}

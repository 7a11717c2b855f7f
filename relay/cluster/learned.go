package cluster

import (
	"encoding/json"
	"strings"
	"time"

	"facteur/policy"
)

// Learned publishes the state of scope key the policy engine just changed
// (a suspension, backoff or throttle) with the scope of the reply that
// caused it. It implements scheduler.Fleet.
func (c *Cluster) Learned(scope policy.Scope, src, key string, st policy.ScopeState, now time.Time) {
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	until := st.Until
	if st.Throttle > 0 || st.Backoff > 0 {
		// Throttle and backoff levels matter after the window: a day.
		until = later(until, now.Add(24*time.Hour))
	}
	r := Reputation{Scope: string(scope), Key: key, State: b, Until: until}
	if d, ok := strings.CutPrefix(key, "from:"); ok && scope == policy.ScopeDomain {
		// A sender domain's hold (policy.SenderKey): named for the log.
		r.SenderDomain, _, _ = strings.Cut(d, "|")
	}
	if src != "" {
		// A pool's IP: the key names it (SRC|KEY), so every node sending
		// from it applies the news, whatever its own source_ip.
		r.SourceIP = poolPrefix + src
	}
	c.Publish(r)
}

// Resumed publishes an operator's resume of name (a provider, a group or
// a default destination).
func (c *Cluster) Resumed(name, key string, now time.Time) {
	c.Publish(Reputation{Scope: string(policy.ScopeProvider), Key: key, Resume: name, Until: now.Add(time.Hour)})
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Apply is the usual Handler.Reputation for a policy engine: a resume
// ends the window; other news is imposed (windows only extend).
func Apply(e *policy.Engine, r Reputation, now time.Time) (changed bool) {
	if r.Resume != "" {
		_, err := e.Resume(r.Resume, now)
		return err == nil
	}
	var st policy.ScopeState
	if json.Unmarshal(r.State, &st) != nil {
		return false
	}
	return e.Impose(r.Key, st, now)
}

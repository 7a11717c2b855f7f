package daemon

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/admin"
)

// decorate gives a recipient not tried yet the provider its domain names
// (the MX is looked up at the first attempt, which may refine it).
func (d *daemon) decorate(msgs []queue.Message) { decorate(d.engine.Policy(), msgs) }

func decorate(p *policy.Policy, msgs []queue.Message) {
	for i := range msgs {
		for j := range msgs[i].Recipients {
			if r := &msgs[i].Recipients[j]; r.Provider == "" {
				r.Provider = p.Recognize(domainOf(r.Address), nil)
			}
		}
	}
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

func (d *daemon) providers(w http.ResponseWriter, r *http.Request) {
	states, err := d.providerStates(r.Context(), d.clock.Now())
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	admin.WriteJSON(w, http.StatusOK, states)
}

// providerStates is every provider's live state with its queued and
// deferred counts (GET /providers and the dashboard).
func (d *daemon) providerStates(ctx context.Context, now time.Time) ([]policy.ProviderState, error) {
	states := d.engine.Snapshot(now)
	fillIPs(states, d.pools, now)
	// From the queue's per-destination counters: no scan (issue 19 §3).
	cs, err := d.store.Counts(ctx)
	if err != nil {
		return nil, err
	}
	type counts struct{ queued, deferred int }
	byProv := map[string]*counts{}
	byDest := map[string]*counts{}
	for _, qc := range cs {
		p := qc.Provider
		if p == "" {
			p = d.engine.Policy().Recognize(qc.Domain, nil)
		}
		c := byProv[p]
		if c == nil {
			c = &counts{}
			byProv[p] = c
		}
		dc := byDest[qc.Domain]
		if dc == nil {
			dc = &counts{}
			byDest[qc.Domain] = dc
		}
		switch qc.Status {
		case queue.Queued:
			c.queued += qc.Count
			dc.queued += qc.Count
		case queue.Deferred:
			c.deferred += qc.Count
			dc.deferred += qc.Count
		}
	}
	for i := range states {
		if c := byProv[states[i].Name]; c != nil {
			states[i].Queued, states[i].Deferred = c.queued, c.deferred
		}
		if states[i].Name == policy.DefaultProvider {
			seen := map[string]bool{}
			for j := range states[i].Destinations {
				dst := &states[i].Destinations[j]
				seen[dst.Domain] = true
				if c := byDest[dst.Domain]; c != nil {
					dst.Queued, dst.Deferred = c.queued, c.deferred
				}
			}
			// Every default destination with mail queued is listed.
			var extra []string
			for dom, c := range byDest {
				if !seen[dom] && (c.queued+c.deferred) > 0 && d.engine.Policy().Recognize(dom, nil) == policy.DefaultProvider {
					extra = append(extra, dom)
				}
			}
			sort.Strings(extra)
			for _, dom := range extra {
				c := byDest[dom]
				states[i].Destinations = append(states[i].Destinations, policy.DestinationState{Domain: dom, Queued: c.queued, Deferred: c.deferred})
			}
		}
	}
	d.clusterConnections(states)
	return states, nil
}

func (d *daemon) resume(w http.ResponseWriter, r *http.Request) {
	if err := d.resumeProvider(r.Context(), r.PathValue("name")); err != nil {
		admin.WriteError(w, http.StatusNotFound, err)
		return
	}
	admin.WriteJSON(w, http.StatusOK, map[string]string{"resumed": r.PathValue("name")})
}

// resumeProvider lifts a provider's suspension, backoff and throttle, logs
// it, saves the policy state and wakes the scheduler.
func (d *daemon) resumeProvider(ctx context.Context, name string) error {
	ev, err := d.engine.Resume(name, d.clock.Now())
	if err != nil {
		return err
	}
	d.log.Info(string(ev.Kind), ev.LogAttrs()...)
	d.clusterResumed(ev, d.clock.Now())
	d.savePolicyState(ctx)
	d.sched.Wake()
	return nil
}

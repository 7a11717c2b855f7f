package daemon

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"facteur/policy"
	"facteur/relay/admin"
	"facteur/relay/cluster"
	"facteur/relay/maillog"
	"facteur/relay/metrics"
	"facteur/relay/scheduler"
)

func (d *daemon) newMetrics() *metrics.Metrics {
	return metrics.New(metrics.Sources{
		Queue: func(ctx context.Context) ([]metrics.QueueDepth, time.Duration, error) {
			st, err := d.store.Stats(ctx)
			if err != nil {
				return nil, 0, err
			}
			var oldest time.Duration
			if !st.Oldest.IsZero() {
				oldest = d.clock.Now().Sub(st.Oldest)
			}
			depth, err := d.queueDepth(ctx)
			return depth, oldest, err
		},
		Providers: func() []metrics.ProviderGauge {
			var out []metrics.ProviderGauge
			for _, p := range d.engine.Snapshot(d.clock.Now()) {
				out = append(out, metrics.ProviderGauge{Provider: p.Name, Connections: p.Connections, Suspended: p.SuspendedUntil != nil})
			}
			return out
		},
		Alarm:          d.alarm.Load,
		WebhookPending: d.webhookPending,
		BreakerTripped: d.breakerTripped,
		ClusterUp:      d.clusterUp(),
	})
}

// clusterUp is the source of facteur_cluster_up, nil alone.
func (d *daemon) clusterUp() func() bool {
	if d.cluster == nil {
		return nil
	}
	return d.cluster.Up
}

// queueDepth counts recipients by provider and status, from the queue's
// per-destination counters (issue 19 §3: no scan, whatever the queue's size).
// A recipient not tried yet has no provider stored: its domain names one.
func (d *daemon) queueDepth(ctx context.Context) ([]metrics.QueueDepth, error) {
	cs, err := d.store.Counts(ctx)
	if err != nil {
		return nil, err
	}
	pol := d.engine.Policy()
	counts := map[[2]string]int{}
	for _, c := range cs {
		p := c.Provider
		if p == "" {
			p = pol.Recognize(c.Domain, nil)
		}
		counts[[2]string{p, string(c.Status)}] += c.Count
	}
	out := make([]metrics.QueueDepth, 0, len(counts))
	for k, n := range counts {
		out = append(out, metrics.QueueDepth{Provider: k[0], Status: k[1], Count: n})
	}
	slices.SortFunc(out, func(a, b metrics.QueueDepth) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Status, b.Status))
	})
	return out, nil
}

// alarmLoop raises and clears the queue-depth alarm (issue 8 §3), one log
// line each way.
func (d *daemon) alarmLoop(ctx context.Context) error {
	a := d.cfg.QueueAlarm
	if a.Messages <= 0 && a.Age <= 0 {
		return nil
	}
	for {
		st, err := d.store.Stats(ctx)
		if err == nil {
			over := (a.Messages > 0 && st.Messages >= a.Messages) ||
				(a.Age > 0 && !st.Oldest.IsZero() && d.clock.Now().Sub(st.Oldest) >= time.Duration(a.Age))
			if over != d.alarm.Load() {
				d.alarm.Store(over)
				if over {
					d.log.Warn(maillog.QueueAlarm, "messages", st.Messages, "oldest", st.Oldest)
				} else {
					d.log.Info(maillog.QueueAlarmCleared, "messages", st.Messages)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.clock.After(15 * time.Second):
		}
	}
}

// Status is the JSON of GET /status and `facteur status --json`.
type Status struct {
	Now       time.Time              `json:"now"`
	Messages  int                    `json:"messages"`
	Oldest    *time.Time             `json:"oldest"`
	Queue     []metrics.QueueDepth   `json:"queue"`
	LastHour  map[string]int         `json:"last_hour"`
	Suspended []SuspendedProvider    `json:"suspended"`
	Alarm     bool                   `json:"alarm"`
	Providers []policy.ProviderState `json:"-"`
	Breaker   []BreakerEntry         `json:"breaker"` // senders the circuit breaker stops
	// Dead lists the destinations that do not answer, their mail deferred
	// until a probe at Until finds them alive (issue 19 §4).
	Dead []scheduler.DeadDest `json:"dead"`
	// Pools are the outbound IP pools, each IP's warm-up day (issue 17 §4).
	Pools []PoolStatus `json:"pools"`
	// Cluster is the link to the fleet (issue 14); absent alone.
	Cluster *cluster.Status `json:"cluster,omitempty"`
}

// SuspendedProvider names a provider (or default destination) on hold.
type SuspendedProvider struct {
	Provider string    `json:"provider"`
	Until    time.Time `json:"until"`
	Reason   string    `json:"reason"`
}

func (d *daemon) status(w http.ResponseWriter, r *http.Request) {
	now := d.clock.Now()
	st, err := d.store.Stats(r.Context())
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	depth, err := d.queueDepth(r.Context())
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	out := Status{Now: now, Messages: st.Messages, Queue: depth, LastHour: d.metrics.LastHour(now), Alarm: d.alarm.Load(), Suspended: []SuspendedProvider{}, Dead: d.sched.Dead()}
	if !st.Oldest.IsZero() {
		out.Oldest = &st.Oldest
	}
	if d.cluster != nil {
		cs := d.cluster.Status()
		out.Cluster = &cs
	}
	if out.Queue == nil {
		out.Queue = []metrics.QueueDepth{}
	}
	if out.Breaker, err = d.breaker.entries(r.Context()); err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	snap := d.engine.Snapshot(now)
	out.Pools = poolStatus(d.pools, snap, now)
	for _, p := range snap {
		if p.SuspendedUntil != nil {
			out.Suspended = append(out.Suspended, SuspendedProvider{Provider: p.Name, Until: *p.SuspendedUntil, Reason: deref(p.SuspendedReason)})
		}
		for _, dst := range p.Destinations {
			if dst.SuspendedUntil != nil {
				out.Suspended = append(out.Suspended, SuspendedProvider{Provider: p.Name + ":" + dst.Domain, Until: *dst.SuspendedUntil, Reason: deref(dst.SuspendedReason)})
			}
		}
	}
	admin.WriteJSON(w, http.StatusOK, out)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

var _ atomic.Bool

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"facteur/policy"
	"facteur/relay/admin"
	"facteur/relay/config"
	"facteur/relay/maillog"
	"facteur/relay/metrics"
	"facteur/relay/scheduler"
)

func init() {
	register("status", "one-screen summary of the queue, deliveries and providers", cmdStatus)
	register("top", "the senders, users, clients, domains and subjects with the most mail, queued and in the last hour", cmdTop)
	routeRegistrars = append(routeRegistrars, func(d *daemon, m map[string]http.Handler) {
		m["GET /metrics"] = d.metrics.Handler()
		m["GET /status"] = http.HandlerFunc(d.status)
	})
}

func (d *daemon) newMetrics() *metrics.Metrics {
	return metrics.New(metrics.Sources{
		Queue: func(ctx context.Context) ([]metrics.QueueDepth, time.Duration, error) {
			st, err := d.store.Stats(ctx)
			if err != nil {
				return nil, 0, err
			}
			var oldest time.Duration
			if !st.Oldest.IsZero() {
				oldest = time.Since(st.Oldest)
			}
			depth, err := d.queueDepth(ctx)
			return depth, oldest, err
		},
		Providers: func() []metrics.ProviderGauge {
			var out []metrics.ProviderGauge
			for _, p := range d.engine.Snapshot(time.Now()) {
				out = append(out, metrics.ProviderGauge{Provider: p.Name, Connections: p.Connections, Suspended: p.SuspendedUntil != nil})
			}
			return out
		},
		Alarm:          d.alarm.Load,
		WebhookPending: d.webhookPending,
		BreakerTripped: d.breakerTripped,
	})
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
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		st, err := d.store.Stats(ctx)
		if err == nil {
			over := (a.Messages > 0 && st.Messages >= a.Messages) ||
				(a.Age > 0 && !st.Oldest.IsZero() && time.Since(st.Oldest) >= time.Duration(a.Age))
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
		case <-t.C:
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
	Breaker   []breakerEntry         `json:"breaker"` // senders the circuit breaker stops
	// Dead lists the destinations that do not answer, their mail deferred
	// until a probe at Until finds them alive (issue 19 §4).
	Dead []scheduler.DeadDest `json:"dead"`
	// Pools are the outbound IP pools, each IP's warm-up day (issue 17 §4).
	Pools []PoolStatus `json:"pools"`
}

// SuspendedProvider names a provider (or default destination) on hold.
type SuspendedProvider struct {
	Provider string    `json:"provider"`
	Until    time.Time `json:"until"`
	Reason   string    `json:"reason"`
}

func (d *daemon) status(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
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

func cmdStatus(args []string) int {
	fs, cfgPath := newFlags("status")
	asJSON := fs.Bool("json", false, "print JSON")
	top := fs.Bool("top", false, "also show the top senders, users, clients, domains and subjects (facteur top)")
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintf(os.Stderr, "facteur status: unexpected argument %q\n", pos[0])
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	var raw []byte
	if err := newAdminClient(cfg).do("GET", "/status", nil, nil, &raw); err != nil {
		return failErr(err)
	}
	if *asJSON && !*top {
		os.Stdout.Write(raw)
		return 0
	}
	if *top {
		defer func() { printTop(cfg, 10, *asJSON) }()
		if *asJSON {
			os.Stdout.Write(raw)
			return 0
		}
	}
	var st Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return failErr(err)
	}
	fmt.Printf("facteur on %s at %s\n\n", cfg.Hostname, st.Now.Local().Format(admin.TextTime))
	oldest := "none"
	if st.Oldest != nil {
		oldest = fmt.Sprintf("%s (%s ago)", st.Oldest.Local().Format(admin.TextTime), time.Since(*st.Oldest).Round(time.Second))
	}
	fmt.Printf("queue: %d message%s, oldest %s", st.Messages, plural(st.Messages), oldest)
	if st.Alarm {
		fmt.Print("   ALARM: queue deeper or older than queue_alarm")
	}
	fmt.Println()
	if len(st.Queue) > 0 {
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  provider\tstatus\trecipients")
		for _, q := range st.Queue {
			fmt.Fprintf(tw, "  %s\t%s\t%d\n", q.Provider, q.Status, q.Count)
		}
		tw.Flush()
	}
	lh := st.LastHour
	fmt.Printf("\nlast hour: %d delivered, %d deferred, %d bounced, %d expired, %d suppressed\n",
		lh["delivered"], lh["deferred"], lh["bounced"], lh["expired"], lh["suppressed"])
	for _, b := range st.Breaker {
		fmt.Printf("\nbreaker: %s stopped since %s, %s, %d message%s held (facteur breaker reset %s)\n",
			b.Key, b.At.Local().Format(admin.TextTime), b.Summary(), b.Held, plural(b.Held), b.Key)
	}
	for _, x := range st.Dead {
		fmt.Printf("\ndead: %s, next probe %s (in %s): %s\n", x.Dest, x.Until.Local().Format(time.DateTime), time.Until(x.Until).Round(time.Second), strings.TrimSpace(x.Reason))
	}
	for _, p := range st.Pools {
		fmt.Printf("\npool %s (overflow: %s):\n", p.Name, p.Overflow)
		for _, ip := range p.IPs {
			line := "  " + ip.Addr
			if ip.EHLO != "" {
				line += " (" + ip.EHLO + ")"
			}
			if ip.WarmupDay != nil {
				line += fmt.Sprintf("  warm-up day %d, %d a day per provider", *ip.WarmupDay, *ip.WarmupCap)
			} else {
				line += "  warm"
			}
			if len(ip.SuspendedAt) > 0 {
				line += "  suspended at " + strings.Join(ip.SuspendedAt, ", ")
			}
			fmt.Println(line)
		}
	}
	if len(st.Suspended) == 0 {
		fmt.Println("\nno provider suspended")
		return 0
	}
	fmt.Println("\nsuspended:")
	for _, s := range st.Suspended {
		fmt.Printf("  %s until %s (in %s): %s\n", s.Provider, s.Until.Local().Format(admin.TextTime), time.Until(s.Until).Round(time.Second), strings.TrimSpace(s.Reason))
	}
	return 0
}

var _ atomic.Bool

// cmdTop is `facteur top`: who is sending all this mail (the screen that
// finds the hacked site), from the daemon or, when it is down, the queue.
func cmdTop(args []string) int {
	fs, cfgPath := newFlags("top")
	asJSON := fs.Bool("json", false, "print JSON")
	n := fs.Int("n", 10, "entries per table")
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) > 0 || *n <= 0 {
		fmt.Fprintln(os.Stderr, "usage: facteur top [-n N] [--json]")
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	return printTop(cfg, *n, *asJSON)
}

func printTop(cfg *config.Config, n int, asJSON bool) int {
	qc := &queueClient{cfg: cfg, c: newAdminClient(cfg)}
	var raw []byte
	if err := qc.do("GET", "/queue/top", url.Values{"n": {strconv.Itoa(n)}}, &raw); err != nil {
		return failErr(err)
	}
	if asJSON {
		os.Stdout.Write(raw)
		return 0
	}
	var rep admin.TopReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return failErr(err)
	}
	if qc.offline {
		fmt.Println("(the daemon is not running: the last hour counts only what is still queued)")
	}
	admin.WriteTop(os.Stdout, rep)
	return 0
}

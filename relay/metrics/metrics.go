// Package metrics exposes facteur's Prometheus metrics (issue 8 §2) with
// github.com/prometheus/client_golang, on the admin endpoint's /metrics,
// and keeps the last hour's delivery counts for `facteur status`. Counters
// are fed by the daemon's event hooks; queue and provider gauges are read at
// scrape time from the sources given to New, so they are never stale.
package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// QueueDepth is one gauge sample: recipients of a provider in a status.
type QueueDepth struct {
	Provider string `json:"provider"`
	Status   string `json:"status"`
	Count    int    `json:"count"`
}

// Sources are read at each scrape.
type Sources struct {
	// Queue returns recipient counts by provider and status, and the age
	// of the oldest message.
	Queue func(ctx context.Context) ([]QueueDepth, time.Duration, error)
	// Providers returns, per provider, open connections and whether it is
	// suspended.
	Providers func() []ProviderGauge
	// WebhookPending is the number of events waiting in the outbox; may be nil.
	WebhookPending func() int
	// Alarm reports whether the queue-depth alarm is raised; may be nil.
	Alarm func() bool
	// BreakerTripped returns the senders the circuit breaker stops now
	// ("user=www-data"); may be nil.
	BreakerTripped func() []string
}

// ProviderGauge is a provider's live state.
type ProviderGauge struct {
	Provider    string
	Connections int
	Suspended   bool
}

// Metrics holds the registry and the counters.
type Metrics struct {
	reg        *prometheus.Registry
	received   prometheus.Counter
	recipients *prometheus.CounterVec
	suspends   *prometheus.CounterVec
	latency    prometheus.Histogram
	trips      *prometheus.CounterVec
	tls        *prometheus.CounterVec
	sources    *prometheus.CounterVec

	mu     sync.Mutex // guards window
	window [60]minute // the last hour, one slot per minute
}

type minute struct {
	at     int64 // unix minute of the slot
	counts map[string]int
}

// New registers every metric.
func New(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.received = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "facteur_messages_received_total", Help: "Messages accepted and queued (SMTP and maildrop).",
	})
	m.recipients = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "facteur_recipients_total",
		Help: "Recipient outcomes by event (delivered, deferred, bounced, expired, suppressed), provider and response class.",
	}, []string{"event", "provider", "class"})
	m.suspends = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "facteur_provider_events_total", Help: "Provider state changes (suspended, throttled, resumed).",
	}, []string{"event", "provider"})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "facteur_delivery_latency_seconds",
		Help:    "Time from acceptance to delivery, per delivered recipient.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400},
	})
	m.trips = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "facteur_breaker_trips_total", Help: "Circuit breaker trips, by what tripped (user, auth_user, sender_domain).",
	}, []string{"per"})
	m.tls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "facteur_tls_deliveries_total",
		Help: "Delivered recipients by what protected the session: dane, mta-sts, verify, encrypt, opportunistic or none (issue 15).",
	}, []string{"tls"})
	m.sources = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "facteur_source_ip_recipients_total",
		Help: "Recipient outcomes of mail sent from a pool's IP, by event, source_ip and provider (issue 17).",
	}, []string{"event", "source_ip", "provider"})
	m.reg.MustRegister(m.received, m.recipients, m.suspends, m.latency, m.trips, m.tls, m.sources,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&gauges{src: src})
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Received counts one accepted message.
func (m *Metrics) Received() { m.received.Inc() }

// Recipient counts one recipient outcome.
func (m *Metrics) Recipient(event, provider, class string, latency time.Duration, at time.Time) {
	m.recipients.WithLabelValues(event, provider, class).Inc()
	if event == "delivered" && latency > 0 {
		m.latency.Observe(latency.Seconds())
	}
	m.count(event, at)
}

// SourceIP counts one recipient outcome of mail sent from a pool's IP.
func (m *Metrics) SourceIP(event, sourceIP, provider string) {
	m.sources.WithLabelValues(event, sourceIP, provider).Inc()
}

// BreakerTrip counts one circuit breaker trip of a key of kind per.
func (m *Metrics) BreakerTrip(per string) { m.trips.WithLabelValues(per).Inc() }

// DeliveredTLS counts one delivered recipient by the protection of its
// session (delivery.Prot*).
func (m *Metrics) DeliveredTLS(mode string) { m.tls.WithLabelValues(mode).Inc() }

// ProviderEvent counts a provider state change.
func (m *Metrics) ProviderEvent(event, provider string) {
	m.suspends.WithLabelValues(event, provider).Inc()
}

func (m *Metrics) count(event string, at time.Time) {
	min := at.Unix() / 60
	m.mu.Lock()
	defer m.mu.Unlock()
	slot := &m.window[min%60]
	if slot.at != min {
		slot.at, slot.counts = min, map[string]int{}
	}
	slot.counts[event]++
}

// LastHour returns the events counted in the hour before now.
func (m *Metrics) LastHour(now time.Time) map[string]int {
	cur := now.Unix() / 60
	out := map[string]int{"delivered": 0, "deferred": 0, "bounced": 0, "expired": 0, "suppressed": 0}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.window {
		if s.counts != nil && cur-s.at < 60 && s.at <= cur {
			for k, v := range s.counts {
				out[k] += v
			}
		}
	}
	return out
}

// gauges are computed at scrape time.
type gauges struct{ src Sources }

var (
	depthDesc = prometheus.NewDesc("facteur_queue_recipients", "Recipients in the queue by provider and status.",
		[]string{"provider", "status"}, nil)
	oldestDesc = prometheus.NewDesc("facteur_queue_oldest_message_age_seconds", "Age of the oldest queued message.", nil, nil)
	connsDesc  = prometheus.NewDesc("facteur_connections_in_flight", "Outbound connections open, by provider.",
		[]string{"provider"}, nil)
	suspDesc = prometheus.NewDesc("facteur_provider_suspended", "1 while the provider is suspended or backed off.",
		[]string{"provider"}, nil)
	hookDesc  = prometheus.NewDesc("facteur_webhook_events_pending", "Webhook events waiting in the outbox.", nil, nil)
	alarmDesc = prometheus.NewDesc("facteur_queue_alarm", "1 while the queue is deeper or older than queue_alarm.", nil, nil)
	breakDesc = prometheus.NewDesc("facteur_breaker_tripped", "1 for each sender the circuit breaker stops, until breaker reset.",
		[]string{"sender"}, nil)
)

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{depthDesc, oldestDesc, connsDesc, suspDesc, hookDesc, alarmDesc, breakDesc} {
		ch <- d
	}
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	if g.src.Queue != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		depth, oldest, err := g.src.Queue(ctx)
		if err == nil {
			for _, d := range depth {
				ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(d.Count), d.Provider, d.Status)
			}
			ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, oldest.Seconds())
		}
	}
	if g.src.Providers != nil {
		for _, p := range g.src.Providers() {
			ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.GaugeValue, float64(p.Connections), p.Provider)
			v := 0.0
			if p.Suspended {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(suspDesc, prometheus.GaugeValue, v, p.Provider)
		}
	}
	if g.src.WebhookPending != nil {
		ch <- prometheus.MustNewConstMetric(hookDesc, prometheus.GaugeValue, float64(g.src.WebhookPending()))
	}
	if g.src.Alarm != nil {
		v := 0.0
		if g.src.Alarm() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(alarmDesc, prometheus.GaugeValue, v)
	}
	if g.src.BreakerTripped != nil {
		for _, k := range g.src.BreakerTripped() {
			ch <- prometheus.MustNewConstMetric(breakDesc, prometheus.GaugeValue, 1, k)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"facteur/dkim"
	"facteur/policy"
	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/clock"
	"facteur/relay/config"
	"facteur/relay/delivery"
	"facteur/relay/maillog"
	"facteur/relay/scheduler"
	"facteur/relay/webhook"
)

// policyStateKey is where the policy engine's state (suspensions, backoff
// levels, throttles) lives in the queue database, so that it survives a
// restart (issue 5 §7).
const policyStateKey = "policy/state"

func loadPolicy(cfg *config.Config) (*policy.Policy, error) {
	if cfg.Policy == "" {
		return policy.Builtin()
	}
	return policy.Load(cfg.Policy)
}

// dkimSigner adapts dkim.Signer to cleanup.Signer.
type dkimSigner struct{ s *dkim.Signer }

func (d dkimSigner) Sign(msg []byte, now time.Time) ([]byte, string, string, error) {
	signed, res, err := d.s.Sign(msg, now)
	if err != nil {
		return nil, "", "", err
	}
	if res.Unsigned != "" {
		return signed, res.Domain, "unsigned: " + res.Unsigned, nil
	}
	return signed, res.Domain, "", nil
}

func dkimKeys(cfg *config.Config) []dkim.KeyConfig {
	var keys []dkim.KeyConfig
	for _, k := range cfg.DKIM {
		keys = append(keys, dkim.KeyConfig{Domain: k.Domain, Selector: k.Selector, Key: k.Key, Algorithm: k.Algorithm, Headers: k.Headers, Subdomains: k.Subdomains})
	}
	return keys
}

func newSigner(cfg *config.Config) (dkimSigner, []string, error) {
	// x= never shorter than the queue lifetime: the last retry must verify
	// (issue 6 §5). A day of margin covers clock skew at the receiver.
	s, warnings, err := dkim.New(dkimKeys(cfg), dkim.Options{Expiration: time.Duration(cfg.Delivery.MaxLifetime) + 24*time.Hour})
	if err != nil {
		return dkimSigner{}, nil, fmt.Errorf("dkim (%s): %w", cfg.File, err)
	}
	return dkimSigner{s}, warnings, nil
}

func schedulerOptions(cfg *config.Config) (scheduler.Options, error) {
	dial := delivery.Options{
		Hostname: cfg.Hostname,
		Port:     cfg.Delivery.Port,
		NoTLS:    cfg.Delivery.TLS == "none",
		Timeouts: delivery.TimeoutsFrom(cfg.Delivery.Timeouts),
	}
	if cfg.Delivery.SourceIP != "" {
		ip, err := parseAddr(cfg.Delivery.SourceIP)
		if err != nil {
			return scheduler.Options{}, err
		}
		dial.SourceIP = ip
	}
	relay := dial
	switch cfg.Delivery.RelayhostTLS {
	case "implicit":
		relay.ImplicitTLS = true
	case "starttls":
		relay.RequireTLS = true
	case "none":
		relay.NoTLS = true
	}
	if relay.NoTLS {
		if cfg.Delivery.RelayhostAuth != nil && cfg.Delivery.RelayhostTLSVerify {
			return scheduler.Options{}, errors.New("delivery.relayhost_auth: the password would go in plaintext with relayhost_tls: none")
		}
	} else {
		// The relayhost is one known server: its certificate must verify
		// for its name (issue 11 §7), and old TLS versions are refused.
		relay.MinTLSVersion = tls.VersionTLS12
		relay.VerifyTLS = cfg.Delivery.RelayhostTLSVerify
		relay.AuthUnverified = !cfg.Delivery.RelayhostTLSVerify
		if cfg.Delivery.RelayhostTLSCA != "" {
			pem, err := os.ReadFile(cfg.Delivery.RelayhostTLSCA)
			if err != nil {
				return scheduler.Options{}, fmt.Errorf("delivery.relayhost_tls_ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return scheduler.Options{}, fmt.Errorf("delivery.relayhost_tls_ca %s: no PEM certificate in it", cfg.Delivery.RelayhostTLSCA)
			}
			relay.RootCAs = pool
		}
	}
	if a := cfg.Delivery.RelayhostAuth; a != nil {
		pw, err := os.ReadFile(a.PasswordFile)
		if err != nil {
			return scheduler.Options{}, fmt.Errorf("delivery.relayhost_auth.password_file: %w", err)
		}
		relay.Auth = &delivery.Auth{Username: a.Username, Password: strings.TrimRight(string(pw), "\r\n")}
	}
	routes, routeTLS := map[string]string{}, map[string]string{}
	for dom, r := range cfg.Routes {
		if r.To != "" {
			routes[dom] = r.To
		}
		if r.TLS != "" {
			routeTLS[dom] = r.TLS
		}
	}
	return scheduler.Options{
		Hostname:        cfg.Hostname,
		Workers:         cfg.Delivery.Workers,
		Dial:            dial,
		Relayhost:       string(cfg.Delivery.Relayhost),
		RelayhostDial:   relay,
		Routes:          routes,
		RouteTLS:        routeTLS,
		MaxLifetime:     time.Duration(cfg.Delivery.MaxLifetime),
		HostUnknownTTL:  time.Duration(cfg.Suppression.HostUnknownTTL),
		Postmaster:      cfg.PostmasterAddress(),
		ShutdownTimeout: time.Duration(cfg.ShutdownTimeout),
		ConnectionCache: time.Duration(cfg.Delivery.ConnectionCacheTime),
	}, nil
}

// savePolicyState stores the engine's state after a provider event.
func (d *daemon) savePolicyState(ctx context.Context) {
	d.policyMu.Lock()
	defer d.policyMu.Unlock()
	b, err := d.engine.MarshalState()
	if err == nil {
		err = d.store.PutState(ctx, policyStateKey, b)
	}
	if err != nil {
		d.log.Error(maillog.PolicyStateNotSaved, "err", err)
	}
}

// reloadPolicy swaps in the policy file atomically; a bad file is refused
// and the old policy stays (issue 5 §1).
func (d *daemon) reloadPolicy() error {
	d.policyMu.Lock()
	defer d.policyMu.Unlock()
	p, err := loadPolicy(d.cfg)
	if err != nil {
		d.log.Error(maillog.PolicyReloadRefused, "err", err)
		return err
	}
	d.engine.Swap(p, time.Now())
	d.log.Info(maillog.PolicyReloaded, "file", d.cfg.Policy)
	d.sched.Wake()
	return nil
}

func (d *daemon) reloadOnHUP(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			d.reloadPolicy()
		}
	}
}

// Flush makes the recipients of the messages f selects due now (the whole
// queue for the empty filter) and reports those a provider suspension still
// holds (issue 3 §6, issue 5 §6). Nothing outside f is touched.
func (d *daemon) Flush(ctx context.Context, f queue.Filter) (admin.FlushReport, error) {
	now := time.Now()
	var rep admin.FlushReport
	if !f.Empty() {
		// Only what f selects moves (issue 13: a filtered flush must not
		// retry the rest early nor push its schedule out).
		n, err := d.store.FlushMatching(ctx, f, now)
		if err != nil {
			return admin.FlushReport{}, err
		}
		rep.Flushed = n
	} else {
		// The whole queue is moved by flushLoop, a batch per transaction,
		// while the scheduler sends what each batch made due: a flush of a
		// million messages answers at once (issue 19 §2), as Postfix's
		// postqueue -f only signals qmgr. The count is of the recipients
		// waiting, from the counters.
		st, err := d.store.Stats(ctx)
		if err != nil {
			return admin.FlushReport{}, err
		}
		rep.Flushed = st.Recipients[queue.Queued] + st.Recipients[queue.Deferred]
		select {
		case d.flushReq <- now:
		default: // one is pending already; it flushes everything
		}
	}
	skip := func(m queue.Message) error {
		for _, r := range m.Recipients {
			if r.Status.Final() || r.Status == queue.Held || r.Provider == "" {
				continue
			}
			if until, why := d.engine.SuspendedUntil(r.Provider, domainOf(r.Address), now); !until.IsZero() {
				if len(rep.Skipped) == maxSkippedReport {
					return errSkippedFull
				}
				rep.Skipped = append(rep.Skipped, admin.SkippedEntry{ID: m.ID, Rcpt: r.Address, Provider: r.Provider, Until: until, Reason: why})
			}
		}
		return nil
	}
	if d.suspendedWaiting(ctx, now) {
		// Only a suspension can hold a recipient back, and the counters say
		// whether one holds any: without, there is nothing to walk. The walk
		// reads a page at a time (or only the IDs given) and the report is
		// bounded.
		if err := d.store.Each(ctx, f, skip); err != nil && !errors.Is(err, errSkippedFull) {
			return admin.FlushReport{}, err
		}
	}
	// As Postfix's flush, it revives dead destinations: try them now.
	d.sched.Revive()
	return rep, nil
}

// maxSkippedReport bounds the recipients a flush lists as held back by a
// suspension; the log and `facteur providers` say the rest.
const maxSkippedReport = 1000

var errSkippedFull = errors.New("skipped report full")

// suspendedWaiting reports whether a suspended provider or destination has
// recipients waiting, from the queue's counters.
func (d *daemon) suspendedWaiting(ctx context.Context, now time.Time) bool {
	cs, err := d.store.Counts(ctx)
	if err != nil {
		return true // walk, rather than leave out what a flush skips
	}
	for _, c := range cs {
		if c.Provider == "" || !(c.Status == queue.Queued || c.Status == queue.Deferred) {
			continue
		}
		if until, _ := d.engine.SuspendedUntil(c.Provider, c.Domain, now); !until.IsZero() {
			return true
		}
	}
	return false
}

// flushLoop runs the whole-queue flushes `queue flush` asks for, one batch
// per transaction, waking the scheduler after each so that delivery starts
// with the first batch.
func (d *daemon) flushLoop(ctx context.Context) error {
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return nil
		case now = <-d.flushReq:
		}
		total := 0
		var c queue.FlushCursor
		for !c.Done() {
			n, err := d.store.FlushBatch(ctx, now, &c)
			total += n
			if err != nil {
				if ctx.Err() == nil {
					d.log.Error(maillog.QueueFlush, "err", err)
				}
				break
			}
			d.sched.Wake()
		}
		d.log.Info(maillog.QueueFlushed, "messages", total)
	}
}

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

// routeRegistrars add admin endpoints defined in other files of this
// command (suppressions, bounces, metrics, status).
var routeRegistrars []func(d *daemon, routes map[string]http.Handler)

// routes are the daemon's admin endpoints beyond the queue.
func (d *daemon) routes() map[string]http.Handler {
	m := d.baseRoutes()
	for _, r := range routeRegistrars {
		r(d, m)
	}
	return m
}

func (d *daemon) baseRoutes() map[string]http.Handler {
	return map[string]http.Handler{
		"GET /providers":                http.HandlerFunc(d.providers),
		"POST /providers/{name}/resume": http.HandlerFunc(d.resume),
		"POST /policy/reload":           http.HandlerFunc(d.policyReload),
		"GET /policy":                   http.HandlerFunc(d.policyShow),
		"GET /events":                   http.HandlerFunc(d.recentEvents),
	}
}

func (d *daemon) providers(w http.ResponseWriter, r *http.Request) {
	states, err := d.providerStates(r.Context(), time.Now())
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
	ev, err := d.engine.Resume(name, time.Now())
	if err != nil {
		return err
	}
	d.log.Info(string(ev.Kind), ev.LogAttrs()...)
	d.clusterResumed(ev, time.Now())
	d.savePolicyState(ctx)
	d.sched.Wake()
	return nil
}

func (d *daemon) policyReload(w http.ResponseWriter, r *http.Request) {
	if err := d.reloadPolicy(); err != nil {
		admin.WriteError(w, http.StatusBadRequest, err)
		return
	}
	admin.WriteJSON(w, http.StatusOK, map[string]string{"reloaded": d.cfg.Policy})
}

func (d *daemon) policyShow(w http.ResponseWriter, r *http.Request) {
	b, err := d.engine.Policy().Show(true)
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (d *daemon) recentEvents(w http.ResponseWriter, r *http.Request) {
	admin.WriteJSON(w, http.StatusOK, d.events.list())
}

// eventRing keeps the last delivery events for the admin endpoint and
// `facteur status`.
type eventRing struct {
	mu   sync.Mutex // guards buf and next
	buf  []scheduler.DeliveryEvent
	next int
	full bool
}

func newEventRing(n int) *eventRing { return &eventRing{buf: make([]scheduler.DeliveryEvent, n)} }

func (e *eventRing) add(ev scheduler.DeliveryEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf[e.next] = ev
	e.next = (e.next + 1) % len(e.buf)
	if e.next == 0 {
		e.full = true
	}
}

func (e *eventRing) list() []scheduler.DeliveryEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []scheduler.DeliveryEvent
	if e.full {
		out = append(out, e.buf[e.next:]...)
	}
	out = append(out, e.buf[:e.next]...)
	if out == nil {
		out = []scheduler.DeliveryEvent{}
	}
	return out
}

// newWebhooks builds one webhook per configured URL, over the queue
// database as the durable outbox (issue 8 §4).
func newWebhooks(ctx context.Context, cfg *config.Config, store *queue.Store, log *slog.Logger) ([]*webhook.Webhook, error) {
	var hooks []*webhook.Webhook
	for i, wc := range cfg.Webhooks {
		secret := []byte(wc.Secret)
		if wc.SecretFile != "" {
			b, err := os.ReadFile(wc.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("webhooks[%d].secret_file: %w", i, err)
			}
			secret = bytes.TrimSpace(b)
		}
		h, err := webhook.New(ctx, webhook.Options{
			URL: wc.URL, Secret: secret, Events: wc.Events, BatchSize: wc.BatchSize,
			BatchWait: time.Duration(wc.BatchWait), Timeout: time.Duration(wc.Timeout),
		}, store, clock.Real{}, log)
		if err != nil {
			return nil, fmt.Errorf("webhooks[%d]: %w", i, err)
		}
		hooks = append(hooks, h)
	}
	return hooks, nil
}

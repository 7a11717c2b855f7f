package daemon

// The per-sender circuit breaker in the daemon (issue 21): relay/breaker
// decides; this file acts on its decisions (holds the sender's mail, logs,
// notifies, posts the webhook event, saves the state in the queue
// database) and serves `facteur breaker list` and `facteur breaker reset`.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/breaker"
	"facteur/relay/cleanup"
	"facteur/relay/clock"
	"facteur/relay/cluster"
	"facteur/relay/config"
	"facteur/relay/maillog"
	"facteur/relay/webhook"
)

// BreakerStateKey is where the breaker's state lives in the queue
// database, so that a stopped sender stays stopped across a restart.
const BreakerStateKey = "breaker/state"

// breakerGuard is the daemon's breaker: the scheduler's Breaker, the
// cleanup's Hold, and the goroutine that acts on trips.
type breakerGuard struct {
	b     *breaker.Breaker
	cfg   config.Breaker
	store *queue.Store
	log   *slog.Logger
	hooks []*webhook.Webhook
	clock clock.Clock
	d     *daemon // for the cleanup (notification) and metrics, set in serve
	// fleet shares trips and resets with the other nodes; nil alone.
	fleet *cluster.Cluster

	mu      sync.Mutex // guards pending
	pending [][]breaker.Trip
	wake    chan struct{}
	saveMu  sync.Mutex // serialises state saves
}

func breakerConfig(c *config.Breaker) breaker.Config {
	return breaker.Config{Window: time.Duration(c.Window), MinRecipients: c.MinRecipients,
		MaxFailed: c.MaxFailed, MaxDeferred: c.MaxDeferred, Per: c.Per}
}

// newBreakerGuard builds the breaker of cfg and restores its saved state.
// A state that cannot be read is logged and ignored: the breaker then
// starts armed and empty, which stops no one wrongly.
func newBreakerGuard(ctx context.Context, cfg *config.Config, store *queue.Store, log *slog.Logger, clk clock.Clock) *breakerGuard {
	g := &breakerGuard{b: breaker.New(breakerConfig(cfg.Breaker)), cfg: *cfg.Breaker, store: store, log: log, clock: clk, wake: make(chan struct{}, 1)}
	st, err := store.State(ctx, BreakerStateKey)
	if err == nil {
		err = g.b.RestoreState(st)
	}
	if err != nil && !errors.Is(err, queue.ErrNotFound) {
		log.Warn(maillog.BreakerStateNotRestored, "err", err)
	}
	return g
}

func senderOf(m queue.Message) breaker.Sender {
	return breaker.Sender{User: m.User, AuthUser: m.AuthUser, Address: m.Sender}
}

// Observe is the scheduler's call after each recorded outcome.
func (g *breakerGuard) Observe(msg queue.Message, o breaker.Outcome) {
	if msg.IsDSN {
		return
	}
	o.Sender = senderOf(msg)
	// The scheduler's clock read at the record is the breaker's now.
	g.observe(o, o.At)
}

// Suppressed is the acceptance path's call (relay/submission at RCPT,
// relay/pickup for a maildrop file): a recipient refused or dropped because
// it is suppressed counts as failed against the sender (issue 21 §1), with
// no queue ID (it never had one).
func (g *breakerGuard) Suppressed(s breaker.Sender, rcpt, why string, now time.Time) {
	g.observe(breaker.Outcome{Sender: s, Rcpt: rcpt, Status: breaker.Suppressed,
		Reply: "550 5.1.1 <" + rcpt + ">: " + why, At: now}, now)
}

// observe counts o and hands what it tripped to Run.
func (g *breakerGuard) observe(o breaker.Outcome, now time.Time) {
	trips := g.b.Observe(o, now)
	if len(trips) == 0 {
		return
	}
	g.mu.Lock()
	g.pending = append(g.pending, trips)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// Stopped is the scheduler's question before a send.
func (g *breakerGuard) Stopped(msg queue.Message) (string, bool) {
	k, ok := g.b.Stopped(senderOf(msg))
	return string(k), ok
}

// Hold is the cleanup's question at acceptance (issue 21 §2): a stopped
// sender's new mail is queued held, or refused with 451 4.7.1.
func (g *breakerGuard) Hold(env queue.Envelope, _ time.Time) (string, []any, error) {
	if g == nil || env.IsDSN {
		return "", nil, nil
	}
	k, ok := g.b.Stopped(breaker.Sender{User: env.User, AuthUser: env.AuthUser, Address: env.Sender})
	if !ok {
		return "", nil, nil
	}
	attrs := []any{k.Kind(), k.Value()}
	if g.cfg.Action == "refuse" {
		return "", attrs, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
			Message: "Mail of " + string(k) + " stopped by the circuit breaker (too many failed recipients), try again later"}
	}
	return breaker.Reason, attrs, nil
}

// Run acts on trips as they come and saves the windows every minute and at
// shutdown.
func (g *breakerGuard) Run(ctx context.Context) error {
	next := g.clock.Now().Add(time.Minute)
	for {
		select {
		case <-ctx.Done():
			// The outcomes of the last transactions still count.
			wctx := context.WithoutCancel(ctx)
			g.handle(wctx)
			g.save(wctx)
			return nil
		case <-g.wake:
			g.handle(ctx)
		case <-g.clock.At(next):
			next = next.Add(time.Minute)
			g.save(ctx)
		}
	}
}

func (g *breakerGuard) save(ctx context.Context) {
	g.saveMu.Lock()
	defer g.saveMu.Unlock()
	b, err := g.b.MarshalState(g.clock.Now())
	if err == nil {
		err = g.store.PutState(ctx, BreakerStateKey, b)
	}
	if err != nil {
		g.log.Error(maillog.BreakerStateNotSaved, "err", err)
	}
}

// handle acts on the trips found since the last call.
func (g *breakerGuard) handle(ctx context.Context) {
	g.mu.Lock()
	batches := g.pending
	g.pending = nil
	g.mu.Unlock()
	for _, trips := range batches {
		g.tripped(ctx, trips)
	}
}

// tripped: one log line per key, the state saved at once, the sender's
// queued mail held, the webhook event, and one message to the notify
// addresses for the keys that tripped together.
func (g *breakerGuard) tripped(ctx context.Context, trips []breaker.Trip) {
	now := g.clock.Now()
	for _, t := range trips {
		g.log.Info(maillog.BreakerTripped, t.Key.Kind(), t.Key.Value(), "failed", fmt.Sprintf("%d%%", t.FailedPct()),
			"deferred", fmt.Sprintf("%d%%", t.DeferredPct()), maillog.Prose(fmt.Sprintf("of %d recipients in %s", t.Recipients, t.Window)))
		if g.d != nil && g.d.metrics != nil {
			g.d.metrics.BreakerTrip(t.Key.Kind())
		}
	}
	g.save(ctx)
	if g.fleet != nil {
		for _, t := range trips {
			g.fleet.BreakerTripped(t)
		}
	}
	held := g.holdQueued(ctx)
	for _, t := range trips {
		ev := webhook.Event{Event: webhook.Breaker, Sender: string(t.Key), Response: string(t.Key) + " " + t.Summary(), Timestamp: now,
			Breaker: &webhook.BreakerInfo{Sender: string(t.Key), Action: g.cfg.Action, Recipients: t.Recipients,
				Failed: t.Failed, Deferred: t.Deferred, Window: t.Window, Held: held}}
		for _, h := range g.hooks {
			if err := h.Add(ctx, ev); err != nil {
				g.log.Error(maillog.WebhookOutbox, "err", err)
			}
		}
	}
	g.notify(ctx, trips, held, now)
}

// holdQueued holds the queued mail not yet sent of every stopped sender
// and returns how many messages it held. It reads the whole queue: a trip
// is rare, and the scheduler's check before each send covers what this
// scan misses.
func (g *breakerGuard) holdQueued(ctx context.Context) int {
	var ids []queue.ID
	keys := map[queue.ID]breaker.Key{}
	err := g.store.Each(ctx, queue.Filter{}, func(m queue.Message) error {
		if m.IsDSN {
			return nil
		}
		k, ok := g.b.Stopped(senderOf(m))
		if !ok {
			return nil
		}
		for _, r := range m.Recipients {
			if r.Status == queue.Queued || r.Status == queue.Deferred {
				ids = append(ids, m.ID)
				keys[m.ID] = k
				break
			}
		}
		return nil
	})
	if err != nil {
		g.log.Error(maillog.BreakerReadQueue, "err", err)
	}
	if len(ids) == 0 {
		return 0
	}
	held, err := g.store.HoldIDs(ctx, ids, breaker.Reason)
	if err != nil {
		g.log.Error(maillog.BreakerHold, "err", err)
	}
	for _, id := range held {
		k := keys[id]
		g.log.Info(maillog.Held, "qid", string(id), "reason", breaker.Reason, k.Kind(), k.Value())
	}
	return len(held)
}

// notify queues the report to the notify addresses, or to root (whose
// alias the cleanup applies) when there are none, from the null sender so
// that it can neither bounce nor be held by a breaker.
func (g *breakerGuard) notify(ctx context.Context, trips []breaker.Trip, held int, now time.Time) {
	if g.d == nil || g.d.cleanup == nil {
		return
	}
	to := g.cfg.Notify
	if len(to) == 0 {
		to = []string{"root"}
	}
	keys := make([]string, len(trips))
	for i, t := range trips {
		keys[i] = string(t.Key)
	}
	host := g.d.cfg.Hostname
	var b strings.Builder
	fmt.Fprintf(&b, "From: facteur <MAILER-DAEMON@%s>\r\n", host)
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(to, ", "))
	fmt.Fprintf(&b, "Subject: facteur breaker tripped: %s stopped on %s\r\n", strings.Join(keys, ", "), host)
	b.WriteString("Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(breaker.Report(host, trips, g.cfg.Action, held), "\n", "\r\n"))
	id, err := g.d.cleanup.Process(ctx, cleanup.Message{Recipients: to, ClientIP: "127.0.0.1", Helo: "localhost",
		Protocol: "local", Data: []byte(b.String())}, now)
	if err != nil {
		g.log.Error(maillog.BreakerNotify, "err", err)
		return
	}
	g.log.Info(maillog.BreakerNotified, "qid", string(id), "rcpt", strings.Join(to, ","))
}

// BreakerEntry is one stopped sender as list and status show it.
type BreakerEntry struct {
	breaker.Trip
	Held int `json:"held"` // messages held by the breaker for this sender
}

// BreakerListing is GET /breaker.
type BreakerListing struct {
	Enabled bool              `json:"enabled"`
	Action  string            `json:"action,omitempty"`
	Tripped []BreakerEntry    `json:"tripped"`
	Watched []breaker.Figures `json:"watched"`
}

// entries lists the stopped senders with their held mail.
func (g *breakerGuard) entries(ctx context.Context) ([]BreakerEntry, error) {
	out := []BreakerEntry{}
	if g == nil {
		return out, nil
	}
	trips := g.b.Tripped()
	if len(trips) == 0 {
		return out, nil
	}
	held := map[breaker.Key]int{}
	err := g.store.Each(ctx, queue.Filter{Status: queue.Held}, func(m queue.Message) error {
		if m.HoldReason == breaker.Reason {
			for _, k := range g.b.Config().Keys(senderOf(m)) {
				held[k]++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, t := range trips {
		out = append(out, BreakerEntry{Trip: t, Held: held[t.Key]})
	}
	return out, nil
}

func (d *daemon) breakerList(w http.ResponseWriter, r *http.Request) {
	out := BreakerListing{Tripped: []BreakerEntry{}, Watched: []breaker.Figures{}}
	if g := d.breaker; g != nil {
		out.Enabled, out.Action = true, g.cfg.Action
		var err error
		if out.Tripped, err = g.entries(r.Context()); err != nil {
			admin.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		if w := g.b.Watched(d.clock.Now()); w != nil {
			out.Watched = w
		}
	}
	admin.WriteJSON(w, http.StatusOK, out)
}

// BreakerResetRequest is the body of POST /breaker/reset.
type BreakerResetRequest struct {
	Senders []string `json:"senders"`
	Delete  bool     `json:"delete"`
}

// BreakerResetResult answers it.
type BreakerResetResult struct {
	Reset    []string `json:"reset"`
	Released int      `json:"released"`
	Deleted  int      `json:"deleted"`
}

func (d *daemon) breakerReset(w http.ResponseWriter, r *http.Request) {
	g := d.breaker
	if g == nil {
		admin.WriteError(w, http.StatusBadRequest, errors.New("the circuit breaker is off (no breaker: block in the config)"))
		return
	}
	var req BreakerResetRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Senders) == 0 {
		admin.WriteError(w, http.StatusBadRequest, errors.New("want {\"senders\": [SENDER, ...], \"delete\": false}"))
		return
	}
	res, err := g.reset(r.Context(), req, d.clock.Now())
	if err != nil {
		admin.WriteError(w, http.StatusBadRequest, err)
		return
	}
	if g.fleet != nil {
		for _, k := range res.Reset {
			g.fleet.BreakerReset(breaker.Key(k))
		}
	}
	if d.sched != nil {
		d.sched.Wake()
	}
	admin.WriteJSON(w, http.StatusOK, res)
}

// imposed acts on a trip another node found (the breaker already holds
// it): one log line naming that node, the state saved, this node's queued
// mail of the sender held. The tripping node notifies and posts the
// webhook event, once for the fleet.
func (g *breakerGuard) imposed(ctx context.Context, t breaker.Trip) {
	g.log.Info(maillog.BreakerTripped, t.Key.Kind(), t.Key.Value(), "node", t.Node, "failed", fmt.Sprintf("%d%%", t.FailedPct()),
		"deferred", fmt.Sprintf("%d%%", t.DeferredPct()), maillog.Prose(fmt.Sprintf("of %d recipients in %s", t.Recipients, t.Window)))
	g.save(ctx)
	g.holdQueued(ctx)
}

// resetByFleet re-arms k after a reset at another node and releases this
// node's mail held for it.
func (g *breakerGuard) resetByFleet(ctx context.Context, k breaker.Key) {
	if _, err := g.reset(ctx, BreakerResetRequest{Senders: []string{string(k)}}, g.clock.Now()); err != nil && !errors.Is(err, breaker.ErrNotTripped) {
		g.log.Error(maillog.BreakerHold, "err", err)
	}
	if g.d != nil && g.d.sched != nil {
		g.d.sched.Wake()
	}
}

// resolve turns what the operator typed into a tripped key: "user=NAME",
// "auth_user=NAME", "sender_domain=DOMAIN", or a bare name or domain that
// names exactly one tripped key.
func (g *breakerGuard) resolve(s string) (breaker.Key, error) {
	if strings.Contains(s, "=") {
		return breaker.ParseKey(s)
	}
	var found []breaker.Key
	for _, t := range g.b.Tripped() {
		if strings.EqualFold(t.Key.Value(), strings.TrimPrefix(s, "@")) {
			found = append(found, t.Key)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("%s: no stopped sender by that name (facteur breaker list)", s)
	}
	return "", fmt.Errorf("%s names %d stopped senders, say which: %v", s, len(found), found)
}

// reset re-arms the keys, then releases (or deletes) the mail the breaker
// held for them that no other stopped key still holds, and saves the state.
// A release makes the mail due now; it is delivered once, like any
// released message.
func (g *breakerGuard) reset(ctx context.Context, req BreakerResetRequest, now time.Time) (BreakerResetResult, error) {
	res := BreakerResetResult{Reset: []string{}}
	var keys []breaker.Key
	for _, s := range req.Senders {
		k, err := g.resolve(s)
		if err != nil {
			return res, err
		}
		keys = append(keys, k)
	}
	var errs []error
	reset := map[breaker.Key]bool{}
	for _, k := range keys {
		if _, err := g.b.Reset(k, now); err != nil {
			errs = append(errs, err)
			continue
		}
		reset[k] = true
		res.Reset = append(res.Reset, string(k))
	}
	if len(reset) == 0 {
		return res, errors.Join(errs...)
	}
	g.save(ctx)
	// Collect first, then change: Each reads pages while we write.
	var msgs []queue.Message
	err := g.store.Each(ctx, queue.Filter{Status: queue.Held}, func(m queue.Message) error {
		if m.HoldReason == breaker.Reason {
			msgs = append(msgs, queue.Message{ID: m.ID, Sender: m.Sender, User: m.User, AuthUser: m.AuthUser})
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	perKey := map[breaker.Key]int{}
	for _, m := range msgs {
		if _, still := g.b.Stopped(senderOf(m)); still {
			continue
		}
		var mine []breaker.Key
		for _, k := range g.b.Config().Keys(senderOf(m)) {
			if reset[k] {
				mine = append(mine, k)
			}
		}
		if len(mine) == 0 {
			continue
		}
		var err error
		if req.Delete {
			err = g.store.Delete(ctx, m.ID)
		} else {
			err = g.store.Release(ctx, m.ID, now)
		}
		if errors.Is(err, queue.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		event := maillog.Released
		if req.Delete {
			event = maillog.Deleted
			res.Deleted++
		} else {
			res.Released++
		}
		g.log.Info(event, "qid", string(m.ID), "by", "breaker reset", mine[0].Kind(), mine[0].Value())
		for _, k := range mine {
			perKey[k]++
		}
	}
	what := "released"
	if req.Delete {
		what = "deleted"
	}
	for _, k := range keys {
		if reset[k] {
			g.log.Info(maillog.BreakerReset, k.Kind(), k.Value(), what, perKey[k])
		}
	}
	return res, errors.Join(errs...)
}

// breakerTripped feeds the facteur_breaker_tripped gauge.
func (d *daemon) breakerTripped() []string {
	if d.breaker == nil {
		return nil
	}
	var out []string
	for _, t := range d.breaker.b.Tripped() {
		out = append(out, string(t.Key))
	}
	return out
}

package main

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
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/breaker"
	"facteur/relay/cleanup"
	"facteur/relay/cluster"
	"facteur/relay/config"
	"facteur/relay/maillog"
	"facteur/relay/webhook"
)

func init() {
	register("breaker", "list the senders the circuit breaker stopped, reset them", cmdBreaker)
	routeRegistrars = append(routeRegistrars, func(d *daemon, m map[string]http.Handler) {
		m["GET /breaker"] = http.HandlerFunc(d.breakerList)
		m["POST /breaker/reset"] = http.HandlerFunc(d.breakerReset)
	})
}

// breakerStateKey is where the breaker's state lives in the queue
// database, so that a stopped sender stays stopped across a restart.
const breakerStateKey = "breaker/state"

// breakerGuard is the daemon's breaker: the scheduler's Breaker, the
// cleanup's Hold, and the goroutine that acts on trips.
type breakerGuard struct {
	b     *breaker.Breaker
	cfg   config.Breaker
	store *queue.Store
	log   *slog.Logger
	hooks []*webhook.Webhook
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
func newBreakerGuard(ctx context.Context, cfg *config.Config, store *queue.Store, log *slog.Logger) *breakerGuard {
	g := &breakerGuard{b: breaker.New(breakerConfig(cfg.Breaker)), cfg: *cfg.Breaker, store: store, log: log, wake: make(chan struct{}, 1)}
	st, err := store.State(ctx, breakerStateKey)
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
	t := time.NewTicker(time.Minute)
	defer t.Stop()
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
		case <-t.C:
			g.save(ctx)
		}
	}
}

func (g *breakerGuard) save(ctx context.Context) {
	g.saveMu.Lock()
	defer g.saveMu.Unlock()
	b, err := g.b.MarshalState(time.Now())
	if err == nil {
		err = g.store.PutState(ctx, breakerStateKey, b)
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
	now := time.Now()
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

// breakerEntry is one stopped sender as list and status show it.
type breakerEntry struct {
	breaker.Trip
	Held int `json:"held"` // messages held by the breaker for this sender
}

// breakerListing is GET /breaker.
type breakerListing struct {
	Enabled bool              `json:"enabled"`
	Action  string            `json:"action,omitempty"`
	Tripped []breakerEntry    `json:"tripped"`
	Watched []breaker.Figures `json:"watched"`
}

// entries lists the stopped senders with their held mail.
func (g *breakerGuard) entries(ctx context.Context) ([]breakerEntry, error) {
	out := []breakerEntry{}
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
		out = append(out, breakerEntry{Trip: t, Held: held[t.Key]})
	}
	return out, nil
}

func (d *daemon) breakerList(w http.ResponseWriter, r *http.Request) {
	out := breakerListing{Tripped: []breakerEntry{}, Watched: []breaker.Figures{}}
	if g := d.breaker; g != nil {
		out.Enabled, out.Action = true, g.cfg.Action
		var err error
		if out.Tripped, err = g.entries(r.Context()); err != nil {
			admin.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		if w := g.b.Watched(time.Now()); w != nil {
			out.Watched = w
		}
	}
	admin.WriteJSON(w, http.StatusOK, out)
}

// breakerResetRequest is the body of POST /breaker/reset.
type breakerResetRequest struct {
	Senders []string `json:"senders"`
	Delete  bool     `json:"delete"`
}

// breakerResetResult answers it.
type breakerResetResult struct {
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
	var req breakerResetRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Senders) == 0 {
		admin.WriteError(w, http.StatusBadRequest, errors.New("want {\"senders\": [SENDER, ...], \"delete\": false}"))
		return
	}
	res, err := g.reset(r.Context(), req, time.Now())
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
	if _, err := g.reset(ctx, breakerResetRequest{Senders: []string{string(k)}}, time.Now()); err != nil && !errors.Is(err, breaker.ErrNotTripped) {
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
func (g *breakerGuard) reset(ctx context.Context, req breakerResetRequest, now time.Time) (breakerResetResult, error) {
	res := breakerResetResult{Reset: []string{}}
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

const breakerUsage = `usage: facteur breaker list [--json] [--all]
       facteur breaker reset [--delete] SENDER...   (SENDER: user=NAME, auth_user=NAME, sender_domain=DOMAIN)`

func cmdBreaker(args []string) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "reset") {
		fmt.Fprintln(os.Stderr, breakerUsage)
		return 2
	}
	sub := args[0]
	fs, cfgPath := newFlags("breaker " + sub)
	asJSON := fs.Bool("json", false, "list: print JSON")
	all := fs.Bool("all", false, "list: also the figures of every sender watched")
	del := fs.Bool("delete", false, "reset: delete the held mail instead of releasing it")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	if sub == "list" {
		if len(pos) > 0 {
			fmt.Fprintln(os.Stderr, breakerUsage)
			return 2
		}
		var raw []byte
		err := newAdminClient(cfg).do("GET", "/breaker", nil, nil, &raw)
		if errors.Is(err, errDaemonDown) {
			raw, err = offlineBreaker(cfg, "GET", "/breaker", nil)
		}
		if err != nil {
			return failErr(err)
		}
		if *asJSON {
			os.Stdout.Write(raw)
			return 0
		}
		var l breakerListing
		if err := json.Unmarshal(raw, &l); err != nil {
			return failErr(err)
		}
		printBreaker(l, *all)
		return 0
	}
	if len(pos) == 0 {
		fmt.Fprintln(os.Stderr, breakerUsage)
		return 2
	}
	req := breakerResetRequest{Senders: pos, Delete: *del}
	var raw []byte
	err = newAdminClient(cfg).do("POST", "/breaker/reset", nil, req, &raw)
	if errors.Is(err, errDaemonDown) {
		raw, err = offlineBreaker(cfg, "POST", "/breaker/reset", req)
	}
	if err != nil {
		return failErr(err)
	}
	var res breakerResetResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return failErr(err)
	}
	for _, k := range res.Reset {
		fmt.Printf("%s reset: the breaker is armed again\n", k)
	}
	if *del {
		fmt.Printf("%d held message%s deleted\n", res.Deleted, plural(res.Deleted))
	} else {
		fmt.Printf("%d held message%s released\n", res.Released, plural(res.Released))
	}
	return 0
}

func printBreaker(l breakerListing, all bool) {
	if !l.Enabled {
		fmt.Println("the circuit breaker is off (no breaker: block in the config)")
		return
	}
	if len(l.Tripped) == 0 {
		fmt.Println("no sender stopped by the circuit breaker")
	} else {
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SENDER\tSTOPPED SINCE\tFIGURES\tHELD")
		for _, e := range l.Tripped {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", e.Key, e.At.Local().Format("2006-01-02 15:04:05 MST"), e.Summary(), e.Held)
		}
		tw.Flush()
		fmt.Println("\nfacteur breaker reset SENDER releases its held mail (--delete deletes it) and re-arms the breaker.")
	}
	if all {
		sort.Slice(l.Watched, func(i, j int) bool { return l.Watched[i].Recipients > l.Watched[j].Recipients })
		fmt.Println("\nwatched in the window:")
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SENDER\tRECIPIENTS\tFAILED\tDEFERRED")
		for _, f := range l.Watched {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\n", f.Key, f.Recipients, f.Failed, f.Deferred)
		}
		tw.Flush()
	}
}

// offlineBreaker answers the breaker endpoints from the database while the
// daemon is down, through the daemon's own handlers.
func offlineBreaker(cfg *config.Config, method, path string, body any) ([]byte, error) {
	ctx := context.Background()
	store, err := openStore(cfg, false)
	if err != nil {
		return nil, err
	}
	d := &daemon{cfg: cfg}
	if store == nil && cfg.Breaker != nil {
		// No database yet: nothing was ever stopped.
		if method == "GET" {
			return json.Marshal(breakerListing{Enabled: true, Action: cfg.Breaker.Action, Tripped: []breakerEntry{}, Watched: []breaker.Figures{}})
		}
		return nil, fmt.Errorf("%s: no stopped sender by that name (facteur breaker list)", strings.Join(body.(breakerResetRequest).Senders, " "))
	}
	if store != nil {
		defer store.Close()
		d.store = store
		if cfg.Breaker != nil {
			d.breaker = newBreakerGuard(ctx, cfg, store, maillog.New(os.Stderr, cfg.LogFormat))
		}
	}
	var rd *strings.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	} else {
		rd = strings.NewReader("")
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(ctx, method, path, rd)
	if method == "GET" {
		d.breakerList(rec, req)
	} else {
		d.breakerReset(rec, req)
	}
	if rec.Code != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(rec.Body.Bytes(), &e)
		return nil, errors.New(e.Error)
	}
	return rec.Body.Bytes(), nil
}

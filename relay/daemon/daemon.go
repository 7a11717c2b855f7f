// Package daemon assembles facteur's daemon from a config.Config and runs
// it (facteur serve): the queue, the SMTP listeners and pickup, the
// scheduler, the admin sockets and routes, the circuit breaker, the pools,
// the cluster link, webhooks and metrics. It also answers the admin
// routes that make sense with the daemon down (queue, providers, breaker)
// from the database, through the same handlers (offline.go), so that the
// CLI calls one function either way.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"facteur/policy"
	"facteur/policy/bounce"
	"facteur/queue"
	"facteur/queue/maildrop"
	"facteur/relay/admin"
	"facteur/relay/bounces"
	"facteur/relay/cleanup"
	"facteur/relay/clock"
	"facteur/relay/cluster"
	"facteur/relay/config"
	"facteur/relay/dashboard"
	"facteur/relay/guard"
	"facteur/relay/inbound"
	"facteur/relay/local"
	"facteur/relay/maillog"
	"facteur/relay/metrics"
	"facteur/relay/pickup"
	"facteur/relay/pool"
	"facteur/relay/resolver"
	"facteur/relay/scheduler"
	"facteur/relay/submission"
	"facteur/relay/suppress"
	"facteur/relay/webhook"
)

// daemon holds the parts of a running facteur.
type daemon struct {
	// clock is the daemon's one clock (clock.Real): every time it decides
	// by, or hands to the engine, the queue and the breaker, is read here.
	clock   clock.Clock
	cfg     *config.Config
	log     *slog.Logger
	store   *queue.Store
	cleanup *cleanup.Cleanup
	smtp    *submission.Server
	admin   *admin.Server
	showq   *admin.Showq
	// adminPeers are who may use the admin socket.
	adminPeers admin.Peers
	pickup     *pickup.Pickup
	sched      *scheduler.Scheduler
	engine     *policy.Engine
	events     *eventRing
	// tally counts outcomes and complaints for the dashboard (issue 18).
	tally *dashboard.Tally
	// dash is the web dashboard, served on the admin TCP listener.
	dash    *dashboard.Dashboard
	metrics *metrics.Metrics
	alarm   atomic.Bool // the queue-depth alarm is raised
	// webhookPending reports the webhook outbox size (0 without webhooks).
	webhookPending func() int
	hooks          []*webhook.Webhook
	// verpSecret keys the VERP tokens; nil when bounces.domain is unset.
	verpSecret []byte
	inbound    []*inbound.Server
	// arrivals remembers the last hour's messages for facteur top.
	arrivals admin.Arrivals
	// breaker is the per-sender circuit breaker; nil when it is off.
	breaker *breakerGuard
	// flushReq asks flushLoop for a whole-queue flush as of the time sent.
	flushReq chan time.Time

	policyMu sync.Mutex // serialises reloads and state saves

	// pools are the outbound IP pools (issue 17); nil without pools.
	pools       *pool.Set
	warmupMu    sync.Mutex // guards warmupSaved, serialises saves
	warmupSaved time.Time
	// cluster is the link to the fleet's Redis (issue 14); nil alone.
	cluster *cluster.Cluster
}

// Run assembles the daemon of cfg and runs it until ctx ends (SIGTERM):
// everything that can refuse the start is checked before anything is
// created, every listener is bound before anything is served, and the
// shutdown lets sessions in DATA finish within shutdown_timeout.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	// The dashboard shows a message's log lines: every line with a queue
	// ID is kept in memory (bounded) as well as written.
	book := dashboard.NewLogBook()
	log = slog.New(book.Handler(log.Handler()))
	// Secrets other users can read are refused before anything starts,
	// as DKIM keys are (issue 11 §9).
	if err := cfg.CheckSecrets(); err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		log.Warn(maillog.ConfigWarning, "warning", w)
	}
	// Everything that can refuse the start is checked before anything is
	// created: a start that fails leaves no data_dir behind.
	pol, err := LoadPolicy(cfg)
	if err != nil {
		return err
	}
	var signer cleanup.Signer
	if len(cfg.DKIM) > 0 {
		s, warnings, err := newSigner(cfg)
		if err != nil {
			return err
		}
		for _, w := range warnings {
			log.Warn(maillog.DKIMWarning, "warning", w)
		}
		signer = s
	}
	res, err := resolver.New(resolver.Options{Server: string(cfg.Resolver), IPVersion: cfg.Delivery.IPVersion})
	if err != nil {
		return fmt.Errorf("resolver: %w", err)
	}
	schedOpts, err := schedulerOptions(cfg)
	if err != nil {
		return err
	}
	vsecret, err := bounces.Secret(cfg)
	if err != nil {
		return err
	}
	// Listening before anything else, the queue's opening included (and
	// once the config and policy are known good: a start that fails on
	// them creates nothing).
	early, err := bindEarly(cfg)
	if err != nil {
		return err
	}
	defer early.closeRest()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	store, err := queue.Open(filepath.Join(cfg.DataDir, "queue.db"), queue.Options{})
	if err != nil {
		return fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
	}
	defer closeStore(store, log)

	dropDir := filepath.Join(cfg.DataDir, "maildrop")
	gid := -1
	if g, err := user.LookupGroup(maildrop.Group); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	}
	if err := maildrop.Init(dropDir, gid); err != nil {
		return err
	}

	d := &daemon{clock: clock.Real{}, cfg: cfg, log: log, store: store, events: newEventRing(1000), tally: dashboard.NewTally(), verpSecret: vsecret, flushReq: make(chan time.Time, 1)}
	if schedOpts.TLSPolicy, err = newTLSPolicy(cfg, res, store, log); err != nil {
		return err
	}

	d.engine = policy.NewEngine(pol)
	if st, err := store.State(ctx, PolicyStateKey); err == nil {
		if err := d.engine.RestoreState(st, d.clock.Now()); err != nil {
			log.Warn(maillog.PolicyStateNotRestored, "err", err)
		}
	}
	if d.pools, err = newPools(ctx, cfg, store, d.engine, d.clock.Now()); err != nil {
		log.Warn(maillog.PolicyStateNotRestored, "err", err)
	}
	schedOpts.Pools = d.pools

	if cfg.Bounces.Domain != "" {
		secret, domain := d.verpSecret, cfg.Bounces.Domain
		schedOpts.ReturnPath = func(id queue.ID, rcpt string) string {
			return bounce.VERPAddress("bounces", domain, bounce.EncodeToken(string(id), rcpt, secret))
		}
	}
	hooks, err := newWebhooks(ctx, cfg, store, log)
	if err != nil {
		return err
	}
	d.hooks = hooks
	d.webhookPending = func() int {
		n := 0
		for _, h := range hooks {
			n += h.Pending()
		}
		return n
	}
	if d.cluster, err = newCluster(cfg, log); err != nil {
		return err
	}
	if d.cluster != nil {
		defer d.cluster.Close()
	}
	d.metrics = d.newMetrics()
	schedOpts.OnProviderEvent = func(evs []policy.Event) {
		// Saved even during shutdown's grace period: the state must
		// survive the restart that follows.
		d.savePolicyState(context.WithoutCancel(ctx))
		for _, e := range evs {
			d.metrics.ProviderEvent(string(e.Kind), e.Provider)
		}
	}
	// Webhook events are written while the scheduler finishes its last
	// transactions at shutdown: their context outlives the daemon's.
	hookCtx := context.WithoutCancel(ctx)
	schedOpts.OnEvent = func(e scheduler.DeliveryEvent) {
		d.events.add(e)
		d.tally.Record(dashboard.Event{Kind: e.Event, ID: e.ID, Sender: e.Sender, User: e.User, Rcpt: e.Rcpt,
			Provider: e.Provider, Class: e.Class, Response: e.Response, At: e.At})
		d.arrivals.Event(e.ID, e.Rcpt, e.Event)
		d.metrics.Recipient(e.Event, e.Provider, e.Class, e.Latency, e.At)
		if e.SourceIP != "" {
			d.metrics.SourceIP(e.Event, e.SourceIP, e.Provider)
			d.saveWarmup(hookCtx, false)
		}
		if e.Event == "delivered" && e.TLS != "" {
			d.metrics.DeliveredTLS(e.TLS)
		}
		for _, h := range hooks {
			ev := webhook.Event{Event: webhook.Kind(e.Event), ID: string(e.ID), Sender: e.Sender, Recipient: e.Rcpt,
				Provider: e.Provider, Class: e.Class, Response: e.Response, Timestamp: e.At}
			if err := h.Add(hookCtx, ev); err != nil {
				log.Error(maillog.WebhookOutbox, "qid", string(e.ID), "err", err)
			}
		}
	}
	if cfg.Breaker != nil {
		d.breaker = newBreakerGuard(ctx, cfg, store, log, d.clock)
		d.breaker.d, d.breaker.hooks = d, hooks
		schedOpts.Breaker = d.breaker
		if d.cluster != nil {
			// Issue 21 §3: a trip or reset at any node holds at every node.
			d.breaker.fleet = d.cluster
			d.cluster.SetBreakerHandler(&cluster.BreakerNode{B: d.breaker.b, OnTrip: d.breaker.imposed, OnReset: d.breaker.resetByFleet})
		}
	}
	cleanOpts := cleanup.Options{
		Hostname:    cfg.Hostname,
		LocalDomain: cfg.LocalDomain,
		Aliases:     loadAliases(cfg, log),
		Senders:     cfg.Senders,
		MaxHops:     cfg.MaxHops,
		Hold:        d.breaker.Hold, // nil-safe: no breaker, no hold
		Notify: func() {
			d.metrics.Received()
			d.sched.Wake()
		},
		Queued: func(env queue.Envelope, subject string, at time.Time) {
			m := queue.Message{ID: env.ID, Sender: env.Sender, Created: at, ClientIP: env.ClientIP, User: env.User}
			st := queue.Queued
			if env.Hold != "" {
				st = queue.Held // the breaker held it at acceptance
			}
			for _, r := range env.Recipients {
				m.Recipients = append(m.Recipients, queue.Recipient{Address: r, Status: st})
			}
			d.arrivals.Add(m, admin.Subject(subject))
		},
	}
	schedOpts.OwnDomains = []string{cfg.LocalDomain}
	if cfg.MailSpool != "" {
		boxes := &local.Mailboxes{Dir: cfg.MailSpool, LockTimeout: 10 * time.Second}
		cleanOpts.LocalUser = boxes.Exists
		schedOpts.Local = boxes
	}
	if cfg.Postmaster == "" {
		// Double bounces go where mail to postmaster goes: its alias, else
		// root's, else root's mailbox.
		if pm := cleanup.New(cleanOpts, nil, nil, log).ExpandRecipient("postmaster"); len(pm) > 0 {
			schedOpts.Postmaster = pm[0]
		}
	}
	if _, ok := cleanOpts.Aliases["root"]; !ok {
		log.Warn(maillog.RootNoAlias, "warning", "cron's and the system's mail to root goes to the local mailbox "+cfg.MailSpool+"/root; set aliases: {root: you@example.com} in the config or root: in "+cfg.AliasesFile)
	}
	shaper := scheduler.EngineShaper{E: d.engine}
	if d.cluster != nil {
		shaper.Fleet = d.cluster
	}
	d.sched = scheduler.New(schedOpts, store, res, shaper, d.clock, log)
	if d.cluster != nil {
		d.wireCluster(ctx)
	}

	d.cleanup = cleanup.New(cleanOpts, store, signer, log)
	// Issue 11: one guard for the SMTP path and pickup, so that the
	// maildrop is no way around a limit.
	abuse := guard.New(guard.Options{
		PerClientIP:        cfg.Limits.PerClientIP.Rate,
		PerClientIPTrusted: cfg.Limits.PerClientIPTrusted,
		PerSender:          cfg.Limits.PerSender.Rate,
		PerUser:            cfg.Limits.PerUser.Rate,
		MaxQueue:           cfg.MaxQueue,
		MinFreeDisk:        cfg.FreeDiskFloor(),
		DataDir:            cfg.DataDir,
		QueueSize: func(ctx context.Context) (int, error) {
			st, err := store.Stats(ctx)
			return st.Messages, err
		},
	})
	// Large messages spill here while they arrive (issue 11 §3).
	spoolDir := filepath.Join(cfg.DataDir, "tmp")
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	// Never a nil *breakerGuard in the interface: no breaker is nil.
	var smtpBreaker submission.Breaker
	if d.breaker != nil {
		smtpBreaker = d.breaker
	}
	d.smtp = submission.New(submission.Options{
		Hostname:            cfg.Hostname,
		MaxMessageSize:      int64(cfg.MaxMessageSize),
		MaxRecipients:       cfg.MaxRecipients,
		Trusted:             prefixes(cfg),
		DropSuppressed:      cfg.Suppression.OnRcpt == "drop",
		Suppressions:        storeSuppressions{store, cfg},
		Guard:               abuse,
		MaxConnections:      cfg.MaxConnections,
		MaxConnectionsPerIP: cfg.MaxConnectionsPerIP,
		MaxAuthFailures:     cfg.MaxAuthFailures,
		SenderLogin:         cfg.SenderLogin,
		SpoolDir:            spoolDir,
		Breaker:             smtpBreaker,
	}, d.cleanup, log)
	token, err := adminToken(cfg)
	if err != nil {
		return err
	}
	sups := &suppress.Service{Store: store, Log: log, Cancel: d.sched.CancelSuppressed, Clock: d.clock}
	bnc := &bounces.Ingester{Config: cfg, Store: store, Policy: d.engine.Policy, Secret: d.verpSecret, Log: log,
		Hooks: hooks, Complaints: d.countComplaints, Suppress: sups.Suppress, Clock: d.clock}
	d.admin = &admin.Server{Store: store, Token: token, Log: log, Flusher: d, Extra: d.routes(sups, bnc), Decorate: d.decorate, Pprof: cfg.AdminPprof, Arrivals: &d.arrivals}
	// root's and the daemon's own mailq never wait for a slot.
	self := os.Getuid()
	d.showq = &admin.Showq{Store: store, Decorate: d.decorate, Unlimited: func(uid int) bool { return uid == 0 || uid == self }}
	if d.adminPeers, err = adminPeers(cfg); err != nil {
		return err
	}
	d.dash = &dashboard.Dashboard{Source: dashSource{d}, Stats: d.tally, Book: book, Token: token, Log: log}
	d.pickup = &pickup.Pickup{Dir: dropDir, Cleanup: d.cleanup, Log: log, Guard: abuse,
		SenderCheck: d.smtp.CheckSenderLogin,
		// The shim could not learn at RCPT time that a recipient is
		// suppressed when the daemon was down: drop it here, with a line.
		Filter: func(ctx context.Context, rcpts []string) (keep []string, dropped []pickup.Dropped) {
			sup := storeSuppressions{store, cfg}
			for _, r := range rcpts {
				for _, x := range d.cleanup.ExpandRecipient(r) {
					if why, ok := sup.Suppressed(ctx, x, d.clock.Now()); ok {
						log.Info(maillog.Suppressed, "rcpt", "<"+x+">", "client", "maildrop", "resp", "dropped: "+why)
						dropped = append(dropped, pickup.Dropped{Rcpt: x, Why: why})
						continue
					}
					keep = append(keep, x)
				}
			}
			return keep, dropped
		},
	}
	if d.breaker != nil {
		// Suppressed recipients count against the sender at acceptance
		// too (issue 21): at RCPT and at pickup.
		d.pickup.Breaker = d.breaker
	}

	// Bind everything before serving anything, so that a port in use fails
	// the start instead of leaving a half-running daemon.
	type smtpListener struct {
		ln net.Listener
		l  submission.Listener
	}
	var smtpLns []smtpListener
	closeAll := func() {
		for _, s := range smtpLns {
			s.ln.Close()
		}
	}
	for _, addr := range cfg.Listen {
		ln, err := early.listen(string(addr))
		if err != nil {
			closeAll()
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		smtpLns = append(smtpLns, smtpListener{ln, submission.Listener{Addr: string(addr)}})
	}
	for i, s := range cfg.Submission {
		l := submission.Listener{Addr: string(s.Listen), ImplicitTLS: s.ImplicitTLS}
		if s.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(s.TLSCert, s.TLSKey)
			if err != nil {
				closeAll()
				return fmt.Errorf("submission[%d]: %w", i, err)
			}
			l.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
		users, err := submission.LoadUsers(s.UsersFile)
		if err != nil {
			closeAll()
			return fmt.Errorf("submission[%d]: %w", i, err)
		}
		l.Users = users
		ln, err := early.listen(string(s.Listen))
		if err != nil {
			closeAll()
			return fmt.Errorf("listen %s: %w", s.Listen, err)
		}
		smtpLns = append(smtpLns, smtpListener{ln, l})
	}
	var inboundLns []net.Listener
	for _, addr := range cfg.Bounces.Listen {
		ln, err := net.Listen("tcp", string(addr))
		if err != nil {
			closeAll()
			return fmt.Errorf("bounces.listen %s: %w", addr, err)
		}
		inboundLns = append(inboundLns, ln)
		d.inbound = append(d.inbound, &inbound.Server{Domain: cfg.Bounces.Domain, Hostname: cfg.Hostname,
			MaxMessageSize: int64(cfg.MaxMessageSize), Handle: bnc.Inbound, Log: log})
	}
	// The admin and showq sockets first: binding the admin socket refuses
	// a live one, which proves no other daemon runs on this data_dir.
	adminSock, showqSock, err := d.bindAdminSockets(gid)
	if err != nil {
		closeAll()
		return err
	}
	// The shim's socket (issue 11 §1): DATA_DIR/public, reachable by the
	// facteur-drop group only, as Postfix's public/ and postdrop.
	// Without it (a data_dir path past the 108 bytes of a socket address,
	// a read-only public/) the shim still submits over loopback TCP, where
	// the kernel's sock_diag names its uid: said, not fatal.
	socketAddr := "-"
	if localLn, err := submission.ListenLocal(filepath.Join(cfg.DataDir, "public"), gid); err != nil {
		log.Error(maillog.LocalSocket, "err", err)
	} else {
		socketAddr = localLn.Addr().String()
		smtpLns = append(smtpLns, smtpListener{localLn, submission.Listener{Addr: socketAddr, Local: true}})
	}

	g, gctx := errgroup.WithContext(ctx)
	for _, s := range smtpLns {
		g.Go(func() error { return d.smtp.Serve(gctx, s.ln, s.l) })
	}
	if adminSock != nil {
		g.Go(func() error { return d.admin.Serve(gctx, adminSock, d.admin.UnixHandler(d.adminPeers)) })
	}
	if showqSock != nil {
		g.Go(func() error { return d.showq.Serve(gctx, showqSock) })
	}
	if cfg.Admin != "" {
		// Bound now when free, so that /metrics answers once "started" is
		// logged; taken, it is retried in the background.
		adminLn, err := net.Listen("tcp", string(cfg.Admin))
		if err != nil {
			log.Error(maillog.AdminListenFailed, append([]any{"admin", string(cfg.Admin), "err", err.Error()}, portHolder(string(cfg.Admin), err)...)...)
			adminLn = nil
		}
		g.Go(func() error { return d.serveAdminTCP(gctx, string(cfg.Admin), adminLn) })
	}
	for i, srv := range d.inbound {
		ln := inboundLns[i]
		g.Go(func() error { return srv.Serve(ln) })
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
			defer cancel()
			srv.Shutdown(sctx)
			return nil
		})
	}
	g.Go(func() error { return d.pickup.Run(gctx) })
	g.Go(func() error { return d.sched.Run(gctx) })
	if d.cluster != nil {
		g.Go(func() error { return d.cluster.Run(gctx) })
	}
	g.Go(func() error { return d.flushLoop(gctx) })
	g.Go(func() error {
		// A queue.db from before the sender index gets it now, in the
		// background (issue 19 §1: nothing that grows with the queue
		// before the listeners); listings walk until it is complete.
		n, err := store.BuildIndexes(gctx)
		switch {
		case err != nil && gctx.Err() == nil:
			log.Error(maillog.QueueIndex, "err", err)
		case n > 0:
			log.Info(maillog.QueueIndexed, "messages", n)
		}
		return nil
	})
	g.Go(func() error { return d.reloadOnHUP(gctx) })
	g.Go(func() error { return d.alarmLoop(gctx) })
	if d.breaker != nil {
		g.Go(func() error { return d.breaker.Run(gctx) })
	}
	for _, h := range hooks {
		g.Go(func() error { return h.Run(gctx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		// SIGTERM: stop accepting, let sessions in DATA finish within
		// shutdown_timeout; what they did not commit was never 250'd.
		sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
		defer cancel()
		err := d.smtp.Shutdown(sctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
		return err
	})
	log.Info(maillog.Started, "listen", fmt.Sprint(cfg.Listen), "socket", socketAddr, "admin", string(cfg.Admin), "admin_socket", cfg.AdminSocketPath(), "data_dir", cfg.DataDir, "pid", os.Getpid())
	err = g.Wait()
	d.saveWarmup(context.WithoutCancel(ctx), true)
	log.Info(maillog.Stopped)
	return err
}

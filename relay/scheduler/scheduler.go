package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/address"
	"facteur/relay/breaker"
	"facteur/relay/clock"
	"facteur/relay/config"
	"facteur/relay/delivery"
	"facteur/relay/maillog"
	"facteur/relay/pool"
	"facteur/relay/resolver"
	"facteur/relay/tlspolicy"
)

// Options configure the scheduler; relay/daemon fills them from the config.
type Options struct {
	Hostname string
	// Window is how many due recipients one fetch takes from the due index
	// (qmgr's active queue); default 2000.
	Window int
	// Workers bounds the connections open at once, all destinations
	// together; default 100.
	Workers int
	// Dial is the outbound SMTP client's configuration (EHLO name, port,
	// source IP, timeouts, TLS).
	Dial delivery.Options
	// Relayhost sends everything to one smarthost "host:port" instead of MX
	// routing; no recipient DNS lookup is made then.
	Relayhost     string
	RelayhostDial delivery.Options
	// Routes are per-domain overrides: "host:port", "hold" or "discard".
	Routes map[string]string
	// RouteTLS pins a domain's TLS level ("none", "may", "encrypt",
	// "verify": a routes entry's tls), instead of MTA-STS and DANE.
	RouteTLS map[string]string
	// TLSPolicy decides MTA-STS and DANE per MX host (issue 15); nil:
	// opportunistic STARTTLS only.
	TLSPolicy *tlspolicy.Policy
	// MaxLifetime is the queue lifetime when the provider sets none.
	MaxLifetime time.Duration
	// HostUnknownTTL is how long a host_unknown suppression lasts.
	HostUnknownTTL time.Duration
	// Postmaster receives double bounces.
	Postmaster string
	// ShutdownTimeout bounds in-flight transactions after ctx is done.
	ShutdownTimeout time.Duration
	// ConnectionCache keeps a connection whose lane emptied open this long
	// for the lane's next item (delivery.connection_cache_time); 0 closes
	// it at once.
	ConnectionCache time.Duration
	// Suppress is called for a recipient the policy says to suppress;
	// nil: store it in the queue's suppression list directly.
	Suppress func(ctx context.Context, s queue.Suppression) error
	// ReturnPath, when set, gives the envelope sender used on the wire for
	// one recipient of a message with a non-null sender (VERP, issue 7 §2);
	// each such transaction then carries one recipient.
	ReturnPath func(id queue.ID, rcpt string) string
	// OnEvent is called for every delivery event (webhooks, metrics); may be nil.
	OnEvent func(e DeliveryEvent)
	// OnProviderEvent is called after provider state changes (the daemon
	// saves the policy state then); may be nil.
	OnProviderEvent func(evs []policy.Event)
	// Local delivers mail for the host's own users (NAME@Hostname and
	// NAME@localhost) to their mailbox; nil: such mail goes out like any.
	Local LocalDeliverer
	// OwnDomains are this host's domains (hostname, local_domain): an
	// address there is never suppressed, whatever its bounce says, so
	// that root's and postmaster's mail is never cut off (issue 13 §5).
	OwnDomains []string

	// DeadCohort is how many connection failures in a row, none
	// succeeding, mark a destination dead (dead.go); default 1, as
	// Postfix's default_destination_concurrency_failed_cohort_limit.
	DeadCohort int
	// DeadBackoff is how long a destination stays dead before one probe
	// (default 5 min); each failed probe doubles it up to DeadMaxBackoff
	// (default 1 h).
	DeadBackoff    time.Duration
	DeadMaxBackoff time.Duration

	// Breaker is the per-sender circuit breaker (issue 21); nil: none.
	Breaker Breaker

	// Pools are the outbound IP pools (issue 17); nil: every connection
	// leaves from Dial.SourceIP (delivery.source_ip, or the default).
	Pools *pool.Set
}

// Breaker is the per-sender circuit breaker as the scheduler sees it: it
// is told every recipient outcome once recorded, and asked before a
// message goes out whether its sender is stopped. Both are called from the
// delivery workers, concurrently.
type Breaker interface {
	Observe(msg queue.Message, o breaker.Outcome)
	// Stopped returns the key ("user=www-data") that stops msg's sender.
	Stopped(msg queue.Message) (key string, ok bool)
}

// LocalDeliverer appends a message to a local user's mailbox (relay/local).
// Deliver is called from the scheduler's goroutine, one message at a time;
// an error wrapping local.ErrNoUser is permanent, any other temporary.
type LocalDeliverer interface {
	Deliver(name, sender, rcpt string, msg []byte, at time.Time) error
}

// DeliveryEvent is one recipient outcome, for webhooks and metrics.
type DeliveryEvent struct {
	Event  string // delivered, deferred, bounced, expired, suppressed
	ID     queue.ID
	Sender string
	// User is the local account that submitted the message ("" unknown),
	// for the dashboard's senders page (issue 18).
	User     string
	Rcpt     string
	Provider string
	Class    string
	Response string
	At       time.Time
	Latency  time.Duration
	// TLS is what protected the session of a delivery: dane, mta-sts,
	// verify, encrypt, opportunistic or none (delivery.Prot*); "" when no
	// session was made.
	TLS string
	// SourceIP is the outbound address the attempt left from ("" the
	// default address, or none made).
	SourceIP string
}

// Scheduler moves due recipients from the queue to delivery connections.
type Scheduler struct {
	opts   Options
	store  *queue.Store
	res    *resolver.Resolver
	shaper EngineShaper
	clock  clock.Clock
	log    *slog.Logger
	dsn    *dsnMaker

	wake chan struct{}

	mu       sync.Mutex // guards inflight, lanes, workers and dead
	inflight map[rkey]struct{}
	lanes    map[string]*lane
	workers  int
	dead     map[string]*deadDest // by destKey
	srcConns map[srcProv]int      // open connections per (pool IP, provider)

	wg      sync.WaitGroup
	sendCtx context.Context // cancelled ShutdownTimeout after Run's ctx
}

type rkey struct {
	id   queue.ID
	rcpt string
}

// lane is the work waiting for one destination (a domain, a route or the
// relayhost, and the provider that shapes it).
type lane struct {
	key       string
	domain    string
	pool      string // the pool its mail leaves from; "" the default address
	provider  string // known once resolved
	route     []target
	resolved  time.Time // when route was filled; routes are re-resolved per worker start
	pending   []*item
	workers   int
	notBefore time.Time // connection limit: no worker before this
	limitWait bool      // notBefore comes from a connection limit, lifted when a connection ends
	probe     bool      // its worker is the probe of a dead destination
	// connected: a connection of this lane was made. Until then the lane
	// has one worker (a slow start, as Postfix's destination concurrency
	// window): a destination that does not answer gets one failed attempt,
	// not one per connection the provider's limit would allow.
	connected bool
	// more is closed when items are added to pending, waking the workers
	// that hold an idle connection for the lane (connection cache); nil
	// when none waits.
	more chan struct{}
}

// target is one host to try, in order.
type target struct {
	host string
	ip   netip.Addr
	opts delivery.Options
	// refused: the TLS policy forbids this host; it is not dialled.
	refused *tlspolicy.Refusal
}

// item is the recipients of one message that go in one transaction.
type item struct {
	msg   queue.Message
	rcpts []string
	// src is the pool IP of the connection it went on; nil the default.
	src *pool.IP
}

// New returns a scheduler; Run starts it.
func New(opts Options, store *queue.Store, res *resolver.Resolver, shaper EngineShaper, clk clock.Clock, log *slog.Logger) *Scheduler {
	if opts.Window <= 0 {
		opts.Window = 2000
	}
	// The config keys' defaults are written once, in config.Default.
	def := config.Default()
	if opts.Workers <= 0 {
		opts.Workers = def.Delivery.Workers
	}
	if opts.MaxLifetime <= 0 {
		opts.MaxLifetime = time.Duration(def.Delivery.MaxLifetime)
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = time.Duration(def.ShutdownTimeout)
	}
	if opts.DeadCohort <= 0 {
		opts.DeadCohort = defaultDeadCohort
	}
	if opts.DeadBackoff <= 0 {
		opts.DeadBackoff = defaultDeadBackoff
	}
	if opts.DeadMaxBackoff < opts.DeadBackoff {
		opts.DeadMaxBackoff = max(defaultDeadMaxBackoff, opts.DeadBackoff)
	}
	if clk == nil {
		clk = clock.Real{}
	}
	s := &Scheduler{
		opts: opts, store: store, res: res, shaper: shaper, clock: clk, log: log,
		wake:     make(chan struct{}, 1),
		inflight: map[rkey]struct{}{},
		lanes:    map[string]*lane{},
		dead:     map[string]*deadDest{},
		srcConns: map[srcProv]int{},
	}
	s.dsn = &dsnMaker{s: s}
	return s
}

// Wake makes the scheduler look at the queue now (a message was queued or
// flushed). It never blocks.
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run schedules until ctx is done, then gives in-flight transactions
// ShutdownTimeout to finish and returns when every worker has exited.
// Whatever was not acknowledged stays queued and due.
func (s *Scheduler) Run(ctx context.Context) error {
	sendCtx, cancelSends := context.WithCancel(context.Background())
	s.sendCtx = sendCtx
	// Once ctx is done, in-flight transactions get ShutdownTimeout on the
	// clock, then their connections are cancelled.
	graceDone := make(chan struct{})
	stopGrace := context.AfterFunc(ctx, func() {
		defer close(graceDone)
		select {
		case <-s.clock.After(s.opts.ShutdownTimeout):
			cancelSends()
		case <-sendCtx.Done():
		}
	})
	defer func() {
		cancelSends()
		if !stopGrace() {
			<-graceDone
		}
	}()
	var last time.Time
	for {
		// Wakes come per enqueue and per finished connection; a cycle
		// rescans the in-flight head of the due index, so under load they
		// are coalesced to one per minCycle of the clock. This paces the
		// CPU and decides nothing. A clock that reads the same time as at
		// the last cycle (a test's fake clock, which stands still between
		// Advances) has no time to pace by: the cycle runs at once; the
		// real clock always moves.
		if now := s.clock.Now(); now.After(last) {
			if wait := minCycle - now.Sub(last); wait > 0 {
				select {
				case <-s.clock.After(wait):
				case <-ctx.Done():
				}
			}
		}
		if ctx.Err() != nil {
			s.wg.Wait()
			return nil
		}
		last = s.clock.Now()
		next := s.cycle(ctx)
		select {
		case <-ctx.Done():
			s.wg.Wait()
			return nil
		case <-s.wake:
		case <-s.clock.At(next):
		}
	}
}

// cycle fetches due work, starts workers, and says when to look again:
// the next due time, a lane's wait, or a minute at the most.
func (s *Scheduler) cycle(ctx context.Context) time.Time {
	now := s.clock.Now()
	if err := s.fill(ctx, now); err != nil {
		s.log.Error(maillog.ReadDue, "err", err)
		return now.Add(time.Second)
	}
	s.deferDead(ctx, now)
	next := s.startWorkers(ctx, now)
	if t, ok, err := s.store.NextDue(ctx); err == nil && ok && (next.IsZero() || t.Before(next)) {
		next = t
	}
	// The earliest due entry may be one in flight: never spin on it.
	if min := now.Add(time.Millisecond); next.Before(min) {
		next = min
	}
	if limit := now.Add(time.Minute); next.IsZero() || next.After(limit) {
		next = limit
	}
	return next
}

// stillDue keeps the recipients of rcpts that msg, read after the due
// index, still has due at now. Due reads a snapshot: a recipient whose
// attempt was recorded (and which left the in-flight set) after that
// snapshot began looks due there, but not in msg, and must not be tried
// again at once.
func stillDue(msg queue.Message, rcpts []string, now time.Time) []string {
	var out []string
	for _, r := range msg.Recipients {
		if (r.Status == queue.Queued || r.Status == queue.Deferred) && !r.NextAttempt.After(now) && slices.Contains(rcpts, r.Address) {
			out = append(out, r.Address)
		}
	}
	return out
}

// fill moves due recipients into lanes, grouped by message and destination.
func (s *Scheduler) fill(ctx context.Context, now time.Time) error {
	s.mu.Lock()
	room := s.opts.Window - len(s.inflight)
	s.mu.Unlock()
	if room <= 0 {
		return nil
	}
	dues, err := s.store.Due(ctx, now, room, func(id queue.ID, rcpt string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, busy := s.inflight[rkey{id, rcpt}]
		return busy
	})
	if err != nil || len(dues) == 0 {
		return err
	}
	// One message meta read per message, whatever its number of recipients.
	// The due entries are grouped by message, messages in the order of
	// their first entry, into one slice: no slice per message.
	idx := make(map[queue.ID]int, len(dues))
	order := make([]queue.ID, 0, len(dues))
	next := make([]int, 0, len(dues)) // per message: its count, then where its next entry goes
	for _, d := range dues {
		i, ok := idx[d.ID]
		if !ok {
			i = len(order)
			idx[d.ID] = i
			order = append(order, d.ID)
			next = append(next, 0)
		}
		next[i]++
	}
	first := make([]int, len(order)+1) // message i's entries are rcpts[first[i]:first[i+1]]
	for i, n := range next {
		first[i+1] = first[i] + n
		next[i] = first[i]
	}
	rcpts := make([]string, len(dues))
	for _, d := range dues {
		i := idx[d.ID]
		rcpts[next[i]] = d.Rcpt
		next[i]++
	}
	// One read transaction for the window; a message deleted meanwhile is
	// left out.
	msgs, err := s.store.GetMany(ctx, order)
	if err != nil {
		return err
	}
	for _, msg := range msgs {
		i, ok := idx[msg.ID]
		if !ok {
			continue // not asked for: never another message's recipients
		}
		due := stillDue(msg, rcpts[first[i]:first[i+1]], now)
		if len(due) == 0 {
			continue
		}
		// Most messages have one destination: then the recipients go as
		// one group, without a map to sort them.
		k := s.laneKey(msg, due[0])
		one := true
		for _, r := range due[1:] {
			if s.laneKey(msg, r) != k {
				one = false
				break
			}
		}
		if one {
			s.enlane(ctx, msg, k, due, now)
			continue
		}
		groups := map[string][]string{}
		var keys []string
		for _, r := range due {
			k := s.laneKey(msg, r)
			if _, ok := groups[k]; !ok {
				keys = append(keys, k)
			}
			groups[k] = append(groups[k], r)
		}
		for _, k := range keys {
			s.enlane(ctx, msg, k, groups[k], now)
		}
	}
	return nil
}

// enlane puts the recipients rcpts of msg, all of lane k, in flight: to
// local delivery, to a hold or discard route, or into lane k.
func (s *Scheduler) enlane(ctx context.Context, msg queue.Message, k string, rcpts []string, now time.Time) {
	id := msg.ID
	if s.isLocal(address.Domain(rcpts[0])) {
		// Off the scheduling goroutine: a MUA may hold the mailbox
		// lock for a while.
		s.mu.Lock()
		for _, r := range rcpts {
			s.inflight[rkey{id, r}] = struct{}{}
		}
		s.mu.Unlock()
		s.wg.Add(1)
		go func(msg queue.Message, rcpts []string) {
			defer s.wg.Done()
			defer s.Wake()
			s.deliverLocal(context.WithoutCancel(ctx), msg, rcpts, now)
		}(msg, rcpts)
		return
	}
	if route, ok := s.route(address.Domain(rcpts[0])); ok && (route == "hold" || route == "discard") {
		s.applyRoute(ctx, msg, rcpts, route, now)
		return
	}
	s.mu.Lock()
	for _, r := range rcpts {
		s.inflight[rkey{id, r}] = struct{}{}
	}
	l := s.lanes[k]
	if l == nil {
		l = &lane{key: k, domain: address.Domain(rcpts[0]), pool: s.opts.Pools.For(msg.Sender, msg.User)}
		s.lanes[k] = l
	}
	l.pending = append(l.pending, &item{msg: msg, rcpts: rcpts})
	if l.more != nil {
		close(l.more)
		l.more = nil
	}
	s.mu.Unlock()
}

// startWorkers starts connections for lanes that have work and room, and
// returns the earliest time a lane waiting on a limit may start one.
func (s *Scheduler) startWorkers(ctx context.Context, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	for k, l := range s.lanes {
		if len(l.pending) == 0 && l.workers == 0 {
			delete(s.lanes, k)
			continue
		}
		if l.notBefore.After(now) {
			if next.IsZero() || l.notBefore.Before(next) {
				next = l.notBefore
			}
			continue
		}
		want := 1
		if l.provider != "" {
			lim := s.shaper.E.Policy().Provider(l.provider).Knobs.Connections
			if p := s.opts.Pools.Pool(l.pool); p != nil {
				lim *= len(p.IPs) // the limit is per source IP
			}
			want = len(l.pending)
			if lim > 0 && want > lim {
				want = lim
			}
		}
		if !l.connected {
			want = 1
		}
		if d := s.deadLocked(s.destKey(l.domain)); d != nil {
			// Dead: its items are deferred by deferDead until the
			// period is over, then one worker probes.
			if now.Before(d.until) || d.probing || len(l.pending) == 0 {
				continue
			}
			if l.workers == 0 && s.workers < s.opts.Workers && ctx.Err() == nil {
				d.probing, l.probe = true, true
				l.workers++
				s.workers++
				s.wg.Add(1)
				go s.worker(ctx, l)
			}
			continue
		}
		for l.workers < want && s.workers < s.opts.Workers && ctx.Err() == nil {
			l.workers++
			s.workers++
			s.wg.Add(1)
			go s.worker(ctx, l)
		}
	}
	return next
}

// pop takes the next item of l, split to the provider's recipients per
// message; nil when l is empty.
func (s *Scheduler) pop(l *lane, maxRcpts int) *item {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(l.pending) == 0 {
		return nil
	}
	it := l.pending[0]
	if maxRcpts > 0 && len(it.rcpts) > maxRcpts {
		rest := &item{msg: it.msg, rcpts: it.rcpts[maxRcpts:]}
		it = &item{msg: it.msg, rcpts: it.rcpts[:maxRcpts]}
		l.pending[0] = rest
		return it
	}
	l.pending = l.pending[1:]
	return it
}

func (s *Scheduler) empty(l *lane) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(l.pending) == 0
}

// drain takes every pending item of l.
func (s *Scheduler) drain(l *lane) []*item {
	s.mu.Lock()
	defer s.mu.Unlock()
	items := l.pending
	l.pending = nil
	return items
}

// done forgets the in-flight recipients of it.
func (s *Scheduler) done(it *item) {
	s.mu.Lock()
	for _, r := range it.rcpts {
		delete(s.inflight, rkey{it.msg.ID, r})
	}
	s.mu.Unlock()
}

// abandon gives pending items back to the queue untouched (shutdown): their
// due entries were never moved.
func (s *Scheduler) abandon(l *lane) {
	for _, it := range s.drain(l) {
		s.done(it)
	}
}

func (s *Scheduler) workerExit(l *lane) {
	s.mu.Lock()
	l.workers--
	s.workers--
	if l.probe {
		// A probe that ended without connecting (a suspension, a rate
		// limit, shutdown) leaves the next cycle to start another.
		l.probe = false
		if d := s.dead[s.destKey(l.domain)]; d != nil {
			d.probing = false
		}
	}
	// A connection slot of this provider is free again.
	for _, o := range s.lanes {
		if o.limitWait && o.provider == l.provider {
			o.notBefore, o.limitWait = time.Time{}, false
		}
	}
	s.mu.Unlock()
	s.wg.Done()
	s.Wake()
}

// minCycle is the least time between two scheduling cycles, on a clock
// that moves.
const minCycle = 5 * time.Millisecond

// maxInlineWait is the longest a worker waits for its provider's rate
// with a connection open: beyond it the connection would idle past the
// remote's timeout, so the item goes back to the lane and the lane waits.
const maxInlineWait = 2 * time.Second

// worker delivers a lane's items over successive connections until the lane
// is empty, a limit stops it, or ctx is done. Store writes use wctx, which
// shutdown does not cancel: an outcome the remote gave is always recorded.
func (s *Scheduler) worker(ctx context.Context, l *lane) {
	defer s.workerExit(l)
	wctx := context.WithoutCancel(ctx)
	if ctx.Err() != nil {
		s.abandon(l)
		return
	}
	targets, provider, err := s.resolve(ctx, l)
	if err != nil {
		if ctx.Err() != nil {
			s.abandon(l)
			return
		}
		if resolver.Temporary(err) {
			// The relayhost, the route or the MX set cannot be looked up:
			// as good as a refused connection for the lanes behind it.
			s.connFailed(s.destKey(l.domain), err.Error(), s.clock.Now())
		}
		s.routeFailed(wctx, l, provider, err)
		return
	}
	for ctx.Err() == nil {
		if s.empty(l) {
			return
		}
		now := s.clock.Now()
		if until, why := s.shaper.E.SuspendedUntilFrom("", provider, l.domain, now); !until.IsZero() {
			s.suspendLane(wctx, l, provider, until, "provider suspended: "+why)
			return
		}
		src, a := s.acquireSource(l, provider, now)
		if !a.OK {
			if a.Suspended {
				s.suspendLane(wctx, l, provider, a.Until, a.Why)
				return
			}
			until := a.Until
			// The connection limit: another worker of this provider will
			// take the work; try again when a connection closes.
			if !until.After(now) {
				until = now.Add(time.Second)
			}
			s.mu.Lock()
			if l.workers <= 1 {
				l.notBefore, l.limitWait = until, true
			}
			// A connection held idle by another lane of the provider
			// (connection cache) gives its slot up now.
			s.wakeIdleLocked(l, provider)
			s.mu.Unlock()
			return
		}
		more := s.connection(ctx, wctx, l, provider, targets, src)
		a.Release()
		if !more {
			return
		}
	}
	s.abandon(l)
}

// unpop puts an item back at the head of its lane, untouched.
func (s *Scheduler) unpop(l *lane, it *item) {
	s.mu.Lock()
	l.pending = append([]*item{it}, l.pending...)
	s.mu.Unlock()
}

// rateStop says why takeRate did not give a token.
type rateStop int

const (
	rateOK       rateStop = iota
	rateLater             // the next token is far: the lane waits (notBefore)
	rateShutdown          // ctx ended
)

// takeRate takes one message from the provider's rate, waiting in place
// for at most maxInlineWait.
func (s *Scheduler) takeRate(ctx context.Context, l *lane, provider string, src *pool.IP) rateStop {
	for {
		now := s.clock.Now()
		a := s.shaper.Allow(srcKeyOf(src), provider, l.domain, now)
		if a.OK {
			return rateOK
		}
		at := a.Until
		if at.Sub(now) > maxInlineWait {
			s.mu.Lock()
			if at.After(l.notBefore) {
				l.notBefore, l.limitWait = at, false
			}
			s.mu.Unlock()
			return rateLater
		}
		select {
		case <-s.clock.At(at):
		case <-ctx.Done():
			return rateShutdown
		}
	}
}

// connection opens one connection for l and sends items over it. It
// returns whether the worker should open another.
func (s *Scheduler) connection(ctx, wctx context.Context, l *lane, provider string, targets []target, src *pool.IP) bool {
	lim := s.shaper.E.Limits(provider)
	targets = s.bindTargets(targets, src)
	if s.opts.ReturnPath != nil {
		lim.RecipientsPerMessage = 1 // one VERP return path per recipient
	}
	// stop gives an item back (or forgets it at shutdown, leaving it due).
	stop := func(it *item, why rateStop) bool {
		if why == rateShutdown {
			s.done(it)
			s.abandon(l)
			return false
		}
		s.unpop(l, it)
		return false
	}
	// admit gives it this connection's IP and takes a token of the rate and
	// of the IP's warm-up, for the first message and for each next one
	// alike. Refused, it gives the item back and says, in more, whether the
	// worker should open another connection.
	admit := func(it *item) (ok, more bool) {
		it.src = src
		if why := s.takeRate(ctx, l, provider, src); why != rateOK {
			return false, stop(it, why)
		}
		if !s.takeWarmup(src, provider) {
			// Today's warm-up cap of this IP is reached: the next connection
			// picks another IP, or the lane waits for tomorrow.
			s.unpop(l, it)
			return false, true
		}
		return true, false
	}
	it := s.popFree(wctx, l, provider, lim.RecipientsPerMessage)
	if it == nil {
		return false
	}
	// The rate is asked before dialling, so that a throttled provider's
	// connection never idles waiting for a token.
	if ok, more := admit(it); !ok {
		return more
	}
	conn, dialErr := s.dial(ctx, targets)
	if conn == nil {
		if ctx.Err() != nil {
			return stop(it, rateShutdown)
		}
		// Nothing answered, or the server refused to talk (then the policy
		// judges its reply). A destination that does not answer is marked
		// dead after a cohort of failures (dead.go): the rest of its work
		// is deferred in bulk, without a connection each.
		// Otherwise, with no other connection of this lane up, the lane's
		// items all take this failure; with one up, only this item does:
		// the others are being delivered.
		// A TLS policy refusal (issue 15) is no dead destination either:
		// each recipient must keep saying, with 4.7.5, which policy holds it.
		var se *smtp.SMTPError
		var ref *tlspolicy.Refusal
		dead := !errors.As(dialErr, &se) && !errors.As(dialErr, &ref) && s.connFailed(s.destKey(l.domain), dialErr.Error(), s.clock.Now())
		items := []*item{it}
		s.mu.Lock()
		alone := l.workers <= 1
		s.mu.Unlock()
		if alone && !dead {
			items = append(items, s.drain(l)...)
		}
		for _, x := range items {
			x.src = src
			s.failItem(wctx, x, provider, l.domain, dialErr, nil)
		}
		return false
	}
	s.connOK(s.destKey(l.domain))
	s.mu.Lock()
	first := !l.connected
	l.connected = true
	s.mu.Unlock()
	if first {
		s.Wake() // the lane may open its other connections now
	}
	defer conn.Close()
	for {
		if !s.expire(wctx, it, provider, s.clock.Now()) {
			if !s.send(ctx, wctx, it, provider, l.domain, conn) {
				s.abandon(l) // shutdown
				return false
			}
			if !conn.Usable() {
				return true
			}
			if lim.MessagesPerConnection > 0 && conn.Messages() >= lim.MessagesPerConnection {
				return true
			}
			if until, _ := s.shaper.E.SuspendedUntilFrom(srcKeyOf(src), provider, l.domain, s.clock.Now()); !until.IsZero() || ctx.Err() != nil {
				return true
			}
		}
		idled := false
		if it = s.popFree(wctx, l, provider, lim.RecipientsPerMessage); it == nil {
			start := s.clock.Now()
			if it = s.awaitMore(ctx, wctx, l, provider, lim.RecipientsPerMessage); it == nil {
				return false
			}
			idled = s.clock.Now().Sub(start) >= probeAfterIdle
		}
		if ok, more := admit(it); !ok {
			return more
		}
		reset := conn.Reset
		if idled {
			// The server may have closed the connection while it sat in the
			// cache: an RSET finds out before the message is tried on it, as
			// Postfix does when it takes a connection from its cache.
			reset = conn.Probe
		}
		if err := reset(); err != nil {
			s.unpop(l, it) // the next item goes on a new connection
			return true
		}
	}
}

// probeAfterIdle is how long a cached connection may sit idle before it is
// checked with an RSET before its next message.
const probeAfterIdle = 200 * time.Millisecond

// awaitMore holds an idle connection of l open for ConnectionCache, for an
// item the next cycle may add: under a steady trickle of mail (a web server
// sending one message per page) each message would otherwise cost a
// connection, greeting, EHLO and QUIT. It gives up early when another lane
// of the provider waits for a connection slot, which the idle connection
// holds. nil when nothing came.
func (s *Scheduler) awaitMore(ctx, wctx context.Context, l *lane, provider string, maxRcpts int) *item {
	hold := s.opts.ConnectionCache
	if hold <= 0 {
		return nil
	}
	deadline := s.clock.Now().Add(hold)
	for ctx.Err() == nil {
		s.mu.Lock()
		if s.slotWantedLocked(l, provider) {
			s.mu.Unlock()
			return nil
		}
		if len(l.pending) == 0 {
			if l.more == nil {
				l.more = make(chan struct{})
			}
			more := l.more
			s.mu.Unlock()
			select {
			case <-more:
			case <-ctx.Done():
				return nil
			case <-s.clock.At(deadline):
				return nil
			}
		} else {
			s.mu.Unlock()
		}
		if it := s.popFree(wctx, l, provider, maxRcpts); it != nil {
			return it
		}
		if !s.clock.Now().Before(deadline) {
			return nil
		}
	}
	return nil
}

// wakeIdleLocked wakes the workers holding an idle connection for another
// lane of provider, so that they see a lane waiting for a slot. s.mu is held.
func (s *Scheduler) wakeIdleLocked(l *lane, provider string) {
	for _, o := range s.lanes {
		if o != l && o.more != nil && o.provider == provider {
			close(o.more)
			o.more = nil
		}
	}
}

// slotWantedLocked says whether another lane of provider waits for a
// connection slot. s.mu is held.
func (s *Scheduler) slotWantedLocked(l *lane, provider string) bool {
	for _, o := range s.lanes {
		if o != l && o.limitWait && o.provider == provider {
			return true
		}
	}
	return false
}

// popFree pops the next item of l whose sender domain is not held at the
// provider; each held one waits, untried, for the end of its hold (a reply
// about the sender domain holds that domain's mail only, issue 14 §2).
func (s *Scheduler) popFree(ctx context.Context, l *lane, provider string, maxRcpts int) *item {
	for {
		it := s.pop(l, maxRcpts)
		if it == nil {
			return nil
		}
		until, why := s.shaper.E.SenderHeld(it.senderDomain(), provider, l.domain, s.clock.Now())
		held := !until.IsZero()
		if !held {
			return it
		}
		s.holdItem(ctx, it, provider, until, "sender domain "+it.senderDomain()+" suspended: "+why)
	}
}

// send runs one transaction and records its outcome; false when shutdown
// cut it (then nothing is recorded: the attempt counts as none).
func (s *Scheduler) send(ctx, wctx context.Context, it *item, provider, domain string, conn *delivery.Conn) bool {
	if s.stopped(wctx, it) {
		return true
	}
	body, err := s.store.Body(wctx, it.msg.ID)
	if err != nil {
		// Without its body the message cannot go; defer it on its
		// schedule rather than refetch it at once, and say why.
		s.log.Error(maillog.ReadBody, "qid", string(it.msg.ID), "err", err)
		s.settle(wctx, it, provider, domain, nil, policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "local error: message body unreadable: " + err.Error(), Local: true}, s.clock.Now())
		return true
	}
	start := s.clock.Now()
	from := it.msg.Sender
	if s.opts.ReturnPath != nil && from != "" {
		from = s.opts.ReturnPath(it.msg.ID, it.rcpts[0])
	}
	res, err := conn.Send(s.sendCtx, delivery.Message{
		From: from, Rcpts: it.rcpts, Body: body,
		SMTPUTF8: it.msg.SMTPUTF8, EightBit: it.msg.EightBit,
	})
	if err != nil && ctx.Err() != nil {
		// Shutdown cut the transaction: it is not the remote's failure
		// and counts as no attempt. Nothing was acknowledged (a delivery
		// needs the final reply), so the recipients stay due as they were
		// and the restart resumes them at once.
		s.done(it)
		return false
	}
	s.record(wctx, it, provider, domain, conn, res, err, start)
	return true
}

// dial tries each target in order; on failure it returns the last error
// (an *smtp.SMTPError inside when the server refused the greeting), or,
// when the TLS policy refused a host or a session, that refusal (a
// *tlspolicy.Refusal): the recipients are deferred with 4.7.5 for it.
func (s *Scheduler) dial(ctx context.Context, targets []target) (*delivery.Conn, error) {
	var last error
	var refused *tlspolicy.Refusal
	for _, t := range targets {
		if t.refused != nil {
			refused = t.refused
			continue
		}
		c, err := delivery.Dial(ctx, t.host, t.ip, t.opts)
		if err == nil {
			if fb := c.TLSFallback(); fb != nil {
				s.log.Info(maillog.TLSFallback, "mx", t.host, "ip", t.ip.String(), "err", fb.Error())
			}
			return c, nil
		}
		last = err
		if sec := t.opts.Security; sec != nil && required(sec.Mode) && delivery.PolicyFailure(err) {
			// Never retried in plaintext: the policy says this host
			// must authenticate (or at least encrypt), and it did not.
			refused = &tlspolicy.Refusal{Mode: sec.Mode, Host: t.host, IP: t.ip, Err: err}
		}
		if ctx.Err() != nil {
			break
		}
	}
	if refused != nil && ctx.Err() == nil {
		return nil, refused
	}
	if last == nil {
		last = errors.New("no host to connect to")
	}
	return nil, last
}

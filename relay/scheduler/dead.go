package scheduler

import (
	"context"
	"sort"
	"sync"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/maillog"
)

// Dead destinations (Postfix qmgr's dead-site logic, SCHEDULER_README
// "dead destination detection"): once connections to a destination fail
// with none succeeding, the destination is marked dead for a back-off
// period. Its due recipients are then deferred in bulk as they come due,
// without a connection each, and when the period ends one probe
// connection decides: success revives it, failure marks it dead again for
// twice the period (up to DeadMaxBackoff). A relay holding a million
// messages for a relayhost that is down thus makes a connection attempt
// per period, not per message.
//
// A destination is what a connection goes to: the relayhost, a route's
// host, or a recipient domain's MX set. Provider suspensions are the
// policy's business and already work this way (suspendLane); this is the
// transport's view, for failures no reply explains.

// Defaults of the dead-destination knobs; Postfix's minimal_backoff_time is
// 300 s and its maximal_backoff_time 4000 s.
const (
	defaultDeadCohort     = 1
	defaultDeadBackoff    = 5 * time.Minute
	defaultDeadMaxBackoff = time.Hour
	// deadWriters bounds the concurrent Record calls of a bulk deferral:
	// the store's group commit then puts them in a few commits.
	deadWriters = 32
)

// deadDest is the connection history of one destination; Scheduler.mu
// guards it.
type deadDest struct {
	fails   int           // connection failures since the last success
	until   time.Time     // dead until then; zero when alive
	backoff time.Duration // the period of the last marking
	probing bool          // a probe's worker is running
	reason  string        // the last failure, for the deferred recipients
}

// destKey names where a lane's connections go. Only the relayhost and
// routes are known before resolving; otherwise the domain stands for its
// MX set.
func (s *Scheduler) destKey(domain string) string {
	if route, ok := s.opts.Routes[domain]; ok {
		return "route " + route
	}
	if s.opts.Relayhost != "" {
		return "relayhost " + s.opts.Relayhost
	}
	return "domain " + domain
}

// deadLocked returns the dead entry of key if the destination is dead at
// now, or whose period is over but not yet probed. Callers hold s.mu.
func (s *Scheduler) deadLocked(key string) *deadDest {
	d := s.dead[key]
	if d == nil || d.until.IsZero() {
		return nil
	}
	return d
}

// connFailed notes a failed connection (or a failed lookup of the
// relayhost or route) to key and marks it dead after a cohort of them.
// It returns whether the destination is now dead.
func (s *Scheduler) connFailed(key, reason string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dead[key]
	if d == nil {
		d = &deadDest{}
		s.dead[key] = d
	}
	d.fails++
	d.reason = reason
	wasProbe := d.probing
	d.probing = false
	if d.fails < s.opts.DeadCohort && !wasProbe {
		return false
	}
	switch {
	case d.backoff == 0:
		d.backoff = s.opts.DeadBackoff
	case wasProbe:
		// The probe failed: wait longer before the next one.
		d.backoff = min(2*d.backoff, s.opts.DeadMaxBackoff)
	}
	marked := d.until.IsZero()
	d.until = now.Add(d.backoff)
	if marked || wasProbe {
		s.log.Info(maillog.DestinationDead, "dest", key, "until", d.until, "fails", d.fails, "resp", reason)
	}
	return true
}

// connOK notes a connection that was made: the destination is alive.
func (s *Scheduler) connOK(key string) {
	s.mu.Lock()
	d := s.dead[key]
	if d == nil {
		s.mu.Unlock()
		return
	}
	revived := !d.until.IsZero()
	delete(s.dead, key)
	s.mu.Unlock()
	if revived {
		s.log.Info(maillog.DestinationAlive, "dest", key)
		// The lanes that waited for this probe may start now.
		s.Wake()
	}
}

// Revive forgets every dead destination, so that the next cycle connects
// at once: `queue flush` does it, as Postfix's flush revives dead
// destinations and transports.
func (s *Scheduler) Revive() {
	s.mu.Lock()
	for k, d := range s.dead {
		if !d.probing {
			delete(s.dead, k)
		}
	}
	s.mu.Unlock()
	s.Wake()
}

// DeadDest is a destination marked dead, for `facteur status`.
type DeadDest struct {
	Dest   string    `json:"dest"`  // "relayhost HOST:PORT", "route HOST:PORT" or "domain D"
	Until  time.Time `json:"until"` // its next probe
	Reason string    `json:"reason"`
}

// Dead lists the destinations marked dead, sorted by name.
func (s *Scheduler) Dead() []DeadDest {
	s.mu.Lock()
	out := []DeadDest{}
	for k, d := range s.dead {
		if !d.until.IsZero() {
			out = append(out, DeadDest{Dest: k, Until: d.until, Reason: d.reason})
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Dest < out[j].Dest })
	return out
}

// deadItem is an item to defer because its destination is dead.
type deadItem struct {
	it       *item
	provider string
	domain   string
	until    time.Time
	reason   string
}

// takeDead drains the lanes whose destination is dead at now (its period
// not over), for deferDead. A lane whose period is over waits for its
// probe instead (startWorkers).
func (s *Scheduler) takeDead(now time.Time) []deadItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []deadItem
	for _, l := range s.lanes {
		if len(l.pending) == 0 {
			continue
		}
		d := s.deadLocked(s.destKey(l.domain))
		if d == nil || !now.Before(d.until) {
			continue
		}
		p := l.provider
		if p == "" {
			p = s.shaper.E.Policy().Recognize(l.domain, nil)
		}
		for _, it := range l.pending {
			out = append(out, deadItem{it: it, provider: p, domain: l.domain, until: d.until, reason: d.reason})
		}
		l.pending = nil
	}
	return out
}

// deferDead defers the items of dead destinations without connecting:
// each recipient counts an attempt (as Postfix counts the deferral) and
// is due again on its retry schedule, not before the destination's probe.
// The Record calls run deadWriters at a time so that they share commits.
func (s *Scheduler) deferDead(ctx context.Context, now time.Time) {
	items := s.takeDead(now)
	if len(items) == 0 {
		return
	}
	work := make(chan deadItem)
	var wg sync.WaitGroup
	for range min(deadWriters, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := range work {
				s.deferOne(ctx, x, now)
			}
		}()
	}
	for _, x := range items {
		work <- x
	}
	close(work)
	wg.Wait()
}

func (s *Scheduler) deferOne(ctx context.Context, x deadItem, now time.Time) {
	it := x.it
	if s.expire(ctx, it, x.provider, now) {
		return
	}
	reply := policy.Reply{Code: 451, Enhanced: "4.4.1", Text: "delivery temporarily suspended: " + x.reason, Local: true}
	var out outcome
	for _, rcpt := range it.rcpts {
		attempt := s.attempts(it, rcpt) + 1
		next, expired := s.nextAttempt(x.provider, attempt, it.msg.Created, now)
		if expired {
			// Past its lifetime: the expiry path bounces it with a DSN.
			s.judge(&out, it, rcpt, x.provider, x.domain, nil, reply, now)
			continue
		}
		if next.Before(x.until) {
			next = x.until
		}
		if until, _ := s.shaper.E.SuspendedUntilFrom("", x.provider, x.domain, now); until.After(next) {
			next = until
		}
		if exp := s.expiry(x.provider, it.msg.Created); next.After(exp) {
			next = exp
		}
		out.ups = append(out.ups, queue.Update{Rcpt: rcpt, Status: queue.Deferred, NextAttempt: next, Response: reply.String(),
			Class: string(policy.OtherTemporary), Provider: x.provider, Attempted: true, At: now})
		s.log.Info(maillog.Deferred, "qid", string(it.msg.ID), "rcpt", "<"+rcpt+">", "provider", x.provider,
			"attempt", attempt, "delay", now.Sub(it.msg.Created), "class", string(policy.OtherTemporary), "rule", "dead destination",
			"next", next, "resp", reply.String())
		out.events = append(out.events, DeliveryEvent{Event: "deferred", ID: it.msg.ID, Sender: it.msg.Sender, User: it.msg.User, Rcpt: rcpt,
			Provider: x.provider, Class: string(policy.OtherTemporary), Response: reply.String(), At: now})
	}
	s.commit(ctx, it, out, now)
}

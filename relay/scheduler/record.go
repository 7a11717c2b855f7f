package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/address"
	"facteur/relay/breaker"
	"facteur/relay/delivery"
	"facteur/relay/local"
	"facteur/relay/maillog"
	"facteur/relay/tlspolicy"
)

// appendConnAttrs appends what the log says about the connection an
// attempt used. Attributes rather than key/value pairs: no value is boxed
// in an interface on the way to the log.
func appendConnAttrs(attrs []slog.Attr, c *delivery.Conn) []slog.Attr {
	if c == nil {
		return attrs
	}
	// tls is what protected the session (issue 15 §4); cipher, cv and dn
	// describe the TLS session itself.
	attrs = append(attrs, slog.String("mx", c.Host()), slog.String("ip", c.IP().String()), slog.String("tls", c.Protection()))
	if t, ok := c.TLS(); ok {
		cv := "no"
		if t.Verified {
			cv = "yes"
		}
		attrs = append(attrs, slog.String("cipher", t.Version+":"+t.Cipher), slog.String("cv", cv))
		if t.PeerDN != "" {
			attrs = append(attrs, slog.String("dn", t.PeerDN))
		}
	}
	if r := c.Report(); r != "" {
		attrs = append(attrs, slog.String("tls_report", r))
	}
	return attrs
}

// rcptAttrs is room for the attributes of a recipient's log line, on the
// stack of the caller.
type rcptAttrs [24]slog.Attr

// tlsOf is the queue's record of a session's TLS for a recipient.
func tlsOf(c *delivery.Conn) (mode, cipher, dn string) {
	if c == nil {
		return "", "", ""
	}
	if t, ok := c.TLS(); ok {
		return c.Protection(), t.Version + ":" + t.Cipher, t.PeerDN
	}
	return c.Protection(), "", ""
}

// record applies the result of one transaction to each recipient of it.
func (s *Scheduler) record(ctx context.Context, it *item, provider, domain string, c *delivery.Conn, res delivery.Result, sendErr error, start time.Time) {
	now := s.clock.Now()
	s.commit(ctx, it, s.outcomeOf(it, provider, domain, c, res, sendErr, now), now)
}

// outcomeOf judges the result of one transaction for each recipient of it,
// logging each, and returns what commit is to store and announce.
func (s *Scheduler) outcomeOf(it *item, provider, domain string, c *delivery.Conn, res delivery.Result, sendErr error, now time.Time) outcome {
	if res.Note != "" {
		s.log.Info(maillog.Note, "qid", string(it.msg.ID), "note", res.Note)
	}
	byAddr := indexRcpts(res.Rcpts)
	out := s.newOutcome(len(it.rcpts))
	for _, rcpt := range it.rcpts {
		rr, ok := byAddr.get(rcpt)
		switch {
		case ok && rr.Delivered():
			s.logEvents(s.shaper.E.DeliveredSender(it.srcKey(), it.senderDomain(), provider, domain, now))
			mode, cipher, dn := tlsOf(c)
			resp := rr.Reply.String()
			out.ups = append(out.ups, queue.Update{Rcpt: rcpt, Status: queue.Delivered, Response: resp, Provider: provider, Attempted: true, At: now,
				TLS: mode, TLSCipher: cipher, TLSDN: dn, MX: c.Host()})
			var buf rcptAttrs
			attrs := append(buf[:0], slog.String("qid", string(it.msg.ID)), slog.String("rcpt", "<"+rcpt+">"), slog.String("provider", provider))
			attrs = appendConnAttrs(attrs, c)
			attrs = it.appendSrcAttrs(attrs)
			attrs = append(attrs, slog.Int("attempt", s.attempts(it, rcpt)+1), slog.Duration("delay", now.Sub(it.msg.Created)), slog.String("resp", resp))
			s.log.LogAttrs(context.Background(), slog.LevelInfo, maillog.Delivered, attrs...)
			out.observe(it, rcpt, breaker.Delivered, policy.Decision{}, resp, now)
			out.events = append(out.events, DeliveryEvent{SourceIP: it.srcKey(), Event: "delivered", ID: it.msg.ID, Sender: it.msg.Sender, User: it.msg.User, Rcpt: rcpt, Provider: provider, Response: resp, At: now, Latency: now.Sub(it.msg.Created), TLS: mode})
		case ok && rr.Reply.Known():
			r := rr.Reply
			r.Stage = replyStage(res, rr)
			s.judge(&out, it, rcpt, provider, domain, c, r, now)
		default:
			// No reply for this recipient: the connection broke before the
			// server answered. Nothing was acknowledged: defer.
			reason := "connection lost before a reply"
			if sendErr != nil {
				reason = sendErr.Error()
			}
			s.judge(&out, it, rcpt, provider, domain, c, policy.Reply{Code: 451, Enhanced: "4.4.2", Text: reason, Local: true}, now)
		}
	}
	return out
}

// rcptIndex finds a recipient's result among a transaction's: the last
// one for the address, as a map filled in order keeps it.
type rcptIndex struct {
	rs []delivery.RcptResult
	m  map[string]delivery.RcptResult // nil for a few: a scan costs less than a map
}

func indexRcpts(rs []delivery.RcptResult) rcptIndex {
	x := rcptIndex{rs: rs}
	if len(rs) > 8 {
		x.m = make(map[string]delivery.RcptResult, len(rs))
		for _, r := range rs {
			x.m[r.Addr] = r
		}
	}
	return x
}

func (x rcptIndex) get(addr string) (delivery.RcptResult, bool) {
	if x.m != nil {
		r, ok := x.m[addr]
		return r, ok
	}
	for i := len(x.rs) - 1; i >= 0; i-- {
		if x.rs[i].Addr == addr {
			return x.rs[i], true
		}
	}
	return delivery.RcptResult{}, false
}

// replyStage says which command rr's reply answered, so that the policy
// never reads a refusal of MAIL FROM (about the sender) as the recipient's
// (issue 12): MAIL when MAIL was refused, RCPT when this recipient's RCPT
// was, else DATA.
func replyStage(res delivery.Result, rr delivery.RcptResult) policy.Stage {
	switch {
	case res.Mail.Code >= 400:
		return policy.StageMail
	case !rr.Accepted:
		return policy.StageRcpt
	default:
		return policy.StageData
	}
}

func (s *Scheduler) attempts(it *item, rcpt string) int {
	for _, r := range it.msg.Recipients {
		if r.Address == rcpt {
			return r.Attempts
		}
	}
	return 0
}

type bouncedRcpt struct {
	rcpt     string
	reply    policy.Reply
	mx       string
	expired  bool
	lastTime time.Time
	suppress *policy.Decision // the address is to be suppressed, after the record
	// soft: a permanent mailbox_full bounce, or another soft bounce (issue
	// 12), counted towards the repeated-bounce suppression of issue 7 §3.
	soft  bool
	class policy.Class
}

// outcome is what one item's attempt produced: the store updates, then,
// once they are committed, the events, suppressions and DSN.
type outcome struct {
	ups     []queue.Update
	bounced []bouncedRcpt
	events  []DeliveryEvent
	// refusal is the TLS policy that kept the item from any connection:
	// its host and mode go in the log and the queue instead of a session's.
	refusal *tlspolicy.Refusal
	// seen are the attempts' outcomes for the breaker (issue 21).
	seen []breaker.Outcome
	// noBreaker: there is no breaker to tell, seen stays empty.
	noBreaker bool
}

// newOutcome is an outcome with room for n recipients.
func (s *Scheduler) newOutcome(n int) outcome {
	return outcome{ups: make([]queue.Update, 0, n), events: make([]DeliveryEvent, 0, n), noBreaker: s.opts.Breaker == nil}
}

func (o *outcome) observe(it *item, rcpt string, st breaker.Status, d policy.Decision, reply string, now time.Time) {
	if o.noBreaker {
		return
	}
	// A deferral by our own TLS policy is the destination's doing, as a
	// provider-wide action is: not the sender's.
	wide := d.Action.ProviderWide() || o.refusal != nil
	o.seen = append(o.seen, breaker.Outcome{ID: string(it.msg.ID), Rcpt: rcpt, Status: st, Class: string(d.Class),
		ProviderWide: wide, Reply: reply, At: now})
}

// judge turns a failing reply into the recipient's update, logging it; a
// bounce is returned for the DSN. A Local reply, one facteur made up (no
// server said it), is not judged by the policy: it never changes the
// provider's state.
func (s *Scheduler) judge(out *outcome, it *item, rcpt, provider, domain string, c *delivery.Conn, r policy.Reply, now time.Time) {
	var v policy.Outcome
	if r.Local {
		v.Decision = policy.Decision{Class: policy.OtherTemporary, Action: policy.Defer, Rule: "local", Provider: provider}
		if r.Permanent() {
			v.Decision.Class, v.Decision.Action = policy.OtherPermanent, policy.Bounce
		}
	} else {
		v = s.shaper.Observe(it.srcKey(), it.senderDomain(), provider, domain, r, now)
		s.warmupHold(it, provider, v.Decision, r, now)
	}
	s.logEvents(v.Events)
	d := v.Decision
	attempt := s.attempts(it, rcpt) + 1
	var buf rcptAttrs
	base := append(buf[:0], slog.String("qid", string(it.msg.ID)), slog.String("rcpt", "<"+rcpt+">"), slog.String("provider", provider))
	base = appendConnAttrs(base, c)
	base = it.appendSrcAttrs(base)
	mode, cipher, dn := tlsOf(c)
	if c == nil && out.refusal != nil {
		base = append(base, slog.String("mx", out.refusal.Host))
		if out.refusal.IP.IsValid() {
			base = append(base, slog.String("ip", out.refusal.IP.String()))
		}
		base = append(base, slog.String("tls", out.refusal.Mode))
		mode = out.refusal.Mode
	}
	base = append(base, slog.Int("attempt", attempt), slog.Duration("delay", now.Sub(it.msg.Created)), slog.String("class", string(d.Class)), slog.String("rule", d.Rule))
	if r.Stage != "" {
		// The command the reply answered: a refusal of MAIL FROM reads
		// differently from one of RCPT TO (issue 12).
		base = append(base, slog.String("stage", string(r.Stage)))
	}
	if len(d.Auth) > 0 {
		base = append(base, slog.String("missing", strings.Join(d.Auth, ",")))
	}
	resp := r.String()
	u := queue.Update{Rcpt: rcpt, Response: resp, Class: string(d.Class), Provider: provider, Attempted: true, At: now,
		TLS: mode, TLSCipher: cipher, TLSDN: dn}
	mx := ""
	if c != nil {
		mx = c.Host()
	}
	u.MX = mx
	if d.Action == policy.Bounce {
		u.Status = queue.Bounced
		s.log.LogAttrs(context.Background(), slog.LevelInfo, maillog.Bounced, append(base, slog.String("resp", resp))...)
		out.events = append(out.events, DeliveryEvent{SourceIP: it.srcKey(), Event: "bounced", ID: it.msg.ID, Sender: it.msg.Sender, User: it.msg.User, Rcpt: rcpt, Provider: provider, Class: string(d.Class), Response: resp, At: now, TLS: mode})
		b := bouncedRcpt{rcpt: rcpt, reply: r, mx: mx, lastTime: now}
		if d.Suppress {
			b.suppress = &d
		}
		// A soft bounce (a full mailbox, an unknown user on evidence that
		// is not conclusive) counts towards the repeated-bounce rule.
		b.soft = (d.Soft || d.Class == policy.MailboxFull) && r.Permanent()
		b.class = d.Class
		out.observe(it, rcpt, breaker.Bounced, d, resp, now)
		out.ups = append(out.ups, u)
		out.bounced = append(out.bounced, b)
		return
	}
	// Through a relayhost or a route the provider was never contacted: the
	// retry follows facteur's own schedule (the default policy), not, say,
	// Yahoo's four hours (issue 13 §9).
	sched := provider
	if s.viaHost(domain) {
		sched = policy.DefaultProvider
	}
	next, expired := s.nextAttempt(sched, attempt, it.msg.Created, now)
	if !expired {
		// Only what holds every source IP delays the retry: the pool's
		// other IPs may take it.
		if until, _ := s.shaper.E.SuspendedUntilFrom(s.retrySrc(it), provider, domain, now); until.After(next) {
			next = until
		}
		// A hold of the sender domain's mail (a reply about the domain)
		// delays this sender's recipients only.
		if until, _ := s.shaper.E.SenderHeld(it.senderDomain(), provider, domain, now); until.After(next) {
			next = until
		}
		if exp := s.expiry(provider, it.msg.Created); next.After(exp) {
			// Nothing extends the lifetime: the last try is at expiry.
			next = exp
		}
	}
	if expired {
		u.Status = queue.Bounced
		s.log.LogAttrs(context.Background(), slog.LevelInfo, maillog.Expired, append(base, slog.String("resp", resp))...)
		out.events = append(out.events, DeliveryEvent{SourceIP: it.srcKey(), Event: "expired", ID: it.msg.ID, Sender: it.msg.Sender, User: it.msg.User, Rcpt: rcpt, Provider: provider, Class: string(d.Class), Response: resp, At: now, TLS: mode})
		out.ups = append(out.ups, u)
		out.bounced = append(out.bounced, bouncedRcpt{rcpt: rcpt, reply: r, mx: mx, expired: true, lastTime: now})
		out.observe(it, rcpt, breaker.Expired, d, resp, now)
		return
	}
	out.observe(it, rcpt, breaker.Deferred, d, resp, now)
	u.Status = queue.Deferred
	u.NextAttempt = next
	s.log.LogAttrs(context.Background(), slog.LevelInfo, maillog.Deferred, append(base, slog.Time("next", next), slog.String("resp", resp))...)
	out.events = append(out.events, DeliveryEvent{SourceIP: it.srcKey(), Event: "deferred", ID: it.msg.ID, Sender: it.msg.Sender, User: it.msg.User, Rcpt: rcpt, Provider: provider, Class: string(d.Class), Response: resp, At: now, TLS: mode})
	out.ups = append(out.ups, u)
}

// expiry is when a recipient expires: the config's max lifetime, or the
// provider's when shorter.
func (s *Scheduler) expiry(provider string, created time.Time) time.Time {
	exp := created.Add(s.opts.MaxLifetime)
	if pd := s.shaper.E.Deadline(provider, created); !pd.IsZero() && pd.Before(exp) {
		exp = pd
	}
	return exp
}

func (s *Scheduler) nextAttempt(provider string, attempts int, created, now time.Time) (time.Time, bool) {
	next, expired := s.shaper.E.NextAttempt(provider, attempts, created, now)
	if !now.Before(s.expiry(provider, created)) {
		expired = true
	}
	return next, expired
}

// expire bounces the recipients of it whose lifetime is over, before any
// attempt (a suspension may have kept them waiting until then). It
// reports whether it handled the whole item.
func (s *Scheduler) expire(ctx context.Context, it *item, provider string, now time.Time) bool {
	if now.Before(s.expiry(provider, it.msg.Created)) {
		return false
	}
	var out outcome
	for _, rcpt := range it.rcpts {
		last := policy.Reply{Code: 451, Enhanced: "4.4.7", Text: "message expired in queue"}
		for _, r := range it.msg.Recipients {
			if r.Address == rcpt && r.LastResponse != "" {
				if pr, err := policy.ParseReply(r.LastResponse); err == nil {
					last = pr
				} else {
					last.Text = r.LastResponse
				}
			}
		}
		out.ups = append(out.ups, queue.Update{Rcpt: rcpt, Status: queue.Bounced, Response: last.String(), Provider: provider, At: now})
		s.log.Info(maillog.Expired, "qid", string(it.msg.ID), "rcpt", "<"+rcpt+">", "provider", provider, "delay", now.Sub(it.msg.Created), "resp", last.String())
		out.events = append(out.events, DeliveryEvent{SourceIP: it.srcKey(), Event: "expired", ID: it.msg.ID, Sender: it.msg.Sender, User: it.msg.User, Rcpt: rcpt, Provider: provider, Response: last.String(), At: now})
		out.bounced = append(out.bounced, bouncedRcpt{rcpt: rcpt, reply: last, expired: true, lastTime: now})
	}
	s.commit(ctx, it, out, now)
	return true
}

// failItem settles an item whose connection could not be made.
func (s *Scheduler) failItem(ctx context.Context, it *item, provider, domain string, err error, c *delivery.Conn) {
	now := s.clock.Now()
	if s.expire(ctx, it, provider, now) {
		return
	}
	var ref *tlspolicy.Refusal
	if errors.As(err, &ref) {
		// RFC 8461 §5.1, RFC 7672 §2.2: the policy forbids every host that
		// could be tried; the recipients wait, never sent in clear nor to
		// a host outside the policy (issue 15: 4.7.5 with the reason).
		reply := policy.Reply{Code: 451, Enhanced: "4.7.5", Text: ref.Error(), Local: true}
		out := outcome{refusal: ref}
		for _, rcpt := range it.rcpts {
			s.judge(&out, it, rcpt, provider, domain, nil, reply, now)
		}
		s.commit(ctx, it, out, now)
		return
	}
	reply := policy.Reply{Code: 451, Enhanced: "4.4.1", Text: "connection failed: " + err.Error(), Local: true}
	if r, ok := delivery.ReplyOf(err); ok {
		// The server spoke (a 421 or 554 banner, a refused EHLO): judge it
		// like any reply, so that RP-001 at connect throttles microsoft.
		reply = r
	}
	s.settle(ctx, it, provider, domain, c, reply, now)
}

// settle applies one reply to every recipient of it.
func (s *Scheduler) settle(ctx context.Context, it *item, provider, domain string, c *delivery.Conn, r policy.Reply, now time.Time) {
	var out outcome
	for _, rcpt := range it.rcpts {
		s.judge(&out, it, rcpt, provider, domain, c, r, now)
	}
	s.commit(ctx, it, out, now)
}

// suspendLane makes every pending item of l wait for the end of the
// provider's suspension, without an attempt and without extending the
// lifetime (issue 5 §4: deferred, not held).
func (s *Scheduler) suspendLane(ctx context.Context, l *lane, provider string, until time.Time, why string) {
	for _, it := range s.drain(l) {
		s.holdItem(ctx, it, provider, until, why)
	}
}

// holdItem makes it wait until `until` without an attempt and without
// extending its lifetime: a suspended provider's lane (suspendLane), or a
// message whose sender domain is held at the provider (issue 14 §2).
func (s *Scheduler) holdItem(ctx context.Context, it *item, provider string, until time.Time, why string) {
	now := s.clock.Now()
	if s.expire(ctx, it, provider, now) {
		return
	}
	next := until
	if exp := s.expiry(provider, it.msg.Created); next.After(exp) {
		next = exp
	}
	var ups []queue.Update
	for _, rcpt := range it.rcpts {
		st := queue.Deferred
		for _, r := range it.msg.Recipients {
			if r.Address == rcpt && r.Status == queue.Queued {
				st = queue.Queued // never tried: still queued, just later
			}
		}
		ups = append(ups, queue.Update{Rcpt: rcpt, Status: st, NextAttempt: next, Provider: provider, At: now})
	}
	if err := s.store.Record(ctx, it.msg.ID, ups); err != nil {
		s.log.Error(maillog.Record, "qid", string(it.msg.ID), "err", err)
	} else {
		// No attempt was made, but the log still tells why the
		// message waits (Postfix: "delivery temporarily suspended").
		for _, rcpt := range it.rcpts {
			s.log.Info(maillog.Deferred, "qid", string(it.msg.ID), "rcpt", "<"+rcpt+">", "provider", provider, "next", next, "resp", "not tried: "+why)
		}
	}
	s.done(it)
}

// commit stores the updates of one item, then queues its DSN.
func (s *Scheduler) commit(ctx context.Context, it *item, out outcome, now time.Time) {
	defer s.done(it)
	if len(out.ups) == 0 {
		return
	}
	var body []byte
	if len(out.bounced) > 0 {
		// Read before Record: a message whose recipients are all final is
		// deleted by it. Without the body the DSN still goes, headerless.
		body, _ = s.store.Body(ctx, it.msg.ID)
	}
	if err := s.store.Record(ctx, it.msg.ID, out.ups); err != nil {
		// The recipients stay due at their old time and will be tried
		// again: a duplicate is better than a loss.
		s.log.Error(maillog.Record, "qid", string(it.msg.ID), "err", err)
		return
	}
	if s.opts.Breaker != nil {
		for _, o := range out.seen {
			s.opts.Breaker.Observe(it.msg, o)
		}
	}
	for _, e := range out.events {
		s.emit(e)
	}
	if len(out.bounced) > 0 {
		s.dsn.bounce(ctx, it.msg, body, out.bounced, now)
	}
	for _, b := range out.bounced {
		switch {
		case b.suppress != nil:
			s.suppress(ctx, b.rcpt, *b.suppress, b.reply, now)
		case b.soft && s.softAgain(ctx, b.class, b.rcpt, now):
			d := policy.Decision{Class: b.class, Action: policy.Bounce, Rule: string(b.class) + " repeated", Suppress: true}
			s.suppress(ctx, b.rcpt, d, b.reply, now)
		}
	}
}

// softAgain records a permanent soft bounce of rcpt (mailbox_full, or a
// class whose evidence was not conclusive) and says whether the address has
// now bounced so for long enough to suppress it (the history lives in the
// queue database, so it survives restarts; one history per class).
func (s *Scheduler) softAgain(ctx context.Context, class policy.Class, rcpt string, now time.Time) bool {
	key := string(class) + "/" + strings.ToLower(rcpt)
	var times []time.Time
	if b, err := s.store.State(ctx, key); err == nil {
		_ = json.Unmarshal(b, &times)
	}
	// Keep a bounded history: the rule looks at weeks, not years.
	if len(times) >= 20 {
		times = times[len(times)-19:]
	}
	times = append(times, now)
	b, err := json.Marshal(times)
	if err == nil {
		err = s.store.PutState(ctx, key, b)
	}
	if err != nil {
		s.log.Error(maillog.SuppressionHistory, "class", string(class), "rcpt", "<"+rcpt+">", "err", err)
	}
	return s.shaper.E.Policy().MailboxFullSuppress(times, now)
}

// suppress adds rcpt to the suppression list and cancels its queued mail.
// This host's own addresses are never suppressed: cron's mail to root is
// often the only alarm, and one DNS failure must not silence it for a month.
func (s *Scheduler) suppress(ctx context.Context, rcpt string, d policy.Decision, r policy.Reply, now time.Time) {
	if s.isOwn(rcpt) {
		s.log.Info(maillog.NotSuppressed, "rcpt", "<"+rcpt+">", "class", string(d.Class), "reason", "own address", "resp", r.String())
		return
	}
	sup := queue.Suppression{Address: rcpt, Reason: string(d.Class), Response: r.String(), Source: queue.SourceSMTP, FirstSeen: now, LastSeen: now}
	if d.Class == policy.HostUnknown && s.opts.HostUnknownTTL > 0 {
		sup.Expires = now.Add(s.opts.HostUnknownTTL)
	}
	var err error
	if s.opts.Suppress != nil {
		err = s.opts.Suppress(ctx, sup)
	} else {
		_, err = s.store.Suppress(ctx, sup)
	}
	if err != nil {
		s.log.Error(maillog.Suppress, "rcpt", "<"+rcpt+">", "err", err)
		return
	}
	s.log.Info(maillog.Suppressed, "rcpt", "<"+rcpt+">", "class", string(d.Class), "source", "smtp", "resp", r.String())
	s.emit(DeliveryEvent{Event: "suppressed", Rcpt: rcpt, Class: string(d.Class), Response: r.String(), At: now})
	s.CancelSuppressed(ctx, rcpt, r.String(), now)
}

// CancelSuppressed cancels the queued mail to a newly suppressed address
// (issue 7 §3): status suppressed, one DSN to each sender, and returns how
// many recipients it cancelled. It needs no running scheduler, so the CLI
// uses it too when the daemon is down (the DSNs leave at the next start).
func (s *Scheduler) CancelSuppressed(ctx context.Context, rcpt, why string, now time.Time) (int, error) {
	cancelled, err := s.store.CancelSuppressed(ctx, rcpt, now)
	if errors.Is(err, queue.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		s.log.Error(maillog.CancelSuppressed, "rcpt", "<"+rcpt+">", "err", err)
		return 0, err
	}
	reply := policy.Reply{Code: 550, Enhanced: "5.1.1", Text: "recipient is suppressed: " + why}
	for _, c := range cancelled {
		s.log.Info(maillog.Suppressed, "qid", string(c.ID), "rcpt", "<"+c.Rcpt+">", "resp", reply.String())
		if s.opts.Breaker != nil && !c.IsDSN {
			// Found suppressed: a failure of its sender (issue 21 §1).
			s.opts.Breaker.Observe(queue.Message{ID: c.ID, Sender: c.Sender, User: c.User, AuthUser: c.AuthUser},
				breaker.Outcome{ID: string(c.ID), Rcpt: c.Rcpt, Status: breaker.Suppressed, Reply: reply.String(), At: now})
		}
		s.emit(DeliveryEvent{Event: "suppressed", ID: c.ID, Sender: c.Sender, Rcpt: c.Rcpt, Response: reply.String(), At: now})
		s.dsn.bounce(ctx, queue.Message{ID: c.ID, Sender: c.Sender, IsDSN: c.IsDSN, Created: now}, nil,
			[]bouncedRcpt{{rcpt: c.Rcpt, reply: reply, lastTime: now}}, now)
	}
	return len(cancelled), nil
}

func (s *Scheduler) logEvents(evs []policy.Event) {
	for _, e := range evs {
		s.log.Info(string(e.Kind), e.LogAttrs()...)
	}
	if len(evs) > 0 && s.opts.OnProviderEvent != nil {
		s.opts.OnProviderEvent(evs)
	}
}

func (s *Scheduler) emit(e DeliveryEvent) {
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(e)
	}
}

// deliverLocal appends a message to the mailboxes of its local recipients
// (relay/local), judged like any attempt: a missing account bounces (never
// suppressed: see suppress), a busy or unwritable mailbox defers on the
// default schedule.
func (s *Scheduler) deliverLocal(ctx context.Context, msg queue.Message, rcpts []string, now time.Time) {
	it := &item{msg: msg, rcpts: rcpts}
	provider := policy.DefaultProvider
	if s.expire(ctx, it, provider, now) {
		return
	}
	body, berr := s.store.Body(ctx, msg.ID)
	var out outcome
	for _, rcpt := range rcpts {
		name, domain := address.Split(rcpt)
		var err error
		if berr != nil {
			err = fmt.Errorf("message body unreadable: %w", berr)
		} else {
			err = s.opts.Local.Deliver(name, msg.Sender, rcpt, body, now)
		}
		if err == nil {
			resp := "250 2.0.0 delivered to mailbox"
			out.ups = append(out.ups, queue.Update{Rcpt: rcpt, Status: queue.Delivered, Response: resp, Provider: "local", Attempted: true, At: now, MX: "local"})
			s.log.Info(maillog.Delivered, "qid", string(msg.ID), "rcpt", "<"+rcpt+">", "provider", "local", "mx", "local",
				"attempt", s.attempts(it, rcpt)+1, "delay", now.Sub(msg.Created), "resp", resp)
			out.events = append(out.events, DeliveryEvent{SourceIP: it.srcKey(), Event: "delivered", ID: msg.ID, Sender: msg.Sender, User: msg.User, Rcpt: rcpt, Provider: "local", Response: resp, At: now, Latency: now.Sub(msg.Created)})
			continue
		}
		reply := policy.Reply{Code: 451, Enhanced: "4.2.0", Text: "local mailbox: " + err.Error(), Local: true}
		if errors.Is(err, local.ErrNoUser) {
			reply = policy.Reply{Code: 550, Enhanced: "5.1.1", Text: "<" + rcpt + ">: no such user on this host (no alias and no account " + name + ")", Local: true}
		}
		s.judge(&out, it, rcpt, provider, domain, nil, reply, now)
	}
	s.commit(ctx, it, out, now)
}

// stopped holds an item whose sender's breaker is tripped (issue 21): it
// was due before the trip, or is in a lane already, and must not go out.
// The hold is recorded with its reason; the recipients wait for
// `facteur breaker reset`.
func (s *Scheduler) stopped(ctx context.Context, it *item) bool {
	if s.opts.Breaker == nil || it.msg.IsDSN {
		return false
	}
	key, ok := s.opts.Breaker.Stopped(it.msg)
	if !ok {
		return false
	}
	defer s.done(it)
	now := s.clock.Now()
	// The daemon's sweep at the trip may have held it since it was read:
	// then there is nothing to do, and nothing to log twice.
	cur, err := s.store.Get(ctx, it.msg.ID)
	if err != nil {
		return true // gone (deleted meanwhile) or unreadable: not sent either way
	}
	var ups []queue.Update
	for _, rcpt := range it.rcpts {
		for _, r := range cur.Recipients {
			if r.Address == rcpt && (r.Status == queue.Queued || r.Status == queue.Deferred) {
				ups = append(ups, queue.Update{Rcpt: rcpt, Status: queue.Held, HoldReason: breaker.Reason, At: now})
			}
		}
	}
	if len(ups) == 0 {
		return true
	}
	if err := s.store.Record(ctx, it.msg.ID, ups); err != nil {
		s.log.Error(maillog.Record, "qid", string(it.msg.ID), "err", err)
		return true
	}
	k := breaker.Key(key)
	s.log.Info(maillog.Held, "qid", string(it.msg.ID), "reason", breaker.Reason, k.Kind(), k.Value(), "nrcpt", len(ups))
	return true
}

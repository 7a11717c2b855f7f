package scheduler

import (
	"fmt"
	"log/slog"
	"sort"
	"time"

	"facteur/policy"
	"facteur/relay/address"
	"facteur/relay/maillog"
	"facteur/relay/pool"
)

// Outbound IP pools (issue 17): a lane of a pool takes each connection
// from one of the pool's IPs, chosen by available capacity; shaping is per
// (source IP, provider) in the policy engine, and warm-up caps per (IP,
// provider) per UTC day in pool.Set.

// srcKeyOf is the policy engine's source key of a pool IP ("" none).
func srcKeyOf(ip *pool.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

func (it *item) srcKey() string { return srcKeyOf(it.src) }

// senderDomain is the domain of the message's envelope sender, whose mail a
// reply about the domain holds (issue 14 §2); "" for the null sender.
func (it *item) senderDomain() string { return address.Domain(it.msg.Sender) }

// appendSrcAttrs appends the log keys of the source IP an attempt left
// from.
func (it *item) appendSrcAttrs(attrs []slog.Attr) []slog.Attr {
	if it.src == nil {
		return attrs
	}
	return append(attrs, slog.String("source_ip", it.src.String()), slog.String("pool", it.src.Pool))
}

// retrySrc is the source whose suspension delays a recipient's next
// attempt: none of a pool IP's own (the pool's other IPs may take it), only
// what holds every source.
func (s *Scheduler) retrySrc(*item) string { return "" }

// acquireSource takes a connection slot for l: from the default address
// when l has no pool, else from the first IP of the pool that has one,
// warming IPs with cap left first, then the warm IPs least loaded first.
// Not OK and Suspended: every candidate is suspended, or the warming IPs
// are at today's cap with nothing to overflow to (Until is then the next
// UTC midnight); not OK otherwise: every candidate's connections are in
// use.
func (s *Scheduler) acquireSource(l *lane, provider string, now time.Time) (*pool.IP, policy.Admission) {
	p := s.opts.Pools.Pool(l.pool)
	if p == nil {
		return nil, s.shaper.Acquire("", provider, l.domain, now)
	}
	warming, warm, capped := s.opts.Pools.Candidates(p, provider, now)
	s.mu.Lock()
	sort.SliceStable(warm, func(i, j int) bool {
		return s.srcConns[srcProv{warm[i].String(), provider}] < s.srcConns[srcProv{warm[j].String(), provider}]
	})
	s.mu.Unlock()
	busy := false
	var held time.Time
	heldWhy := ""
	for _, ip := range append(warming, warm...) {
		a := s.shaper.Acquire(ip.String(), provider, l.domain, now)
		if a.OK {
			k := srcProv{ip.String(), provider}
			s.mu.Lock()
			s.srcConns[k]++
			s.mu.Unlock()
			rel := a.Release
			a.Release = func() {
				rel()
				s.mu.Lock()
				s.srcConns[k]--
				s.mu.Unlock()
			}
			return ip, a
		}
		if !a.Suspended {
			busy = true
			continue
		}
		if held.IsZero() || a.Until.Before(held) {
			held, heldWhy = a.Until, fmt.Sprintf("source IP %s suspended: %s", ip, a.Why)
		}
	}
	if busy {
		return nil, policy.Admission{Why: "connections of pool " + p.Name + " in use"}
	}
	if capped {
		if next := pool.NextDay(now); held.IsZero() || next.Before(held) {
			held = next
			heldWhy = fmt.Sprintf("warm-up cap of pool %s's IPs at %s reached for today (overflow: %s)", p.Name, provider, p.Overflow)
		}
	}
	if held.IsZero() {
		held, heldWhy = now.Add(time.Minute), "pool "+p.Name+" has no IP for "+provider
	}
	return nil, policy.Admission{Until: held, Suspended: true, Why: heldWhy}
}

// srcProv counts the scheduler's connections per (source IP, provider),
// to rank a pool's warm IPs by free capacity.
type srcProv struct{ src, provider string }

// bindTargets makes targets leave from src, with its EHLO name; hosts of
// the other address family are left out (an IPv4 source cannot reach an
// IPv6 MX), unless that would leave none.
func (s *Scheduler) bindTargets(targets []target, src *pool.IP) []target {
	if src == nil {
		return targets
	}
	out := make([]target, 0, len(targets))
	for _, t := range targets {
		if t.ip.IsValid() && t.ip.Unmap().Is4() != src.Addr.Unmap().Is4() {
			continue
		}
		t.opts.SourceIP = src.Addr
		if src.EHLO != "" {
			t.opts.Hostname = src.EHLO
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		for _, t := range targets {
			t.opts.SourceIP = src.Addr
			if src.EHLO != "" {
				t.opts.Hostname = src.EHLO
			}
			out = append(out, t)
		}
	}
	return out
}

// takeWarmup takes one message of src's warm-up cap at provider today
// (and counts it, warm or not); false when the cap is reached.
func (s *Scheduler) takeWarmup(src *pool.IP, provider string) bool {
	if src == nil {
		return true
	}
	return s.opts.Pools.Take(src, provider, s.clock.Now())
}

// warmupHold holds the ramp of the warming IP an attempt left from when the
// provider answered with a block or a suspension (Yahoo's [TSS04]): the IP
// stays on today's step tomorrow.
func (s *Scheduler) warmupHold(it *item, provider string, d policy.Decision, r policy.Reply, now time.Time) {
	if it.src == nil || it.src.Warmup == nil {
		return
	}
	if d.Class != policy.IPBlocked && d.Action != policy.Suspend {
		return
	}
	if first, day := s.opts.Pools.Hold(it.src, provider, now); first {
		s.log.Warn(maillog.WarmupHeld, "qid", string(it.msg.ID), "source_ip", it.src.String(), "pool", it.src.Pool,
			"provider", provider, "day", day, "class", string(d.Class), "resp", r.String())
	}
}

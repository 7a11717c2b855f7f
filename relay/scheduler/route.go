package scheduler

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/address"
	"facteur/relay/delivery"
	"facteur/relay/maillog"
	"facteur/relay/resolver"
	"facteur/relay/tlspolicy"
)

// Routing: which lane a recipient joins, the routes of the config (a host, hold, discard,
// local delivery), and the hosts a lane tries: the relayhost, a route's host or the
// domain's MX hosts with their TLS requirements.

// laneKey names the destination of a recipient: its domain (a lane's
// worker then finds its MX, route or the relayhost). Recipients of one
// provider at different domains stay in different lanes, each with its own
// MX; the provider's limits still apply across them. Mail of a pool has
// its own lanes, whose connections leave from the pool's IPs.
func (s *Scheduler) laneKey(msg queue.Message, rcpt string) string {
	if p := s.opts.Pools.For(msg.Sender, msg.User); p != "" {
		return p + "|" + address.Domain(rcpt)
	}
	return address.Domain(rcpt)
}

// applyRoute handles the "hold" and "discard" routes (transport_maps).
func (s *Scheduler) applyRoute(ctx context.Context, msg queue.Message, rcpts []string, route string, now time.Time) {
	var ups []queue.Update
	for _, r := range rcpts {
		u := queue.Update{Rcpt: r, At: now}
		if route == "hold" {
			u.Status = queue.Held
			u.Response = "held by route for " + address.Domain(r)
		} else {
			u.Status = queue.Delivered
			u.Response = "discarded by route for " + address.Domain(r)
		}
		ups = append(ups, u)
	}
	if err := s.store.Record(ctx, msg.ID, ups); err != nil {
		s.log.Error(maillog.Record, "qid", string(msg.ID), "err", err)
		return
	}
	event := map[string]string{"hold": maillog.Held, "discard": maillog.Delivered}[route]
	for _, r := range rcpts {
		s.log.Info(event, "qid", string(msg.ID), "rcpt", "<"+r+">", "route", route)
	}
}

// isLocal reports whether mail for domain goes to a local mailbox: the
// host's own name and localhost, when local delivery is on.
func (s *Scheduler) isLocal(domain string) bool {
	return s.opts.Local != nil && domain != "" && (strings.EqualFold(domain, s.opts.Hostname) || strings.EqualFold(domain, "localhost"))
}

// isOwn reports whether addr is one of this host's addresses, never to be
// suppressed.
func (s *Scheduler) isOwn(addr string) bool {
	d := address.Domain(addr)
	if d == "" || d == "localhost" || strings.EqualFold(d, s.opts.Hostname) {
		return true
	}
	for _, o := range s.opts.OwnDomains {
		if o != "" && strings.EqualFold(d, o) {
			return true
		}
	}
	return false
}

// route returns the route for domain: its own, else the "*" route (every
// other domain: the dev config holds everything so that nothing leaves).
func (s *Scheduler) route(domain string) (string, bool) {
	if r, ok := s.opts.Routes[domain]; ok {
		return r, true
	}
	r, ok := s.opts.Routes["*"]
	return r, ok
}

// viaHost reports whether mail for domain goes to a configured host (a
// route host:port or the relayhost) rather than to the domain's MX.
func (s *Scheduler) viaHost(domain string) bool {
	if r, ok := s.route(domain); ok {
		return r != "hold" && r != "discard"
	}
	return s.opts.Relayhost != ""
}

// required reports whether a Security mode refuses a session without TLS.
func required(mode string) bool {
	switch mode {
	case delivery.ProtEncrypt, delivery.ProtVerify, delivery.ProtMTASTS, delivery.ProtDANE:
		return true
	}
	return false
}

// resolve finds the hosts of l and its provider.
func (s *Scheduler) resolve(ctx context.Context, l *lane) ([]target, string, error) {
	pin := tlspolicy.Pin(s.opts.RouteTLS[l.domain])
	if route, ok := s.route(l.domain); ok {
		dial := s.opts.Dial
		dial.Security = pin
		ts, err := s.hostTargets(ctx, route, dial)
		p := s.shaper.E.Policy().Recognize(l.domain, nil)
		s.setProvider(l, p)
		return ts, p, err
	}
	if s.opts.Relayhost != "" {
		ts, err := s.hostTargets(ctx, s.opts.Relayhost, s.opts.RelayhostDial)
		p := s.shaper.E.Policy().Recognize(l.domain, nil)
		s.setProvider(l, p)
		return ts, p, err
	}
	route, err := s.res.Route(ctx, l.domain)
	if err != nil {
		p := s.shaper.E.Policy().Recognize(l.domain, nil)
		s.setProvider(l, p)
		return nil, p, err
	}
	var names []string
	for _, h := range route.MX {
		names = append(names, h.Name)
	}
	ts := s.mxTargets(ctx, route, pin)
	p := s.shaper.E.Policy().Recognize(l.domain, names)
	s.setProvider(l, p)
	return ts, p, nil
}

// mxTargets lists the addresses of a domain's MX hosts with the TLS each
// connection must reach: the routes pin when there is one, else what
// MTA-STS and DANE demand (relay/tlspolicy).
func (s *Scheduler) mxTargets(ctx context.Context, route resolver.Route, pin *delivery.Security) []target {
	secs := make([]*delivery.Security, len(route.MX))
	refusals := make([]*tlspolicy.Refusal, len(route.MX))
	switch {
	case pin != nil:
		for i := range secs {
			secs[i] = pin
		}
	case s.opts.TLSPolicy != nil && !s.opts.Dial.NoTLS:
		plan := s.opts.TLSPolicy.Plan(ctx, route)
		if plan.STS.Note != "" {
			s.log.Warn(maillog.MTASTS, "domain", route.Domain, "note", plan.STS.Note)
		}
		for i, h := range plan.Hosts {
			secs[i], refusals[i] = h.Security, h.Refused
		}
	}
	var ts []target
	for i, h := range route.MX {
		if refusals[i] != nil {
			ts = append(ts, target{host: h.Name, refused: refusals[i]})
			continue
		}
		opts := s.opts.Dial
		opts.Security = secs[i]
		for _, ip := range h.Addrs {
			ts = append(ts, target{host: h.Name, ip: ip, opts: opts})
		}
	}
	return ts
}

func (s *Scheduler) setProvider(l *lane, p string) {
	s.mu.Lock()
	l.provider = p
	s.mu.Unlock()
}

// hostTargets resolves a "host:port" (relayhost or route).
func (s *Scheduler) hostTargets(ctx context.Context, hostport string, opts delivery.Options) ([]target, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("bad host:port %q: %w", hostport, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("bad port in %q", hostport)
	}
	opts.Port = port
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []target{{host: host, ip: ip, opts: opts}}, nil
	}
	ips, err := s.res.LookupIP(ctx, host)
	if err != nil {
		return nil, err
	}
	var ts []target
	for _, ip := range ips {
		ts = append(ts, target{host: host, ip: ip, opts: opts})
	}
	return ts, nil
}

// routeFailed handles a lane whose destination could not be resolved:
// NXDOMAIN and null MX bounce at once, anything else defers.
func (s *Scheduler) routeFailed(ctx context.Context, l *lane, provider string, err error) {
	var reply policy.Reply
	switch {
	case errors.Is(err, resolver.ErrNullMX):
		reply = policy.Reply{Code: 556, Enhanced: "5.1.10", Text: "Recipient address rejected: domain " + l.domain + " does not accept mail (null MX)"}
	case errors.Is(err, resolver.ErrNXDomain):
		reply = policy.Reply{Code: 550, Enhanced: "5.1.2", Text: "Host or domain name not found: " + l.domain + " (NXDOMAIN)"}
	case !resolver.Temporary(err):
		reply = policy.Reply{Code: 550, Enhanced: "5.4.4", Text: "Host or domain name not found: " + err.Error()}
	default:
		reply = policy.Reply{Code: 451, Enhanced: "4.4.3", Text: "Host or domain name lookup failed: " + err.Error()}
	}
	// Judged by the policy like a remote reply, so that NXDOMAIN is
	// host_unknown and suppresses (issue 7 §3), and a DNS failure defers.
	for _, it := range s.drain(l) {
		s.settle(ctx, it, provider, l.domain, nil, reply, s.clock.Now())
	}
}

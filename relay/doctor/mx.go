package doctor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"facteur/queue"
	"facteur/relay/config"
	"facteur/relay/delivery"
	"facteur/relay/mtasts"
	"facteur/relay/resolver"
	"facteur/relay/tlspolicy"
)

// MXFindings is doctor -mx (issue 15): what a sender that honours
// MTA-STS and DANE, facteur itself, finds at the domain's own MX hosts. It
// looks the records up and opens one STARTTLS session per host with the
// protection they demand.
func MXFindings(ctx context.Context, cfg *config.Config, res *resolver.Resolver, domain string) []Finding {
	route, err := res.Route(ctx, domain)
	if err != nil {
		detail := "cannot check: MX lookup failed: " + err.Error()
		return []Finding{
			{Check: CheckMTASTS, Status: Warn, Detail: detail},
			{Check: CheckDANE, Status: Warn, Detail: detail},
		}
	}
	return append(stsFindings(ctx, cfg, res, route), daneFindings(ctx, cfg, res, route)...)
}

// probe opens a session to the first address of host with sec and closes
// it: nil when it reached the protection.
func probe(ctx context.Context, cfg *config.Config, h resolver.Host, sec *delivery.Security) error {
	t := delivery.DefaultTimeouts()
	t.Connect, t.Greeting = 15*time.Second, 30*time.Second
	c, err := delivery.Dial(ctx, h.Name, h.Addrs[0], delivery.Options{
		Hostname: cfg.Hostname, Port: cfg.Delivery.Port, Timeouts: t, Security: sec,
	})
	if err != nil {
		return err
	}
	_ = c.Close()
	return nil
}

func stsFindings(ctx context.Context, cfg *config.Config, res *resolver.Resolver, route resolver.Route) []Finding {
	d := route.Domain
	// The doctor never writes the daemon's queue database: the policy is
	// fetched into a throwaway cache.
	src, err := mtasts.New(mtasts.Options{Resolver: res, Store: &memState{}})
	if err != nil {
		return []Finding{{Check: CheckMTASTS, Status: Warn, Detail: err.Error()}}
	}
	r := src.Get(ctx, d)
	publish := fmt.Sprintf(`_mta-sts.%s. IN TXT "v=STSv1; id=%s", and at %s (text/plain): "version: STSv1", "mode: enforce", one "mx: HOST" per MX host, "max_age: 604800"`,
		d, time.Now().UTC().Format("20060102T150405"), mtasts.URL(d)) // a fresh policy id: the wall clock's date, decides nothing
	switch {
	case r.Policy == nil && r.Note == "":
		return []Finding{{Check: CheckMTASTS, Status: Warn,
			Detail: "no MTA-STS policy: a sender cannot tell a stripped STARTTLS from a server without TLS", Fix: publish}}
	case r.Policy == nil:
		return []Finding{{Check: CheckMTASTS, Status: Fail,
			Detail: "an MTA-STS record is published but no policy can be used: " + r.Note, Fix: publish}}
	case r.Policy.Mode == mtasts.None:
		return []Finding{{Check: CheckMTASTS, Status: Warn, Detail: "the MTA-STS policy is in mode none", Fix: "set mode: enforce (or testing first) and change the TXT record's id"}}
	}
	var out []Finding
	for _, h := range route.MX {
		if !r.Policy.Match(h.Name) {
			st := Fail
			if r.Policy.Mode == mtasts.Testing {
				st = Warn
			}
			out = append(out, Finding{Check: CheckMTASTS, Status: st,
				Detail: fmt.Sprintf("MX %s matches no mx pattern of the %s policy (%s): senders enforcing it never deliver there", h.Name, r.Policy.Mode, strings.Join(r.Policy.MX, ", ")),
				Fix:    "add \"mx: " + h.Name + "\" to " + mtasts.URL(d) + " and change the TXT record's id"})
			continue
		}
		if err := probe(ctx, cfg, h, &delivery.Security{Mode: delivery.ProtMTASTS}); err != nil {
			st := Fail
			if r.Policy.Mode == mtasts.Testing {
				st = Warn
			}
			out = append(out, Finding{Check: CheckMTASTS, Status: st,
				Detail: fmt.Sprintf("MX %s fails the %s policy: %v", h.Name, r.Policy.Mode, err),
				Fix:    "offer STARTTLS with a certificate valid for " + h.Name + " from a public CA"})
			continue
		}
		st, detail := OK, fmt.Sprintf("MX %s: STARTTLS with a valid certificate, policy %s (id %s)", h.Name, r.Policy.Mode, r.ID)
		fix := ""
		if r.Policy.Mode == mtasts.Testing {
			st, fix = Warn, "all MX hosts pass: set mode: enforce and change the TXT record's id"
		}
		out = append(out, Finding{Check: CheckMTASTS, Status: st, Detail: detail, Fix: fix})
	}
	return out
}

func daneFindings(ctx context.Context, cfg *config.Config, res *resolver.Resolver, route resolver.Route) []Finding {
	if !tlspolicy.TrustAD(cfg.Delivery.DANE, res.Server()) {
		return []Finding{{Check: CheckDANE, Status: Warn,
			Detail: "cannot check: the resolver " + res.Server() + " is not trusted to validate DNSSEC (delivery.dane: " + cfg.Delivery.DANE + ")",
			Fix:    "run a local validating resolver (unbound) and set resolver: 127.0.0.1:53"}}
	}
	if !route.Secure {
		return []Finding{{Check: CheckDANE, Status: Warn,
			Detail: "the MX records of " + route.Domain + " are not DNSSEC-signed (no AD bit): DANE cannot apply",
			Fix:    "sign the zone with DNSSEC, then publish TLSA records for each MX host"}}
	}
	p, err := tlspolicy.New(tlspolicy.Options{Resolver: res, DANE: true, Port: cfg.Delivery.Port})
	if err != nil {
		return []Finding{{Check: CheckDANE, Status: Warn, Detail: err.Error()}}
	}
	plan := p.Plan(ctx, route)
	var out []Finding
	for i, h := range plan.Hosts {
		tlsa := fmt.Sprintf("_%d._tcp.%s", cfg.Delivery.Port, h.Name)
		switch {
		case h.Refused != nil:
			out = append(out, Finding{Check: CheckDANE, Status: Fail, Detail: h.Refused.Error(),
				Fix: "fix the DNSSEC chain of " + tlsa + ": senders defer all mail meanwhile"})
		case h.Security == nil && !route.MX[i].Secure:
			out = append(out, Finding{Check: CheckDANE, Status: Warn,
				Detail: "the addresses of MX " + h.Name + " are not DNSSEC-signed: DANE cannot apply", Fix: "sign the zone of " + h.Name})
		case h.Security == nil:
			out = append(out, Finding{Check: CheckDANE, Status: Warn,
				Detail: "MX " + h.Name + " publishes no TLSA record", Fix: "publish " + tlsa + ". IN TLSA 3 1 1 <SHA-256 of the server's public key>"})
		case h.Security.Mode == delivery.ProtEncrypt:
			out = append(out, Finding{Check: CheckDANE, Status: Warn,
				Detail: "MX " + h.Name + " publishes TLSA records but none usable for SMTP (only usages 2 and 3 are)", Fix: "publish " + tlsa + ". IN TLSA 3 1 1 <SHA-256 of the server's public key>"})
		default:
			if err := probe(ctx, cfg, route.MX[i], h.Security); err != nil {
				out = append(out, Finding{Check: CheckDANE, Status: Fail,
					Detail: fmt.Sprintf("MX %s does not match its TLSA records: %v (senders defer all mail)", h.Name, err),
					Fix:    "publish TLSA records for the certificate the server presents (or present the one they name)"})
				continue
			}
			out = append(out, Finding{Check: CheckDANE, Status: OK, Detail: "MX " + h.Name + ": DANE authenticated (TLSA " + tlsa + ")"})
		}
	}
	return out
}

// memState is an in-memory mtasts.Store for the doctor's one-off lookups.
type memState struct {
	mu sync.Mutex // guards m
	m  map[string][]byte
}

func (s *memState) State(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[key]; ok {
		return v, nil
	}
	return nil, queue.ErrNotFound
}

func (s *memState) PutState(_ context.Context, key string, val []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	if val == nil {
		delete(s.m, key)
		return nil
	}
	s.m[key] = val
	return nil
}

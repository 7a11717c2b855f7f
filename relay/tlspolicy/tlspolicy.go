package tlspolicy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"facteur/relay/clock"
	"facteur/relay/dane"
	"facteur/relay/delivery"
	"facteur/relay/mtasts"
	"facteur/relay/resolver"
)

// DANE settings (config delivery.dane).
const (
	DANEAuto = "auto" // trust the AD bit only from a resolver on loopback
	DANEOn   = "on"   // trust the AD bit wherever the resolver is
	DANEOff  = "off"
)

// TrustAD says whether DANE may rely on the AD bit of answers from server
// ("host:port"): always with "on", never with "off", and with "auto" only
// when the resolver is on loopback, where nobody on the path can set the
// bit (Postfix and mox require a local validating resolver).
func TrustAD(setting, server string) bool {
	switch setting {
	case DANEOn:
		return true
	case DANEOff:
		return false
	}
	host, _, err := net.SplitHostPort(server)
	if err != nil {
		host = server
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Options configure a Policy.
type Options struct {
	// Resolver looks up TLSA records; required when DANE is set.
	Resolver *resolver.Resolver
	// DANE trusts the resolver's AD bit (TrustAD) and looks up TLSA.
	DANE bool
	// MTASTS finds policies; nil when MTA-STS is off.
	MTASTS *mtasts.Source
	// Port is the SMTP port connected to (delivery.port), whose TLSA
	// records are looked up: _PORT._tcp.HOST; default 25.
	Port int
	// Clock is the time of DANE-TA certificate validity; default clock.Real.
	Clock clock.Clock
}

// Policy makes per-domain plans. It is safe for concurrent use.
type Policy struct{ opts Options }

// New returns a Policy.
func New(opts Options) (*Policy, error) {
	if opts.DANE && opts.Resolver == nil {
		return nil, errors.New("tlspolicy: DANE needs a resolver")
	}
	if opts.Port == 0 {
		opts.Port = 25
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	return &Policy{opts: opts}, nil
}

// Host is the decision for one MX host.
type Host struct {
	Name string
	// Security is what the connection must reach; nil leaves the
	// relay's default (opportunistic STARTTLS).
	Security *delivery.Security
	// Refused, when not nil, says why this host must not be tried at all
	// (not in an enforced MTA-STS policy, a failed TLSA lookup): the
	// recipients are deferred with 4.7.5 if no other host takes them.
	Refused *Refusal
}

// Plan is the decision for one domain's route.
type Plan struct {
	Hosts []Host // in the route's order
	// STS is what the MTA-STS lookup found (zero when not asked).
	STS mtasts.Result
}

// Refusal is a TLS policy that forbids a host or a session: which
// protection demanded it, and why. The scheduler defers with 4.7.5.
type Refusal struct {
	Mode string     // delivery.ProtDANE, delivery.ProtMTASTS, ...
	Host string     // the MX host
	IP   netip.Addr // the address whose session was refused; invalid when the host was not tried
	Err  error
}

func (r *Refusal) Error() string {
	where := r.Host
	if r.IP.IsValid() {
		where += "[" + r.IP.String() + "]"
	}
	msg := r.Err.Error()
	var de *delivery.Error
	if errors.As(r.Err, &de) {
		msg = string(de.Phase) + ": " + de.Err.Error() // the host is said already
	}
	return fmt.Sprintf("TLS policy %s for %s: %s", r.Mode, where, msg)
}

func (r *Refusal) Unwrap() error { return r.Err }

// Plan decides for each host of route (a domain's MX route).
func (p *Policy) Plan(ctx context.Context, route resolver.Route) Plan {
	plan := Plan{Hosts: make([]Host, len(route.MX))}
	needSTS := false
	weak := make([]bool, len(route.MX)) // TLSA present, none usable: encrypt at least
	for i, h := range route.MX {
		plan.Hosts[i].Name = h.Name
		if !p.opts.DANE || !route.Secure || !h.Secure {
			needSTS = true
			continue
		}
		sec, weakTLSA, err := p.dane(ctx, h.Name)
		switch {
		case err != nil:
			plan.Hosts[i].Refused = &Refusal{Mode: delivery.ProtDANE, Host: h.Name, Err: err}
		case sec != nil:
			plan.Hosts[i].Security = sec
		default:
			weak[i] = weakTLSA
			needSTS = true
		}
	}
	var sts *mtasts.Policy
	if needSTS && p.opts.MTASTS != nil {
		plan.STS = p.opts.MTASTS.Get(ctx, route.Domain)
		sts = plan.STS.Policy
	}
	for i := range plan.Hosts {
		h := &plan.Hosts[i]
		if h.Security != nil || h.Refused != nil {
			continue // DANE decided
		}
		switch {
		case sts != nil && sts.Mode == mtasts.Enforce:
			if !sts.Match(h.Name) {
				h.Refused = &Refusal{Mode: delivery.ProtMTASTS, Host: h.Name,
					Err: fmt.Errorf("MX host not in the domain's policy (mx: %s)", strings.Join(sts.MX, ", "))}
				continue
			}
			h.Security = &delivery.Security{Mode: delivery.ProtMTASTS}
		case weak[i]:
			// RFC 7672 §2.2: TLSA records exist but none is usable: TLS
			// is still mandatory, without authentication.
			h.Security = &delivery.Security{Mode: delivery.ProtEncrypt}
		case sts != nil && sts.Mode == mtasts.Testing:
			note := ""
			if !sts.Match(h.Name) {
				note = "MX host not in the policy (mx: " + strings.Join(sts.MX, ", ") + ")"
			}
			h.Security = &delivery.Security{Mode: delivery.ProtOpportunistic, Testing: true, TestingNote: note}
		}
	}
	return plan
}

// dane looks up the TLSA records of host and returns the Security they
// demand: DANE with usable records; nil with weak=true when records exist
// but none is usable; nil, false when there are none (or they are not
// authenticated). An error means the lookup failed: the host is refused.
func (p *Policy) dane(ctx context.Context, host string) (sec *delivery.Security, weak bool, err error) {
	t, err := p.opts.Resolver.LookupTLSA(ctx, p.opts.Port, host)
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("TLSA lookup of a signed host failed: %w", err)
	}
	if !t.Secure || len(t.Records) == 0 {
		return nil, false, nil
	}
	usable := dane.Usable(t.Records)
	if len(usable) == 0 {
		return nil, true, nil
	}
	clk := p.opts.Clock
	return &delivery.Security{
		Mode: delivery.ProtDANE,
		VerifyPeer: func(chain []*x509.Certificate) error {
			return dane.Verify(usable, host, chain, clk.Now())
		},
	}, false, nil
}

// Pin is the Security of a routes entry's tls pin ("none", "may",
// "encrypt", "verify"); nil for "" (no pin).
func Pin(level string) *delivery.Security {
	switch level {
	case "":
		return nil
	case "may":
		return &delivery.Security{Mode: delivery.ProtOpportunistic}
	case "none":
		return &delivery.Security{Mode: delivery.ProtNone}
	case "encrypt":
		return &delivery.Security{Mode: delivery.ProtEncrypt}
	case "verify":
		return &delivery.Security{Mode: delivery.ProtVerify}
	}
	return nil
}

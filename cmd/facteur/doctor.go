package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"facteur/relay/doctor"
	"facteur/relay/resolver"
)

// facteur doctor (issue 8 §5): is DOMAIN set up for its mail from this relay
// to be delivered? Exit status: 0 when nothing fails (warnings allowed), 1
// when a check fails, 2 on a usage or config error. The checks are
// relay/doctor's; this file has the flags and prints the findings.

const doctorUsage = `usage: facteur doctor -domain D [-ip A] [-dnsbl ZONE ...] [-mx] [--json]`

// doctorZones collects repeated -dnsbl flags.
type doctorZones []string

func (z *doctorZones) String() string { return strings.Join(*z, ",") }

func (z *doctorZones) Set(v string) error {
	v = strings.Trim(strings.TrimSpace(v), ".")
	if v == "" || strings.ContainsAny(v, " \t/@") {
		return fmt.Errorf("%q is not a DNS zone", v)
	}
	*z = append(*z, v)
	return nil
}

func cmdDoctor(args []string) int {
	fs, cfgPath := newFlags("doctor")
	domain := fs.String("domain", "", "sending domain to check (required)")
	ipFlag := fs.String("ip", "", "the relay's outbound IP address (default: delivery.source_ip)")
	asJSON := fs.Bool("json", false, "print a JSON list of {check, status, detail, fix}")
	withMX := fs.Bool("mx", false, "also check MTA-STS and DANE on the domain's own MX hosts (connects to them)")
	var zones doctorZones
	fs.Var(&zones, "dnsbl", "DNS block-list zone to query, repeatable (default: "+strings.Join(doctor.DefaultDNSBL(), ", ")+")")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return 2
	}
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(*domain), "."))
	switch {
	case len(pos) > 0:
		fmt.Fprintf(os.Stderr, "facteur doctor: unexpected argument %q\n%s\n", pos[0], doctorUsage)
		return 2
	case d == "":
		fmt.Fprintf(os.Stderr, "facteur doctor: -domain is required\n%s\n", doctorUsage)
		return 2
	case !strings.Contains(d, ".") || strings.ContainsAny(d, " \t@/\\\"") || strings.Contains(d, ".."):
		fmt.Fprintf(os.Stderr, "facteur doctor: -domain %q is not a domain name\n", *domain)
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		failErr(err)
		return 2
	}
	var ip netip.Addr
	if src := *ipFlag; src != "" {
		if ip, err = netip.ParseAddr(src); err != nil || ip.Zone() != "" {
			fmt.Fprintf(os.Stderr, "facteur doctor: -ip %q is not an IP address\n", src)
			return 2
		}
	}
	// Both families whatever delivery.ip_version says: the doctor looks at
	// the records themselves, not at a route.
	res, err := resolver.New(resolver.Options{Server: string(cfg.Resolver), IPVersion: resolver.IPAny})
	if err != nil {
		failErr(err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Every lookup has the resolver's own timeout; this bounds the whole
	// run against a resolver that answers slowly to each of many queries.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	opts := doctor.FromConfig(cfg, d, ip)
	if len(zones) > 0 {
		opts.DNSBL = zones
	}
	if *withMX {
		opts.MX = func(ctx context.Context, domain string) []doctor.Finding {
			return doctor.MXFindings(ctx, cfg, res, domain)
		}
	}
	findings := doctor.Run(ctx, res, opts)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(findings); err != nil {
			return fail("%v", err)
		}
	} else if err := doctor.WriteText(os.Stdout, findings); err != nil {
		return fail("%v", err)
	}
	if doctor.Failed(findings) {
		return 1
	}
	return 0
}

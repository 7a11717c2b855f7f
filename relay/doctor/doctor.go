package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"facteur/relay/config"
	"facteur/relay/pool"
)

// Status is a check's verdict. Its strings are the JSON contract.
type Status string

const (
	// OK: nothing to do.
	OK Status = "ok"
	// Warn: the check could not be made, or something is worth knowing
	// without being wrong (no DKIM key configured, p=none).
	Warn Status = "warn"
	// Fail: a receiver will hold this against the domain's mail.
	Fail Status = "fail"
)

// Check names, the "check" field of a Finding.
const (
	CheckSPF   = "spf"
	CheckDKIM  = "dkim"
	CheckDMARC = "dmarc"
	CheckPTR   = "ptr"
	CheckDNSBL = "dnsbl"
	// CheckHostname: the relay's own hostname (EHLO, Received, Message-ID).
	CheckHostname = "hostname"
	// With -mx: the domain's own MX hosts as a sender sees them (issue 15).
	CheckMTASTS = "mta-sts"
	CheckDANE   = "dane"
)

// Finding is the outcome of one check.
type Finding struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Detail says what was found and why it matters.
	Detail string `json:"detail"`
	// Fix is what to do: a zone-file line to publish, or an action. Empty
	// when there is nothing to do.
	Fix string `json:"fix"`
}

// Options say what to check.
type Options struct {
	// Domain is the sending domain (MAIL FROM and From:).
	Domain string
	// IP is the relay's outbound address; the zero Addr means unknown, and
	// the checks that need it say so.
	IP netip.Addr
	// Hostname is the relay's EHLO name (config `hostname`), which the PTR
	// should name.
	Hostname string
	// DKIM is the configured signing keys (config `dkim`); those signing
	// for Domain are checked.
	DKIM []config.DKIMKey
	// DNSBL is the block-list zones to query; nil means DefaultDNSBL().
	DNSBL []string
	// MX, when set (doctor -mx), checks the MTA-STS and DANE protection of
	// the domain's own MX hosts; its findings come last.
	MX func(ctx context.Context, domain string) []Finding
	// Sources are the pools' outbound IPs (issue 17): each gets its own
	// PTR check against its own EHLO name, after the relay's.
	Sources []Source
}

// FromConfig returns the options that check domain as the relay of cfg
// sends it: its hostname and DKIM keys, the outbound IP ip (when valid),
// else delivery.source_ip, else, with pools, the first pool's first
// address; without ip, the PTR checks also cover every pool's addresses.
func FromConfig(cfg *config.Config, domain string, ip netip.Addr) Options {
	opts := Options{Domain: domain, IP: ip, Hostname: cfg.Hostname, DKIM: cfg.DKIM}
	given := ip.IsValid()
	if !given && cfg.Delivery.SourceIP != "" {
		opts.IP, _ = netip.ParseAddr(cfg.Delivery.SourceIP) // Validate checked it
	}
	if ps := pool.New(cfg); ps != nil && !given {
		for _, p := range ps.Pools() {
			for _, x := range p.IPs {
				opts.Sources = append(opts.Sources, Source{Addr: x.Addr, EHLO: x.EHLO, Pool: p.Name})
			}
		}
		if !opts.IP.IsValid() {
			// SPF and the block lists look at one address: the first
			// pool's first, as the PTR checks look at each.
			opts.IP = opts.Sources[0].Addr
		}
	}
	return opts
}

// Source is one outbound IP of a pool and the EHLO name it gives ("" the
// hostname).
type Source struct {
	Addr netip.Addr
	EHLO string
	Pool string
}

// DefaultDNSBL is the block lists checked when Options.DNSBL is nil: the
// ones the big receivers and most spam filters consult.
func DefaultDNSBL() []string {
	return []string{"zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org"}
}

// Run makes every check and returns the findings in report order: SPF,
// DKIM (one per key), DMARC, PTR, then one per block list.
func Run(ctx context.Context, dns DNS, o Options) []Finding {
	o.Domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(o.Domain), "."))
	o.IP = o.IP.Unmap()
	var out []Finding
	out = append(out, checkHostname(o.Hostname))
	out = append(out, checkSPF(ctx, dns, o))
	out = append(out, checkDKIM(ctx, dns, o)...)
	out = append(out, checkDMARC(ctx, dns, o))
	// The relay's address is checked against hostname unless it is a pool
	// IP, checked against its own EHLO name below.
	if !slices.ContainsFunc(o.Sources, func(s Source) bool { return s.Addr.Unmap() == o.IP }) {
		out = append(out, checkPTR(ctx, dns, o))
	}
	for _, src := range o.Sources {
		so := o
		so.IP = src.Addr.Unmap()
		if src.EHLO != "" {
			so.Hostname = src.EHLO
		}
		f := checkPTR(ctx, dns, so)
		f.Detail = fmt.Sprintf("pool %s: %s", src.Pool, f.Detail)
		if src.EHLO != "" {
			f.Fix = strings.ReplaceAll(f.Fix, "set hostname: ", "set this IP's ehlo: ")
		}
		out = append(out, f)
	}
	out = append(out, checkDNSBLs(ctx, dns, o)...)
	if o.MX != nil {
		out = append(out, o.MX(ctx, o.Domain)...)
	}
	return out
}

// Failed reports whether any finding is a failure: the command's exit
// status.
func Failed(fs []Finding) bool {
	for _, f := range fs {
		if f.Status == Fail {
			return true
		}
	}
	return false
}

// checkDNSBLs queries the zones concurrently: a dead list costs one
// resolver timeout, not one per zone.
func checkDNSBLs(ctx context.Context, dns DNS, o Options) []Finding {
	zones := o.DNSBL
	if zones == nil {
		zones = DefaultDNSBL()
	}
	out := make([]Finding, len(zones))
	var wg sync.WaitGroup
	for i, z := range zones {
		wg.Go(func() { out[i] = checkDNSBL(ctx, dns, o.IP, z) })
	}
	wg.Wait()
	return out
}

// txtRecord is the zone-file line publishing value at owner, split into
// 255-byte character-strings (RFC 1035 §3.3.14; RFC 7208 §3.3 and RFC 6376
// §3.6.2.2 concatenate them).
func txtRecord(owner, value string) string {
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(owner, "."))
	b.WriteString(". IN TXT")
	for first := true; first || value != ""; first = false {
		n := min(len(value), 255)
		b.WriteString(` "`)
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(value[:n]))
		b.WriteString(`"`)
		value = value[n:]
	}
	return b.String()
}

// noIP explains a check skipped for want of the outbound address.
func noIP(check string) Finding {
	return Finding{
		Check:  check,
		Status: Warn,
		Detail: "cannot check: the relay's outbound IP address is unknown",
		Fix:    "give -ip ADDRESS, or set delivery.source_ip in the config",
	}
}

// ipMechanism is the SPF term listing ip alone.
func ipMechanism(ip netip.Addr) string {
	if ip.Is4() {
		return "ip4:" + ip.String()
	}
	return "ip6:" + ip.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// checkHostname: the EHLO name must be a fully qualified domain name (RFC
// 5321 §4.1.1.1); receivers refuse or score a bare "vm" (Postfix's
// reject_non_fqdn_helo_hostname), and root@vm cannot be answered.
func checkHostname(h string) Finding {
	h = strings.TrimSuffix(h, ".")
	if !FullyQualified(h) {
		return Finding{Check: CheckHostname, Status: Fail,
			Detail: fmt.Sprintf("hostname %q is not a fully qualified domain name: it is the EHLO name receivers check and the domain of Message-ID", h),
			Fix:    "set hostname: web1.example.com in the config (a name whose A record is this server and whose IP's PTR gives it back)"}
	}
	return Finding{Check: CheckHostname, Status: OK, Detail: fmt.Sprintf("hostname %s is fully qualified", h)}
}

// FullyQualified reports whether h is a domain name of at least two labels,
// none of them empty, and not localhost.
func FullyQualified(h string) bool {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if !strings.Contains(h, ".") || strings.Contains(h, "..") || strings.HasPrefix(h, ".") || strings.HasSuffix(h, ".localhost") || strings.HasPrefix(h, "localhost.") {
		return false
	}
	return !strings.ContainsAny(h, " \t@/")
}

package config

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v4"

	"facteur/policy"
)

// Duration is a time.Duration written as the policy writes durations
// ("30s", "4h", "5d", "1d12h"): one notation in every file and output.
type Duration time.Duration

// ParseDuration and FormatDuration are the policy's (days allowed).
var (
	ParseDuration  = policy.ParseDuration
	FormatDuration = policy.FormatDuration
)

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return FormatDuration(time.Duration(d)), nil }
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(FormatDuration(time.Duration(d))), nil
}

// Size is a byte count written as a number or with a unit: "512MiB", "10MB", "1G".
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"TB", 1000 * 1000 * 1000 * 1000},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
}

// ParseSize parses "10240000", "512MiB", "1.5GiB".
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	num := s
	for _, u := range sizeUnits {
		// Units are case-insensitive: 10mb is 10MB (issue 13 §9).
		if len(s) >= len(u.suffix) && strings.EqualFold(s[len(s)-len(u.suffix):], u.suffix) {
			mult = u.mult
			num = strings.TrimSpace(s[:len(s)-len(u.suffix)])
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	// NaN compares false with everything and 1e30 overflows int64: both
	// would convert to an arbitrary size, so only a finite product that
	// fits is a size.
	v := f * float64(mult)
	if err != nil || math.IsNaN(v) || v < 0 || v >= math.MaxInt64 {
		return 0, fmt.Errorf("bad size %q (want bytes, or e.g. 512MiB)", s)
	}
	return int64(v), nil
}

func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*z = Size(v)
	return nil
}

// Rate is a rate written as policy writes it ("100/h", "1/10s"); the zero
// value means no limit.
type Rate struct{ policy.Rate }

func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	if n.Value == "" || n.Value == "unlimited" {
		*r = Rate{}
		return nil
	}
	v, err := policy.ParseRate(n.Value)
	if err != nil {
		return err
	}
	r.Rate = v
	return nil
}

func (r Rate) MarshalYAML() (any, error)    { return r.String(), nil }
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

func (r Rate) String() string {
	if r.N == 0 {
		return ""
	}
	return policy.FormatRate(r.Rate)
}

// Prefix is a CIDR; a bare address means the host alone.
type Prefix struct{ netip.Prefix }

func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad network %q (want CIDR such as 127.0.0.0/8)", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad network %q (want CIDR such as 127.0.0.0/8)", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParsePrefix(n.Value)
	if err != nil {
		return err
	}
	p.Prefix = v
	return nil
}

func (p Prefix) MarshalYAML() (any, error) { return p.String(), nil }

// HostPort is a "host:port" address.
type HostPort string

func (h *HostPort) UnmarshalYAML(n *yaml.Node) error {
	if n.Value == "" {
		*h = "" // unset
		return nil
	}
	if err := checkHostPort(n.Value); err != nil {
		return err
	}
	*h = HostPort(n.Value)
	return nil
}

func checkHostPort(s string) error {
	host, port, err := splitHostPort(s)
	if err != nil {
		return fmt.Errorf("bad address %q (want host:port)", s)
	}
	_ = host
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port in %q", s)
	}
	return nil
}

func splitHostPort(s string) (string, string, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", fmt.Errorf("missing port")
	}
	host, port := s[:i], s[i+1:]
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return host, port, nil
}

// Route is a routes entry (Postfix's transport_maps and smtp_tls_policy_maps
// in one): where a domain's mail goes, "host:port", "hold" or "discard"
// ("" for its MX hosts), and the TLS level pinned for it, "none", "may",
// "encrypt" or "verify" ("" for MTA-STS and DANE as usual). It is written as
// a bare string (example.com: "host:port") or as a mapping
// (example.com: {to: "host:port", tls: verify}, or {tls: may} alone).
type Route struct {
	To  string
	TLS string
}

// UnmarshalYAML reads the two forms. The mapping is read key by key, not
// with node.Decode, so that an unknown key is still refused (go-yaml issue
// 460, STYLE.md §4).
func (r *Route) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*r = Route{To: n.Value}
		return nil
	case yaml.MappingNode:
		*r = Route{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("%s: want a string", k.Value)
			}
			switch k.Value {
			case "to":
				r.To = v.Value
			case "tls":
				r.TLS = v.Value
			default:
				return fmt.Errorf("unknown key %q in a route (want to, tls)", k.Value)
			}
		}
		return nil
	}
	return fmt.Errorf("want host:port, hold, discard or {to, tls}")
}

// MarshalYAML writes the bare form when no TLS level is pinned.
func (r Route) MarshalYAML() (any, error) {
	if r.TLS == "" {
		return r.To, nil
	}
	m := map[string]string{"tls": r.TLS}
	if r.To != "" {
		m["to"] = r.To
	}
	return m, nil
}

// MarshalJSON is MarshalYAML's form in JSON.
func (r Route) MarshalJSON() ([]byte, error) {
	v, _ := r.MarshalYAML()
	return json.Marshal(v)
}

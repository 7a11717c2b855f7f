package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v4"

	"facteur/strictyaml"
)

// Pool is a set of outbound IPs mail of some senders leaves from (issue 17):
// `pools: {NAME: {ips: [ADDR | {addr, ehlo, warmup}], overflow: wait|warm}}`.
type Pool struct {
	IPs []PoolIP `yaml:"ips" json:"ips"`
	// Overflow is what happens to mail over a warming IP's daily cap: wait
	// (the default) keeps it for the next UTC day, warm sends it from a warm
	// IP of the pool when there is one.
	Overflow string `yaml:"overflow" json:"overflow"`
}

// Pool overflow modes.
const (
	OverflowWait = "wait"
	OverflowWarm = "warm"
)

// PoolIP is one outbound address of a pool: written as a bare address, or
// as {addr, ehlo, warmup} when it has its own EHLO name (its PTR) or is new.
type PoolIP struct {
	Addr string `json:"addr"`
	// EHLO is the name given in EHLO from this address; "" is hostname.
	EHLO   string  `json:"ehlo,omitempty"`
	Warmup *Warmup `json:"warmup,omitempty"`
}

// Warmup is a new IP's ramp: schedule[d] messages per provider on the d-th
// UTC day since Start; Providers overrides the schedule per provider. Past
// the end of its schedule the IP is warm.
type Warmup struct {
	Start     time.Time        `json:"start"`
	Schedule  []int            `json:"schedule"`
	Providers map[string][]int `json:"providers,omitempty"`
}

// PoolBy maps senders to pools: the envelope sender's domain (after
// rewriting) first, then the submitting local user, then Default.
type PoolBy struct {
	SenderDomain map[string]string `yaml:"sender_domain" json:"sender_domain"`
	User         map[string]string `yaml:"user" json:"user"`
	Default      string            `yaml:"default" json:"default"`
}

// UnmarshalYAML reads the two forms of an IP, key by key so that an unknown
// key is refused (go-yaml issue 460).
func (p *PoolIP) UnmarshalYAML(n *yaml.Node) error {
	*p = PoolIP{}
	switch n.Kind {
	case yaml.ScalarNode:
		p.Addr = n.Value
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch k.Value {
			case "addr", "ehlo":
				if v.Kind != yaml.ScalarNode {
					return fmt.Errorf("%s: want a string", k.Value)
				}
				if k.Value == "addr" {
					p.Addr = v.Value
				} else {
					p.EHLO = v.Value
				}
			case "warmup":
				w, err := parseWarmup(v)
				if err != nil {
					return fmt.Errorf("warmup: %w", err)
				}
				p.Warmup = w
			default:
				return fmt.Errorf("unknown key %q in a pool IP (want addr, ehlo, warmup)", k.Value)
			}
		}
		return nil
	}
	return fmt.Errorf("want an address or {addr, ehlo, warmup}")
}

func parseWarmup(n *yaml.Node) (*Warmup, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("want {start, schedule, providers}")
	}
	w := &Warmup{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "start":
			t, err := time.Parse(time.DateOnly, v.Value)
			if err != nil {
				return nil, fmt.Errorf("start: want a date YYYY-MM-DD, got %q", v.Value)
			}
			w.Start = t
		case "schedule":
			s, err := parseSchedule(v)
			if err != nil {
				return nil, fmt.Errorf("schedule: %w", err)
			}
			w.Schedule = s
		case "providers":
			if v.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("providers: want {NAME: [counts]}")
			}
			w.Providers = map[string][]int{}
			for j := 0; j+1 < len(v.Content); j += 2 {
				s, err := parseSchedule(v.Content[j+1])
				if err != nil {
					return nil, fmt.Errorf("providers.%s: %w", v.Content[j].Value, err)
				}
				w.Providers[v.Content[j].Value] = s
			}
		default:
			return nil, fmt.Errorf("unknown key %q (want start, schedule, providers)", k.Value)
		}
	}
	if w.Start.IsZero() {
		return nil, fmt.Errorf("start is missing")
	}
	if len(w.Schedule) == 0 {
		return nil, fmt.Errorf("schedule is missing")
	}
	return w, nil
}

func parseSchedule(n *yaml.Node) ([]int, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return nil, fmt.Errorf("want a list of daily message counts")
	}
	var out []int
	for _, c := range n.Content {
		v, err := strconv.Atoi(strings.TrimSpace(c.Value))
		if err != nil || v < 0 {
			return nil, fmt.Errorf("want a non-negative count, got %q", c.Value)
		}
		out = append(out, v)
	}
	return out, nil
}

// MarshalYAML writes the bare form when the IP has nothing else.
func (p PoolIP) MarshalYAML() (any, error) {
	if p.EHLO == "" && p.Warmup == nil {
		return p.Addr, nil
	}
	m := map[string]any{"addr": p.Addr}
	if p.EHLO != "" {
		m["ehlo"] = p.EHLO
	}
	if w := p.Warmup; w != nil {
		wm := map[string]any{"start": w.Start.Format(time.DateOnly), "schedule": w.Schedule}
		if len(w.Providers) > 0 {
			wm["providers"] = w.Providers
		}
		m["warmup"] = wm
	}
	return m, nil
}

// MarshalJSON keeps JSON's form the same as YAML's.
func (p PoolIP) MarshalJSON() ([]byte, error) {
	v, _ := p.MarshalYAML()
	return json.Marshal(v)
}

// validatePools checks pools and pool_by; bad reports each problem.
func (c *Config) validatePools(bad func(key, format string, args ...any)) {
	owner := map[netip.Addr]string{}
	for _, name := range slices.Sorted(maps.Keys(c.Pools)) {
		p := c.Pools[name]
		key := "pools." + name
		if len(p.IPs) == 0 {
			bad(key+".ips", "a pool needs at least one address")
		}
		switch p.Overflow {
		case "", OverflowWait, OverflowWarm:
		default:
			bad(key+".overflow", "want wait or warm, got %q", p.Overflow)
		}
		for i, ip := range p.IPs {
			k := fmt.Sprintf("%s.ips[%d]", key, i)
			a, err := netip.ParseAddr(ip.Addr)
			if err != nil {
				bad(k, "bad address %q", ip.Addr)
				continue
			}
			if other, ok := owner[a]; ok {
				bad(k, "%s is already in pool %s: an IP belongs to one pool, its shaping and warm-up are its own", a, other)
			}
			owner[a] = name
			if ip.EHLO != "" && !plausibleHost(ip.EHLO) {
				bad(k+".ehlo", "bad host name %q", ip.EHLO)
			}
		}
	}
	check := func(key, pool string) {
		if _, ok := c.Pools[pool]; !ok {
			bad(key, "no pool named %q", pool)
		}
	}
	for d, p := range c.PoolBy.SenderDomain {
		check("pool_by.sender_domain."+d, p)
	}
	for u, p := range c.PoolBy.User {
		check("pool_by.user."+u, p)
	}
	if c.PoolBy.Default != "" {
		check("pool_by.default", c.PoolBy.Default)
	}
	if len(c.Pools) > 0 && c.Delivery.SourceIP != "" && c.PoolBy.Default == "" {
		// Both would say where unmapped mail goes: make it one answer.
		bad("delivery.source_ip", "with pools, name the default pool in pool_by.default instead")
	}
}

func plausibleHost(s string) bool {
	return s != "" && !strings.ContainsAny(s, " \t\r\n@/") && !strings.HasPrefix(s, ".") && !strings.HasSuffix(s, ".")
}

// PoolFor returns the pool of a message: its sender's domain first (the
// envelope sender after rewriting), then its local user, then
// pool_by.default; "" when mail of this sender uses delivery.source_ip.
func (c *Config) PoolFor(senderDomain, user string) string {
	if p, ok := c.PoolBy.SenderDomain[strings.ToLower(senderDomain)]; ok {
		return p
	}
	if user != "" {
		if p, ok := c.PoolBy.User[user]; ok {
			return p
		}
	}
	return c.PoolBy.Default
}

// CheckBind tries to bind each outbound address of the config (pools and
// delivery.source_ip) on this host, and returns one error per address
// that cannot be (`config check` refuses them unless --no-bind-check).
func (c *Config) CheckBind(bind func(netip.Addr) error) error {
	var errs strictyaml.Errors
	try := func(key, s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return // Validate reports it
		}
		if err := bind(a); err != nil {
			errs = append(errs, c.errorf(key, "%s is not an address of this host (%v); use --no-bind-check to skip this check", a, err))
		}
	}
	if c.Delivery.SourceIP != "" {
		try("delivery.source_ip", c.Delivery.SourceIP)
	}
	for _, name := range slices.Sorted(maps.Keys(c.Pools)) {
		for i, ip := range c.Pools[name].IPs {
			try(fmt.Sprintf("pools.%s.ips[%d]", name, i), ip.Addr)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

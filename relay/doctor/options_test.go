package doctor

import (
	"net/netip"
	"slices"
	"testing"

	"facteur/relay/config"
)

// FromConfig picks the address the checks look at: -ip, else
// delivery.source_ip, else the first pool's first; the pools' addresses get
// their own PTR checks unless -ip named one.
func TestFromConfig(t *testing.T) {
	const base = "hostname: relay.example.com\n"
	pools := "pools: {shop: {ips: [127.0.0.3, {addr: 127.0.0.4, ehlo: out4.example.com}]}}\npool_by: {default: shop}\n"
	for _, tc := range []struct {
		name, yaml, ip string
		wantIP         string
		wantSources    []Source
	}{
		{"nothing known", "", "", "invalid IP", nil},
		{"-ip", "delivery: {source_ip: 127.0.0.2}\n", "192.0.2.1", "192.0.2.1", nil},
		{"source_ip", "delivery: {source_ip: 127.0.0.2}\n", "", "127.0.0.2", nil},
		{"pools", pools, "", "127.0.0.3", []Source{
			{Addr: netip.MustParseAddr("127.0.0.3"), Pool: "shop"},
			{Addr: netip.MustParseAddr("127.0.0.4"), EHLO: "out4.example.com", Pool: "shop"},
		}},
		{"pools and -ip", pools, "192.0.2.1", "192.0.2.1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse("f.yaml", []byte(base+tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			var ip netip.Addr
			if tc.ip != "" {
				ip = netip.MustParseAddr(tc.ip)
			}
			o := FromConfig(cfg, "example.com", ip)
			if o.Domain != "example.com" || o.Hostname != "relay.example.com" {
				t.Errorf("domain %q hostname %q", o.Domain, o.Hostname)
			}
			if o.IP.String() != tc.wantIP {
				t.Errorf("IP %s, want %s", o.IP, tc.wantIP)
			}
			if !slices.Equal(o.Sources, tc.wantSources) {
				t.Errorf("sources %v, want %v", o.Sources, tc.wantSources)
			}
		})
	}
}

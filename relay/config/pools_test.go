package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPools(t *testing.T) {
	good := `hostname: relay.example.com
pools:
  shop:
    ips:
      - 127.0.0.2
      - {addr: 127.0.0.3, ehlo: out3.example.com, warmup: {start: 2026-12-01, schedule: [20, 40], providers: {microsoft: [10]}}}
    overflow: warm
  shared: {ips: ["::1"]}
pool_by:
  sender_domain: {shop.example: shop}
  user: {www-data: shared}
  default: shared
`
	c, err := Parse("f.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	ip := c.Pools["shop"].IPs[1]
	if ip.Addr != "127.0.0.3" || ip.EHLO != "out3.example.com" || !ip.Warmup.Start.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) ||
		len(ip.Warmup.Schedule) != 2 || ip.Warmup.Providers["microsoft"][0] != 10 || c.Pools["shop"].Overflow != OverflowWarm {
		t.Fatalf("parsed %+v %+v", ip, ip.Warmup)
	}
	for _, tc := range []struct{ domain, user, want string }{
		{"shop.example", "www-data", "shop"},
		{"SHOP.example", "", "shop"},
		{"other.example", "www-data", "shared"},
		{"other.example", "bob", "shared"},
	} {
		if got := c.PoolFor(tc.domain, tc.user); got != tc.want {
			t.Errorf("PoolFor(%q, %q) = %q, want %q", tc.domain, tc.user, got, tc.want)
		}
	}

	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown ip key", "pools: {p: {ips: [{addr: 127.0.0.2, helo: x}]}}", `f.yaml:2: pools.p.ips[0]: unknown key "helo" in a pool IP`},
		{"bad overflow", "pools: {p: {ips: [127.0.0.2], overflow: spill}}", "pools.p.overflow: want wait or warm"},
		{"bad address", "pools: {p: {ips: [127.0.0.300]}}", `pools.p.ips[0]: bad address "127.0.0.300"`},
		{"two pools", "pools: {p: {ips: [127.0.0.2]}, q: {ips: [127.0.0.2]}}", "127.0.0.2 is already in pool p"},
		{"no ips", "pools: {p: {ips: []}}", "pools.p.ips: a pool needs at least one address"},
		{"no such pool", "pools: {p: {ips: [127.0.0.2]}}\npool_by: {sender_domain: {a.example: q}}", `pool_by.sender_domain.a.example: no pool named "q"`},
		{"bad start", "pools: {p: {ips: [{addr: 127.0.0.2, warmup: {start: tomorrow, schedule: [1]}}]}}", "start: want a date YYYY-MM-DD"},
		{"no schedule", "pools: {p: {ips: [{addr: 127.0.0.2, warmup: {start: 2026-12-01}}]}}", "schedule is missing"},
		{"negative", "pools: {p: {ips: [{addr: 127.0.0.2, warmup: {start: 2026-12-01, schedule: [-1]}}]}}", "want a non-negative count"},
		{"source_ip and pools", "delivery: {source_ip: 127.0.0.2}\npools: {p: {ips: [127.0.0.3]}}", "name the default pool in pool_by.default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte("hostname: relay.example.com\n"+tc.yaml+"\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCheckBind(t *testing.T) {
	c, err := Parse("f.yaml", []byte("hostname: relay.example.com\ndelivery: {source_ip: 127.0.0.2}\npool_by: {default: p}\npools: {p: {ips: [127.0.0.3, 192.0.2.1]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var tried []string
	err = c.CheckBind(func(a netip.Addr) error {
		tried = append(tried, a.String())
		if a.IsLoopback() {
			return nil
		}
		return errors.New("cannot assign requested address")
	})
	if strings.Join(tried, " ") != "127.0.0.2 127.0.0.3 192.0.2.1" {
		t.Errorf("tried %v", tried)
	}
	if err == nil || !strings.Contains(err.Error(), "pools.p.ips[1]: 192.0.2.1 is not an address of this host") || strings.Contains(err.Error(), "127.0.0.3") {
		t.Fatalf("err %v", err)
	}
}

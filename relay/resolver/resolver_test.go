package resolver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"facteur/relay/address"
	"facteur/relay/clock"
	"facteur/relay/relaytest"
)

// newClock is the cache's injected clock.
func newClock() *clock.Fake {
	return clock.NewFake(time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC))
}

// newResolver starts a DNS server with zones and a resolver pointed at it.
func newResolver(t *testing.T, zones map[string]relaytest.Zone, opts Options) (*Resolver, *relaytest.DNSServer) {
	t.Helper()
	srv := relaytest.NewDNS(t, zones)
	opts.Server = srv.Addr()
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(1, 2))
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r, srv
}

func mx(host string, pref uint16) relaytest.MX { return relaytest.MX{Host: host, Pref: pref} }

// count is how many times the server was asked query ("MX example.com.").
func count(srv *relaytest.DNSServer, query string) int {
	n := 0
	for _, q := range srv.Queries() {
		if q == query {
			n++
		}
	}
	return n
}

func hostNames(route Route) []string {
	var out []string
	for _, h := range route.MX {
		out = append(out, h.Name)
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestRoute(t *testing.T) {
	zones := map[string]relaytest.Zone{
		"pref.example":      {MX: []relaytest.MX{mx("mx30.pref.example", 30), mx("mx10.pref.example", 10), mx("mx20.pref.example", 20)}},
		"mx10.pref.example": {A: []string{"127.0.0.10"}},
		"mx20.pref.example": {A: []string{"127.0.0.20", "127.0.0.21"}},
		"mx30.pref.example": {A: []string{"127.0.0.30"}},

		"implicit.example":    {A: []string{"127.0.0.40"}, TXT: []string{"v=spf1 a -all"}},
		"null.example":        {NullMX: true},
		"gone.example":        {NXDomain: true},
		"servfail.example":    {ServFail: true},
		"refused.example":     {Refused: true},
		"noaddr.example":      {TXT: []string{"exists, but no MX and no A"}},
		"v6only.example":      {AAAA: []string{"2001:db8::6"}},
		"half.example":        {MX: []relaytest.MX{mx("missing.half.example", 5), mx("broken.half.example", 6), mx("ok.half.example", 10)}},
		"broken.half.example": {ServFail: true},
		"ok.half.example":     {A: []string{"127.0.0.50"}},
		"dead.example":        {MX: []relaytest.MX{mx("missing.dead.example", 10), mx("broken.dead.example", 20)}},
		"broken.dead.example": {ServFail: true},
		"stray.example":       {MX: []relaytest.MX{mx("mx.stray.example", 10), mx(".", 20)}},
		"mx.stray.example":    {A: []string{"127.0.0.60"}},
		"literal.example":     {MX: []relaytest.MX{mx("127.0.0.70", 10)}},
		"dup.example":         {MX: []relaytest.MX{mx("mx.dup.example", 10), mx("MX.dup.example", 20)}},
		"mx.dup.example":      {A: []string{"127.0.0.80"}},

		"alias.example":            {CNAME: "target.example"},
		"target.example":           {MX: []relaytest.MX{mx("mx-alias.example", 10)}},
		"mx-alias.example":         {CNAME: "REAL-mx.Example"},
		"real-mx.example":          {A: []string{"127.0.0.90"}},
		"dangling.example":         {CNAME: "nowhere.example"},
		"xn--bcher-kva.example":    {MX: []relaytest.MX{mx("mx.xn--bcher-kva.example", 10)}},
		"mx.xn--bcher-kva.example": {A: []string{"127.0.0.100"}},
	}
	r, _ := newResolver(t, zones, Options{IPVersion: IPv4})

	tests := []struct {
		domain   string
		hosts    []string
		addrs    [][]netip.Addr
		implicit bool
		err      error // a sentinel errors.Is must find; nil for success
		temp     bool
	}{
		{domain: "pref.example", hosts: []string{"mx10.pref.example", "mx20.pref.example", "mx30.pref.example"},
			addrs: [][]netip.Addr{addrs("127.0.0.10"), addrs("127.0.0.20", "127.0.0.21"), addrs("127.0.0.30")}},
		{domain: "PREF.Example.", hosts: []string{"mx10.pref.example", "mx20.pref.example", "mx30.pref.example"},
			addrs: [][]netip.Addr{addrs("127.0.0.10"), addrs("127.0.0.20", "127.0.0.21"), addrs("127.0.0.30")}},
		{domain: "implicit.example", hosts: []string{"implicit.example"}, addrs: [][]netip.Addr{addrs("127.0.0.40")}, implicit: true},
		{domain: "null.example", err: ErrNullMX},
		{domain: "gone.example", err: ErrNXDomain},
		{domain: "never-heard-of.example", err: ErrNXDomain},
		{domain: "servfail.example", err: ErrServFail, temp: true},
		{domain: "refused.example", err: ErrRefused, temp: true},
		{domain: "noaddr.example", err: ErrNoAddress},
		{domain: "v6only.example", err: ErrNoAddress}, // ipv4 only: as Postfix with inet_protocols = ipv4
		{domain: "half.example", hosts: []string{"ok.half.example"}, addrs: [][]netip.Addr{addrs("127.0.0.50")}},
		{domain: "dead.example", err: ErrNoMXAddress, temp: true},
		{domain: "stray.example", hosts: []string{"mx.stray.example"}, addrs: [][]netip.Addr{addrs("127.0.0.60")}},
		{domain: "literal.example", hosts: []string{"127.0.0.70"}, addrs: [][]netip.Addr{addrs("127.0.0.70")}},
		{domain: "dup.example", hosts: []string{"mx.dup.example"}, addrs: [][]netip.Addr{addrs("127.0.0.80")}},
		{domain: "alias.example", hosts: []string{"mx-alias.example"}, addrs: [][]netip.Addr{addrs("127.0.0.90")}},
		{domain: "dangling.example", err: ErrNXDomain},
		{domain: "bücher.example", hosts: []string{"mx.xn--bcher-kva.example"}, addrs: [][]netip.Addr{addrs("127.0.0.100")}},
		{domain: "BÜCHER.example", hosts: []string{"mx.xn--bcher-kva.example"}, addrs: [][]netip.Addr{addrs("127.0.0.100")}},
		{domain: "bad domain.example", err: ErrInvalidName},
		{domain: "", err: ErrInvalidName},
		{domain: "a..example", err: ErrInvalidName},
		{domain: "[127.0.0.1]", err: ErrInvalidName},
		{domain: strings.Repeat("a", 64) + ".example", err: ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			route, err := r.Route(t.Context(), tt.domain)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if Temporary(err) != tt.temp {
					t.Errorf("Temporary(%v) = %v, want %v", err, Temporary(err), tt.temp)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := hostNames(route); !slices.Equal(got, tt.hosts) {
				t.Errorf("hosts %q, want %q", got, tt.hosts)
			}
			for i, h := range route.MX {
				if i < len(tt.addrs) && !slices.Equal(h.Addrs, tt.addrs[i]) {
					t.Errorf("%s: addrs %v, want %v", h.Name, h.Addrs, tt.addrs[i])
				}
			}
			if route.Implicit != tt.implicit {
				t.Errorf("Implicit = %v, want %v", route.Implicit, tt.implicit)
			}
		})
	}
}

func TestRouteErrorIsNotPermanentForHostNXDomain(t *testing.T) {
	// Every MX host is NXDOMAIN: the domain itself exists, so the error
	// must neither look like ErrNXDomain nor be permanent.
	r, _ := newResolver(t, map[string]relaytest.Zone{
		"typo.example": {MX: []relaytest.MX{mx("mx.typo-in-mx.example", 10)}},
	}, Options{})
	_, err := r.Route(t.Context(), "typo.example")
	if !errors.Is(err, ErrNoMXAddress) || errors.Is(err, ErrNXDomain) || !Temporary(err) {
		t.Fatalf("err = %v: want temporary ErrNoMXAddress, not ErrNXDomain", err)
	}
	var de *Error
	if !errors.As(err, &de) || de.Type != "MX" || de.Name != "typo.example." {
		t.Errorf("err = %#v: want *Error for MX typo.example.", err)
	}
}

func TestRouteShufflesEqualPreferences(t *testing.T) {
	zones := map[string]relaytest.Zone{
		"eq.example": {MX: []relaytest.MX{
			mx("a.eq.example", 10), mx("b.eq.example", 10), mx("c.eq.example", 10), mx("d.eq.example", 20), mx("e.eq.example", 20),
		}},
	}
	for _, h := range []string{"a", "b", "c", "d", "e"} {
		zones[h+".eq.example"] = relaytest.Zone{A: []string{"127.0.0.1"}}
	}
	run := func(seed uint64) [][]string {
		r, _ := newResolver(t, zones, Options{Rand: rand.New(rand.NewPCG(seed, seed))})
		var orders [][]string
		for range 30 {
			route, err := r.Route(t.Context(), "eq.example")
			if err != nil {
				t.Fatal(err)
			}
			orders = append(orders, hostNames(route))
		}
		return orders
	}
	orders := run(7)
	firsts := map[string]bool{}
	for _, o := range orders {
		if len(o) != 5 {
			t.Fatalf("order %q: want 5 hosts", o)
		}
		top := slices.Sorted(slices.Values(o[:3]))
		bottom := slices.Sorted(slices.Values(o[3:]))
		if !slices.Equal(top, []string{"a.eq.example", "b.eq.example", "c.eq.example"}) ||
			!slices.Equal(bottom, []string{"d.eq.example", "e.eq.example"}) {
			t.Fatalf("order %q mixes preferences", o)
		}
		firsts[o[0]] = true
	}
	if len(firsts) != 3 {
		t.Errorf("in 30 routes only %v came first: equal preferences are not shuffled", firsts)
	}
	if again := run(7); !slices.EqualFunc(orders, again, slices.Equal) {
		t.Errorf("same seed, different orders: the shuffle does not use Options.Rand")
	}
}

func TestRouteIPVersion(t *testing.T) {
	zones := map[string]relaytest.Zone{
		"dual.example":    {MX: []relaytest.MX{mx("mx.dual.example", 10)}},
		"mx.dual.example": {A: []string{"127.0.0.1", "127.0.0.2"}, AAAA: []string{"2001:db8::1", "2001:db8::2"}},
	}
	v4 := addrs("127.0.0.1", "127.0.0.2")
	v6 := addrs("2001:db8::1", "2001:db8::2")
	tests := []struct {
		version string
		want    []netip.Addr
		asked   []string
		skipped string
	}{
		{IPv4, v4, []string{"A mx.dual.example."}, "AAAA mx.dual.example."},
		{IPv6, v6, []string{"AAAA mx.dual.example."}, "A mx.dual.example."},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			r, srv := newResolver(t, zones, Options{IPVersion: tt.version})
			route, err := r.Route(t.Context(), "dual.example")
			if err != nil {
				t.Fatal(err)
			}
			if got := route.MX[0].Addrs; !slices.Equal(got, tt.want) {
				t.Errorf("addrs %v, want %v", got, tt.want)
			}
			for _, q := range tt.asked {
				if count(srv, q) != 1 {
					t.Errorf("%q not asked once: %q", q, srv.Queries())
				}
			}
			if count(srv, tt.skipped) != 0 {
				t.Errorf("%q asked with ip_version %s", tt.skipped, tt.version)
			}
		})
	}

	t.Run(IPAny, func(t *testing.T) {
		r, _ := newResolver(t, zones, Options{})
		seen := map[netip.Addr]int{}
		for range 20 {
			route, err := r.Route(t.Context(), "dual.example")
			if err != nil {
				t.Fatal(err)
			}
			got := route.MX[0].Addrs
			if len(got) != 4 {
				t.Fatalf("addrs %v: want both families", got)
			}
			// Families alternate, and each keeps its DNS order.
			first, second := v4, v6
			if got[0].Is6() {
				first, second = v6, v4
			}
			if want := []netip.Addr{first[0], second[0], first[1], second[1]}; !slices.Equal(got, want) {
				t.Fatalf("addrs %v, want %v", got, want)
			}
			seen[got[0]]++
		}
		if len(seen) != 2 {
			t.Errorf("first address over 20 routes: %v; want each family first sometimes", seen)
		}
	})
}

func TestCacheTTL(t *testing.T) {
	clock := newClock()
	start := clock.Now()
	r, srv := newResolver(t, map[string]relaytest.Zone{
		"ttl.example":    {MX: []relaytest.MX{mx("mx.ttl.example", 10)}, TTL: 300},
		"mx.ttl.example": {A: []string{"127.0.0.1"}, TTL: 60},
	}, Options{Clock: clock, IPVersion: IPv4})

	route, err := r.Route(t.Context(), "ttl.example")
	if err != nil {
		t.Fatal(err)
	}
	if want := start.Add(60 * time.Second); !route.Expires.Equal(want) {
		t.Errorf("Expires %v, want %v (the smallest TTL used)", route.Expires, want)
	}
	check := func(step string, mx, a int) {
		t.Helper()
		if _, err := r.Route(t.Context(), "ttl.example"); err != nil {
			t.Fatal(err)
		}
		if got := count(srv, "MX ttl.example."); got != mx {
			t.Errorf("%s: %d MX queries, want %d", step, got, mx)
		}
		if got := count(srv, "A mx.ttl.example."); got != a {
			t.Errorf("%s: %d A queries, want %d", step, got, a)
		}
	}
	check("again at once", 1, 1)
	clock.Advance(59 * time.Second)
	check("at 59s", 1, 1)
	clock.Advance(time.Second)
	check("at 60s, A expired", 1, 2)
	clock.Advance(240 * time.Second)
	check("at 300s, both expired", 2, 3)
}

func TestCacheNegative(t *testing.T) {
	clock := newClock()
	r, srv := newResolver(t, map[string]relaytest.Zone{
		"gone.example":     {NXDomain: true, TTL: 30},
		"longgone.example": {NXDomain: true, TTL: 3600},
		"fail.example":     {ServFail: true},
	}, Options{Clock: clock})
	ask := func(domain string, want error) {
		t.Helper()
		if _, err := r.Route(t.Context(), domain); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", domain, err, want)
		}
	}
	ask("gone.example", ErrNXDomain)
	ask("gone.example", ErrNXDomain)
	if n := count(srv, "MX gone.example."); n != 1 {
		t.Errorf("NXDOMAIN asked %d times within its TTL, want 1", n)
	}
	clock.Advance(30 * time.Second)
	ask("gone.example", ErrNXDomain)
	if n := count(srv, "MX gone.example."); n != 2 {
		t.Errorf("NXDOMAIN asked %d times after its TTL, want 2", n)
	}

	ask("longgone.example", ErrNXDomain)
	clock.Advance(MaxNegativeTTL - time.Second)
	ask("longgone.example", ErrNXDomain)
	clock.Advance(time.Second)
	ask("longgone.example", ErrNXDomain)
	if n := count(srv, "MX longgone.example."); n != 2 {
		t.Errorf("NXDOMAIN with SOA minimum 3600 asked %d times over %v, want 2 (capped)", n, MaxNegativeTTL)
	}

	ask("fail.example", ErrServFail)
	ask("fail.example", ErrServFail)
	if n := count(srv, "MX fail.example."); n != 2 {
		t.Errorf("SERVFAIL asked %d times, want 2: failures are not cached", n)
	}
}

func TestCacheSetChangesAfterTTL(t *testing.T) {
	clock := newClock()
	r, srv := newResolver(t, map[string]relaytest.Zone{
		"move.example": {A: []string{"127.0.0.1"}, TTL: 10},
	}, Options{Clock: clock, IPVersion: IPv4})
	route, err := r.Route(t.Context(), "move.example")
	if err != nil || !route.Implicit {
		t.Fatalf("route %+v, %v", route, err)
	}
	srv.Set("move.example", relaytest.Zone{MX: []relaytest.MX{mx("mx.move.example", 10)}, TTL: 10})
	srv.Set("mx.move.example", relaytest.Zone{A: []string{"127.0.0.2"}})
	if route, _ := r.Route(t.Context(), "move.example"); !route.Implicit {
		t.Errorf("within the TTL the cached route changed: %+v", route)
	}
	clock.Advance(10 * time.Second)
	route, err = r.Route(t.Context(), "move.example")
	if err != nil || route.Implicit || route.MX[0].Name != "mx.move.example" {
		t.Errorf("after the TTL: %+v, %v; want the new MX", route, err)
	}
}

func TestTimeout(t *testing.T) {
	r, srv := newResolver(t, map[string]relaytest.Zone{
		"slow.example": {Timeout: true},
	}, Options{Timeout: 100 * time.Millisecond})
	_, err := r.Route(t.Context(), "slow.example")
	if !errors.Is(err, ErrTimeout) || !Temporary(err) {
		t.Fatalf("err = %v, want temporary ErrTimeout", err)
	}
	if n := count(srv, "MX slow.example."); n != 1 {
		t.Errorf("%d queries, want 1", n)
	}
}

func TestContextCancelled(t *testing.T) {
	r, srv := newResolver(t, map[string]relaytest.Zone{"x.example": {A: []string{"127.0.0.1"}}}, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := r.Route(ctx, "x.example")
	if !errors.Is(err, context.Canceled) || !Temporary(err) {
		t.Fatalf("err = %v, want temporary context.Canceled", err)
	}
	if n := len(srv.Queries()); n != 0 {
		t.Errorf("%d queries sent with a cancelled context", n)
	}
}

func TestTruncationFallsBackToTCP(t *testing.T) {
	var mx []relaytest.MX
	var want []string
	for i := range 60 {
		h := "exchanger-" + strings.Repeat("z", i%20) + "-" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".big.example"
		mx = append(mx, relaytest.MX{Host: h, Pref: uint16(i)})
		want = append(want, h)
	}
	zones := map[string]relaytest.Zone{"big.example": {MX: mx}}
	for _, m := range mx {
		zones[m.Host] = relaytest.Zone{A: []string{"127.0.0.1"}}
	}
	key := strings.Repeat("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 60)
	zones["sel._domainkey.big.example"] = relaytest.Zone{TXT: []string{"v=DKIM1; k=rsa; p=" + key, `second "record" \ with escapes`}}
	r, srv := newResolver(t, zones, Options{IPVersion: IPv4})

	route, err := r.Route(t.Context(), "big.example")
	if err != nil {
		t.Fatal(err)
	}
	if got := hostNames(route); !slices.Equal(got, want) {
		t.Errorf("got %d hosts, want all %d in order", len(got), len(want))
	}
	txt, err := r.LookupTXT(t.Context(), "sel._domainkey.big.example")
	if err != nil {
		t.Fatal(err)
	}
	if wantTXT := []string{"v=DKIM1; k=rsa; p=" + key, `second "record" \ with escapes`}; !slices.Equal(txt, wantTXT) {
		t.Errorf("TXT = %q,\nwant %q", txt, wantTXT)
	}
	var nets []string
	for _, q := range srv.QueryLog() {
		if q.Type == "MX" || q.Type == "TXT" {
			nets = append(nets, q.Type+"/"+q.Net)
		}
	}
	if w := []string{"MX/udp", "MX/tcp", "TXT/udp", "TXT/tcp"}; !slices.Equal(nets, w) {
		t.Errorf("transports %q, want %q", nets, w)
	}
}

func TestSingleflight(t *testing.T) {
	release := make(chan struct{})
	r, srv := newResolver(t, map[string]relaytest.Zone{
		"busy.example":    {MX: []relaytest.MX{mx("mx.busy.example", 10)}, Block: release},
		"mx.busy.example": {A: []string{"127.0.0.1"}},
	}, Options{IPVersion: IPv4})
	const callers = 8
	// While the MX answer is held, the only lookups that can reach the
	// flight are the callers' MX lookups: the first `callers` calls of the
	// hook are those.
	var joined atomic.Int32
	all := make(chan struct{})
	r.testHookFlight = func() {
		if joined.Add(1) == callers {
			close(all)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			_, err := r.Route(t.Context(), "busy.example")
			errs <- err
		})
	}
	<-all // every caller is at the flight; the answer is held
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := count(srv, "MX busy.example."); n != 1 {
		t.Errorf("%d callers sent %d MX queries, want 1", callers, n)
	}
	if n := count(srv, "A mx.busy.example."); n != 1 {
		t.Errorf("%d A queries, want 1", n)
	}
}

func TestLookups(t *testing.T) {
	r, _ := newResolver(t, map[string]relaytest.Zone{
		"example.org":            {TXT: []string{"v=spf1 ip4:192.0.2.1 -all", "google-site-verification=abc"}},
		"_dmarc.example.org":     {TXT: []string{"v=DMARC1; p=reject"}},
		"host.example.org":       {A: []string{"192.0.2.1"}, AAAA: []string{"2001:db8::1"}},
		"v4.example.org":         {A: []string{"192.0.2.4"}},
		"1.2.0.192.in-addr.arpa": {PTR: []string{"Host.Example.org."}},
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa": {PTR: []string{"host6.example.org"}},
		"fail.example.org": {ServFail: true},
		"mx.example.org":   {MX: []relaytest.MX{{Host: "B.example.org.", Pref: 20}, {Host: "a.example.org", Pref: 10}, {Host: "a.example.org", Pref: 30}}},
		"null.example.org": {NullMX: true},
	}, Options{})
	ctx := t.Context()

	// LookupMX gives the records as published: by preference, repeats
	// kept, no implicit MX, names without addresses kept.
	if mx, err := r.LookupMX(ctx, "mx.example.org"); err != nil || !slices.Equal(mx, []string{"a.example.org", "b.example.org", "a.example.org"}) {
		t.Errorf("LookupMX = %q, %v", mx, err)
	}
	if mx, err := r.LookupMX(ctx, "host.example.org"); err != nil || len(mx) != 0 {
		t.Errorf("LookupMX without MX = %q, %v; want none", mx, err)
	}
	if mx, err := r.LookupMX(ctx, "null.example.org"); err != nil || len(mx) != 0 {
		t.Errorf("LookupMX(null MX) = %q, %v; want none", mx, err)
	}
	if _, err := r.LookupMX(ctx, "nowhere.example"); !errors.Is(err, ErrNXDomain) {
		t.Errorf("LookupMX(nxdomain) err = %v, want ErrNXDomain", err)
	}

	txt, err := r.LookupTXT(ctx, "Example.ORG")
	if err != nil || !slices.Equal(txt, []string{"v=spf1 ip4:192.0.2.1 -all", "google-site-verification=abc"}) {
		t.Errorf("LookupTXT = %q, %v", txt, err)
	}
	if txt, err := r.LookupTXT(ctx, "_dmarc.example.org."); err != nil || len(txt) != 1 {
		t.Errorf("LookupTXT(_dmarc) = %q, %v", txt, err)
	}
	if txt, err := r.LookupTXT(ctx, "host.example.org"); err != nil || txt != nil {
		t.Errorf("LookupTXT without TXT = %q, %v; want nil, nil", txt, err)
	}
	if _, err := r.LookupTXT(ctx, "_dmarc.nowhere.example"); !errors.Is(err, ErrNXDomain) || Temporary(err) {
		t.Errorf("LookupTXT(nxdomain) err = %v, want permanent ErrNXDomain", err)
	}
	if _, err := r.LookupTXT(ctx, "fail.example.org"); !errors.Is(err, ErrServFail) || !Temporary(err) {
		t.Errorf("LookupTXT(servfail) err = %v, want temporary ErrServFail", err)
	}

	if a, err := r.LookupA(ctx, "host.example.org"); err != nil || !slices.Equal(a, addrs("192.0.2.1")) {
		t.Errorf("LookupA = %v, %v", a, err)
	}
	if a, err := r.LookupAAAA(ctx, "host.example.org"); err != nil || !slices.Equal(a, addrs("2001:db8::1")) {
		t.Errorf("LookupAAAA = %v, %v", a, err)
	}
	if a, err := r.LookupIP(ctx, "host.example.org"); err != nil || len(a) != 2 {
		t.Errorf("LookupIP = %v, %v", a, err)
	}
	if a, err := r.LookupIP(ctx, "v4.example.org"); err != nil || !slices.Equal(a, addrs("192.0.2.4")) {
		t.Errorf("LookupIP(v4 only) = %v, %v", a, err)
	}
	if _, err := r.LookupIP(ctx, "nowhere.example"); !errors.Is(err, ErrNXDomain) {
		t.Errorf("LookupIP(nxdomain) err = %v", err)
	}

	if p, err := r.LookupPTR(ctx, netip.MustParseAddr("192.0.2.1")); err != nil || !slices.Equal(p, []string{"host.example.org"}) {
		t.Errorf("LookupPTR = %q, %v", p, err)
	}
	if p, err := r.LookupPTR(ctx, netip.MustParseAddr("::ffff:192.0.2.1")); err != nil || !slices.Equal(p, []string{"host.example.org"}) {
		t.Errorf("LookupPTR(v4-mapped) = %q, %v", p, err)
	}
	if p, err := r.LookupPTR(ctx, netip.MustParseAddr("2001:db8::1")); err != nil || !slices.Equal(p, []string{"host6.example.org"}) {
		t.Errorf("LookupPTR(v6) = %q, %v", p, err)
	}
	if _, err := r.LookupPTR(ctx, netip.MustParseAddr("192.0.2.99")); !errors.Is(err, ErrNXDomain) {
		t.Errorf("LookupPTR without PTR err = %v, want ErrNXDomain", err)
	}
	if _, err := r.LookupPTR(ctx, netip.Addr{}); !errors.Is(err, ErrInvalidName) {
		t.Errorf("LookupPTR(zero Addr) err = %v, want ErrInvalidName", err)
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("# test\nsearch example.org\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf6 := filepath.Join(dir, "resolv6.conf")
	if err := os.WriteFile(conf6, []byte("nameserver 2001:db8::53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("search example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		opts   Options
		server string // "" when New must fail
	}{
		{"explicit server", Options{Server: "127.0.0.1:5353"}, "127.0.0.1:5353"},
		{"resolv.conf", Options{ResolvConf: conf}, "192.0.2.53:53"},
		{"resolv.conf IPv6", Options{ResolvConf: conf6}, "[2001:db8::53]:53"},
		{"resolv.conf without nameserver", Options{ResolvConf: empty}, ""},
		{"resolv.conf missing", Options{ResolvConf: filepath.Join(dir, "nope")}, ""},
		{"server without port", Options{Server: "127.0.0.1"}, ""},
		{"bad ip version", Options{Server: "127.0.0.1:53", IPVersion: "ipv5"}, ""},
		{"negative timeout", Options{Server: "127.0.0.1:53", Timeout: -time.Second}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.opts)
			if tt.server == "" {
				if err == nil {
					t.Fatalf("New(%+v) succeeded", tt.opts)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Server() != tt.server {
				t.Errorf("Server() = %q, want %q", r.Server(), tt.server)
			}
		})
	}
}

func TestTemporary(t *testing.T) {
	wrapped := func(e error) error { return &Error{Type: "MX", Name: "x.", Err: e} }
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{wrapped(ErrNXDomain), false},
		{wrapped(ErrNullMX), false},
		{wrapped(ErrNoAddress), false},
		{ErrInvalidName, false},
		{wrapped(ErrServFail), true},
		{wrapped(ErrRefused), true},
		{wrapped(ErrTimeout), true},
		{wrapped(ErrNoMXAddress), true},
		{context.Canceled, true},
		{errors.New("something unforeseen"), true},
	}
	for _, tt := range tests {
		if got := Temporary(tt.err); got != tt.want {
			t.Errorf("Temporary(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.com", "example.com."},
		{"EXAMPLE.Com.", "example.com."},
		{"bücher.example", "xn--bcher-kva.example."},
		{"xn--bcher-kva.example", "xn--bcher-kva.example."},
		{"_dmarc.Bücher.example", "_dmarc.xn--bcher-kva.example."},
		{"例え.テスト", "xn--r8jz45g.xn--zckzah."},
		{"", ""},
		{".", ""},
		{"a..b", ""},
		{"a b.example", ""},
		{"exa\x00mple.com", ""},
		{strings.Repeat("a.", 127) + "a", ""},
	}
	for _, tt := range tests {
		got, err := canonical(tt.in)
		if tt.want == "" {
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("canonical(%q) = %q, %v; want ErrInvalidName", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("canonical(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{`a\"b`, `a"b`},
		{`a\\b`, `a\b`},
		{`\065\066C`, "ABC"},
		{`\000x`, "\x00x"},
		{`\999`, "999"},
		{`trailing\`, `trailing\`},
	}
	for _, tt := range tests {
		if got := unescape(tt.in); got != tt.want {
			t.Errorf("unescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"example.com", "bücher.example", "a..b", "_dmarc.x", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := canonical(s)
		if err != nil {
			return
		}
		// Property: the result is a valid, idempotent, ASCII FQDN.
		if !address.IsASCII(got) || !strings.HasSuffix(got, ".") || checkName(display(got)) != nil {
			t.Fatalf("canonical(%q) = %q: not a valid ASCII FQDN", s, got)
		}
		if again, err := canonical(got); err != nil || again != got {
			t.Fatalf("canonical not idempotent on %q: %q, %v", got, again, err)
		}
	})
}

func TestCacheEviction(t *testing.T) {
	clock := newClock()
	r, err := New(Options{Server: "127.0.0.1:1", Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	now := clock.Now()
	// A full cache, then ten seconds later its first ten answers expire.
	for i := range maxEntries {
		r.store(cacheKey{name: fmt.Sprintf("n%d.example.", i), qtype: 1}, &answer{expires: now.Add(time.Duration(i+1) * time.Second)})
	}
	if len(r.cache) != maxEntries {
		t.Fatalf("%d entries, want %d", len(r.cache), maxEntries)
	}
	clock.Advance(10 * time.Second)
	r.store(cacheKey{name: "new.example.", qtype: 1}, &answer{expires: now.Add(time.Hour)})
	if n := len(r.cache); n > maxEntries*9/10+1 {
		t.Errorf("%d entries after eviction, want at most %d", n, maxEntries*9/10+1)
	}
	if r.cached(cacheKey{name: "new.example.", qtype: 1}) == nil {
		t.Errorf("the new answer was not stored")
	}
	// The answers expiring soonest went first.
	if r.cached(cacheKey{name: "n10.example.", qtype: 1}) != nil {
		t.Errorf("the answer expiring soonest survived")
	}
	if r.cached(cacheKey{name: fmt.Sprintf("n%d.example.", maxEntries-1), qtype: 1}) == nil {
		t.Errorf("the answer expiring last was evicted")
	}
}

// BenchmarkRouteCached is the cost of a route the cache already holds: what
// the scheduler pays per destination group in steady state.
func BenchmarkRouteCached(b *testing.B) {
	srv := relaytest.NewDNS(b, map[string]relaytest.Zone{
		"bench.example":     {MX: []relaytest.MX{mx("mx1.bench.example", 10), mx("mx2.bench.example", 10), mx("mx3.bench.example", 20)}},
		"mx1.bench.example": {A: []string{"127.0.0.1"}, AAAA: []string{"2001:db8::1"}},
		"mx2.bench.example": {A: []string{"127.0.0.2"}},
		"mx3.bench.example": {A: []string{"127.0.0.3"}},
	})
	r, err := New(Options{Server: srv.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	if _, err := r.Route(ctx, "bench.example"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Route(ctx, "bench.example"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRouteUncached is a cold route over loopback UDP: one MX and two
// address queries.
func BenchmarkRouteUncached(b *testing.B) {
	srv := relaytest.NewDNS(b, map[string]relaytest.Zone{
		"cold.example":    {MX: []relaytest.MX{mx("mx.cold.example", 10)}},
		"mx.cold.example": {A: []string{"127.0.0.1"}},
	})
	clock := newClock()
	r, err := New(Options{Server: srv.Addr(), Clock: clock})
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	for b.Loop() {
		clock.Advance(time.Hour) // every answer has expired
		if _, err := r.Route(ctx, "cold.example"); err != nil {
			b.Fatal(err)
		}
	}
}

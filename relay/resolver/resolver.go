package resolver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"facteur/relay/clock"
)

// Cache bounds.
const (
	// MaxTTL caps how long a positive answer is kept, whatever its TTL
	// (Unbound's cache-max-ttl default): a week-long TTL must not pin a
	// route that the domain's owner has since changed.
	MaxTTL = 24 * time.Hour
	// MaxNegativeTTL caps how long NXDOMAIN and "no such record" answers are
	// kept (RFC 2308 §5 allows up to 3 hours; a freshly created domain
	// should start receiving mail within minutes).
	MaxNegativeTTL = 5 * time.Minute
	// maxEntries bounds the cache's memory; a relay sending to a very wide
	// audience drops the oldest-expiring answers first.
	maxEntries = 20000
	// ednsSize is the UDP payload we advertise: the DNS flag day 2020 value,
	// which avoids IP fragmentation; larger answers come over TCP.
	ednsSize = 1232
	// maxCNAME bounds CNAME chains (Postfix allows a "reasonable number";
	// BIND stops at 16).
	maxCNAME = 8
)

// IP versions for Options.IPVersion and config `delivery.ip_version`.
const (
	IPAny = "any"
	IPv4  = "ipv4"
	IPv6  = "ipv6"
)

// Options configure a Resolver. The zero value is usable.
type Options struct {
	// Server is the DNS server's "host:port". Empty means the first
	// nameserver of ResolvConf.
	Server string
	// ResolvConf is read when Server is empty; default /etc/resolv.conf.
	ResolvConf string
	// Timeout bounds each query (the UDP one, and the TCP one after a
	// truncated answer); default 5s, as in resolv.conf(5).
	Timeout time.Duration
	// IPVersion selects the address families of routes: IPAny (default),
	// IPv4 or IPv6. Config `delivery.ip_version`: a dual-stack host without
	// PTR on its IPv6 address sets ipv4, or Gmail refuses its mail.
	IPVersion string
	// Clock is the cache's time; default clock.Real.
	Clock clock.Clock
	// Rand shuffles equal-preference MX hosts and picks the first address
	// family; default: math/rand/v2's global source. Tests pass a seeded one.
	Rand *rand.Rand
}

// Resolver answers routing and record lookups, caching answers for their TTL.
// It is safe for concurrent use and starts no goroutine.
type Resolver struct {
	server    string
	timeout   time.Duration
	ipVersion string
	now       func() time.Time

	randMu sync.Mutex // randMu guards rnd, which is not safe for concurrent use
	rnd    *rand.Rand

	flight singleflight.Group

	mu    sync.Mutex // mu guards cache
	cache map[cacheKey]*answer

	// testHookFlight, when set, runs just before a query joins the
	// singleflight group: the coalescing test counts callers with it.
	testHookFlight func()
}

// New checks opts and returns a Resolver. It reads ResolvConf when no Server
// is given; it sends no query.
func New(opts Options) (*Resolver, error) {
	r := &Resolver{
		server:    opts.Server,
		timeout:   opts.Timeout,
		ipVersion: opts.IPVersion,
		rnd:       opts.Rand,
		cache:     make(map[cacheKey]*answer),
	}
	if r.timeout == 0 {
		r.timeout = 5 * time.Second
	}
	if r.timeout < 0 {
		return nil, fmt.Errorf("resolver: negative timeout %v", r.timeout)
	}
	switch r.ipVersion {
	case "":
		r.ipVersion = IPAny
	case IPAny, IPv4, IPv6:
	default:
		return nil, fmt.Errorf("resolver: ip version %q: want %s, %s or %s", r.ipVersion, IPAny, IPv4, IPv6)
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	r.now = opts.Clock.Now
	if r.server == "" {
		path := opts.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		s, err := systemServer(path)
		if err != nil {
			return nil, fmt.Errorf("resolver: %w", err)
		}
		r.server = s
	}
	if _, _, err := net.SplitHostPort(r.server); err != nil {
		return nil, fmt.Errorf("resolver: server %q: %w", r.server, err)
	}
	return r, nil
}

// systemServer is the first nameserver of a resolv.conf file, with its port.
func systemServer(path string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		return "", err
	}
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if len(cc.Servers) == 0 {
		return "", fmt.Errorf("%s: no nameserver", path)
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}

// Server is the "host:port" queries go to.
func (r *Resolver) Server() string { return r.server }

type cacheKey struct {
	name  string // canonical, fully qualified
	qtype uint16
}

// answer is the outcome of one query that is worth caching: records, no
// records (NODATA), or NXDOMAIN.
type answer struct {
	nxdomain bool
	rrs      []dns.RR // records of the asked type at the end of the CNAME chain
	expires  time.Time
	// secure is the AD bit of the response: the server says it validated
	// the whole answer with DNSSEC (RFC 4035 §3.2.3). Whether to believe it
	// is the caller's decision (config delivery.dane, issue 15).
	secure bool
}

// lookup returns the answer for name (canonical) and qtype, from the cache or
// from one query shared with concurrent callers. NXDOMAIN is returned as an
// answer, not an error; errors are temporary failures, wrapped in *Error.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (*answer, error) {
	key := cacheKey{name, qtype}
	if a := r.cached(key); a != nil {
		return a, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, r.fail(name, qtype, err)
	}
	if r.testHookFlight != nil {
		r.testHookFlight()
	}
	v, err, _ := r.flight.Do(dns.TypeToString[qtype]+" "+name, func() (any, error) {
		// A caller that arrives just after a flight ends finds its answer
		// here instead of querying again.
		if a := r.cached(key); a != nil {
			return a, nil
		}
		// The query is shared: one caller giving up must not fail the
		// others, so only the timeout bounds it.
		a, err := r.query(context.WithoutCancel(ctx), name, qtype)
		if err != nil {
			return nil, err
		}
		r.store(key, a)
		return a, nil
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, r.fail(name, qtype, err)
	}
	return v.(*answer), nil
}

func (r *Resolver) fail(name string, qtype uint16, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return &Error{Type: dns.TypeToString[qtype], Name: name, Server: r.server, Err: err}
}

func (r *Resolver) cached(key cacheKey) *answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.cache[key]
	if !ok {
		return nil
	}
	if !r.now().Before(a.expires) {
		delete(r.cache, key)
		return nil
	}
	return a
}

func (r *Resolver) store(key cacheKey, a *answer) {
	now := r.now()
	if !now.Before(a.expires) {
		return // TTL 0: use once, keep never
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= maxEntries {
		r.evict(now)
	}
	r.cache[key] = a
}

// evict makes room for a tenth of the cache, so that a full cache is swept
// once per maxEntries/10 inserts rather than on each: expired answers
// first, then those expiring soonest, the cheapest to lose. mu is held.
func (r *Resolver) evict(now time.Time) {
	for k, a := range r.cache {
		if !now.Before(a.expires) {
			delete(r.cache, k)
		}
	}
	if len(r.cache) <= maxEntries*9/10 {
		return
	}
	horizon := now.Add(MaxTTL)
	for _, a := range r.cache {
		if a.expires.Before(horizon) {
			horizon = a.expires
		}
	}
	// Raise the horizon until a tenth is gone: the step doubles, so a few
	// passes at most.
	step := time.Minute
	for len(r.cache) > maxEntries*9/10 {
		for k, a := range r.cache {
			if !a.expires.After(horizon) {
				delete(r.cache, k)
			}
		}
		horizon = horizon.Add(step)
		step *= 2
	}
}

// query asks the server once over UDP, and over TCP when the answer is
// truncated (RFC 7766 §5), then reads the answer.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*answer, error) {
	req := new(dns.Msg)
	req.SetQuestion(name, qtype)
	req.RecursionDesired = true
	// RFC 6840 §5.7: AD in a query asks a validating resolver to say
	// whether the answer is authenticated, without the RRSIGs that DO would
	// bring. DANE (issue 15) reads it; nothing else depends on it.
	req.AuthenticatedData = true
	req.SetEdns0(ednsSize, false)

	resp, err := r.exchange(ctx, "udp", req)
	if err == nil && resp.Truncated {
		resp, err = r.exchange(ctx, "tcp", req)
	}
	if err != nil {
		return nil, r.fail(name, qtype, err)
	}
	a, err := r.read(resp, name, qtype)
	if err != nil {
		return nil, r.fail(name, qtype, err)
	}
	return a, nil
}

func (r *Resolver) exchange(ctx context.Context, network string, req *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: r.timeout, UDPSize: ednsSize}
	resp, _, err := c.ExchangeContext(ctx, req, r.server)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w (%s, %v): %w", ErrTimeout, network, r.timeout, err)
		}
		return nil, fmt.Errorf("%s: %w", network, err)
	}
	return resp, nil
}

// read turns a response into an answer. The response must be about the
// question asked; miekg/dns only matches the message ID.
func (r *Resolver) read(resp *dns.Msg, name string, qtype uint16) (*answer, error) {
	if len(resp.Question) != 1 || resp.Question[0].Qtype != qtype ||
		!strings.EqualFold(resp.Question[0].Name, name) {
		return nil, errors.New("answer does not match the question")
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	case dns.RcodeServerFailure:
		return nil, ErrServFail
	case dns.RcodeRefused:
		return nil, ErrRefused
	default:
		return nil, fmt.Errorf("server answered %s", dns.RcodeToString[resp.Rcode])
	}

	now := r.now()
	rrs, ttl, err := follow(resp.Answer, name, qtype)
	if err != nil {
		return nil, err
	}
	if len(rrs) > 0 {
		// An NXDOMAIN with records of the asked type would be
		// contradictory; the records win.
		return &answer{rrs: rrs, expires: now.Add(min(ttl, MaxTTL)), secure: resp.AuthenticatedData}, nil
	}
	a := &answer{nxdomain: resp.Rcode == dns.RcodeNameError, secure: resp.AuthenticatedData}
	// RFC 2308 §5: a negative answer is cached for min(SOA TTL, SOA
	// MINIMUM), and not at all without an SOA. The CNAMEs that led to it
	// bound it too.
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			neg := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			a.expires = now.Add(min(neg, ttl, MaxNegativeTTL))
			break
		}
	}
	return a, nil
}

// follow walks the CNAME chain from name in an answer section and returns
// the records of qtype at its end, with the smallest TTL seen on the way.
// Names compare case-insensitively (RFC 4343).
func follow(section []dns.RR, name string, qtype uint16) ([]dns.RR, time.Duration, error) {
	ttl := uint32(1<<31 - 1) // RFC 2181 §8: TTLs are at most 2^31-1
	owner := name
	for range maxCNAME + 1 {
		var rrs []dns.RR
		next := ""
		for _, rr := range section {
			h := rr.Header()
			if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, owner) {
				continue
			}
			switch {
			case h.Rrtype == qtype:
				rrs = append(rrs, rr)
			case h.Rrtype == dns.TypeCNAME && next == "":
				next = rr.(*dns.CNAME).Target
				ttl = min(ttl, h.Ttl)
			}
		}
		if len(rrs) > 0 {
			for _, rr := range rrs {
				ttl = min(ttl, rr.Header().Ttl)
			}
			return rrs, time.Duration(ttl) * time.Second, nil
		}
		if next == "" {
			return nil, time.Duration(ttl) * time.Second, nil
		}
		owner = next
	}
	return nil, 0, fmt.Errorf("CNAME chain longer than %d", maxCNAME)
}

// shuffle runs rand.Shuffle on the injected source or the global one.
func (r *Resolver) shuffle(n int, swap func(i, j int)) {
	if r.rnd == nil {
		rand.Shuffle(n, swap)
		return
	}
	r.randMu.Lock()
	defer r.randMu.Unlock()
	r.rnd.Shuffle(n, swap)
}

func (r *Resolver) coin() bool {
	if r.rnd == nil {
		return rand.IntN(2) == 0
	}
	r.randMu.Lock()
	defer r.randMu.Unlock()
	return r.rnd.IntN(2) == 0
}

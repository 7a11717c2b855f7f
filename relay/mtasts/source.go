package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"facteur/relay/clock"
	"facteur/relay/resolver"
)

// Resolver is what the source needs of relay/resolver.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupIP(ctx context.Context, name string) ([]netip.Addr, error)
}

// Store keeps the policy cache; queue.Store satisfies it. State returns an
// error (queue.ErrNotFound) for a key never stored.
type Store interface {
	State(ctx context.Context, key string) ([]byte, error)
	PutState(ctx context.Context, key string, val []byte) error
}

// Options configure a Source.
type Options struct {
	Resolver Resolver // required: the TXT lookup and the policy host's address
	Store    Store    // required: the cache
	// RootCAs verifies the policy host; nil means the system's roots
	// (SSL_CERT_FILE and SSL_CERT_DIR are honoured).
	RootCAs *x509.CertPool
	// Dial opens the TCP connection to an address of the policy host,
	// "ip:443"; default a net.Dialer. Tests map port 443 to their server.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds one fetch, connection to last byte; default 20s.
	Timeout time.Duration
	// Clock is the cache's time; default clock.Real.
	Clock clock.Clock
}

// Source finds the MTA-STS policy of a domain, through its cache. It is safe
// for concurrent use and starts no goroutine of its own.
type Source struct {
	opts   Options
	client *http.Client
	flight singleflight.Group

	mu        sync.Mutex           // mu guards refreshed and failed
	refreshed map[string]time.Time // last proactive refresh attempt per domain
	failed    map[string]failure   // a recent failed fetch per domain
}

// failure is a fetch that failed, remembered for retryFetch so that a
// policy host that is down (each try can take Options.Timeout) does not
// hold up every delivery to its domain.
type failure struct {
	id    string // the record's id it was fetched for: a new id tries at once
	until time.Time
}

// retryFetch is how long a failed fetch is not tried again for the same id.
const retryFetch = 5 * time.Minute

// refreshEvery spaces the proactive refreshes of one domain's policy, so
// that a policy host that is down does not slow every delivery.
const refreshEvery = time.Hour

// Result is what Get found.
type Result struct {
	// Policy is the domain's policy; nil when it has none (no record, or
	// none usable and nothing cached). Mode None means the same as nil.
	Policy *Policy
	// ID is the policy's id from the TXT record it was fetched for.
	ID string
	// Cached is true when Policy came from the cache without a fetch.
	Cached bool
	// Note says what went wrong on the way, when something did (a failed
	// refetch with the cached policy kept, a bad record): for the log.
	Note string
}

// New returns a Source; it sends nothing.
func New(opts Options) (*Source, error) {
	if opts.Resolver == nil || opts.Store == nil {
		return nil, errors.New("mtasts: Options.Resolver and Options.Store are required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 20 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Dial == nil {
		d := &net.Dialer{}
		opts.Dial = d.DialContext
	}
	s := &Source{opts: opts, refreshed: map[string]time.Time{}, failed: map[string]failure{}}
	s.client = &http.Client{
		Timeout: opts.Timeout,
		// RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed".
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:       nil, // the policy host is reached directly
			DialContext: s.dial,
			// §3.3: HTTPS with TLS 1.2 or later and a PKIX-valid
			// certificate for mta-sts.DOMAIN (ServerName is set from
			// the URL by net/http).
			TLSClientConfig:     &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: opts.Timeout,
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        1,
			IdleConnTimeout:     time.Second,
		},
	}
	return s, nil
}

// dial resolves the policy host through the relay's resolver and connects
// to its addresses in turn.
func (s *Source) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := s.opts.Resolver.LookupIP(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s has no address", host)
	}
	var last error
	for _, ip := range ips {
		c, err := s.opts.Dial(ctx, "tcp", net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last
}

// entry is the cache record, JSON in the queue database's state bucket.
type entry struct {
	ID      string    `json:"id"`
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"`
	Policy  Policy    `json:"policy"`
}

func cacheKey(domain string) string { return "mta-sts/" + domain }

// Get returns the policy of domain (lower case, A-labels, no trailing dot),
// following RFC 8461 §3.3 and §5.1. It never fails: what went wrong is in
// Result.Note, and without a usable policy Result.Policy is nil.
func (s *Source) Get(ctx context.Context, domain string) Result {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	v, _, _ := s.flight.Do(domain, func() (any, error) {
		// Shared by the workers of one domain. They run under the same
		// scheduler context, so the leader's cancellation (shutdown) is
		// theirs too, and a fetch in flight does not hold the shutdown up
		// for its whole timeout.
		return s.get(ctx, domain), nil
	})
	return v.(Result)
}

func (s *Source) get(ctx context.Context, domain string) Result {
	now := s.opts.Clock.Now()
	cached := s.load(ctx, domain, now)
	id, recErr := s.record(ctx, domain)
	if recErr != nil {
		// §3.3 and §10.2: without a live record, a cached policy that has
		// not expired still applies.
		if cached != nil {
			return Result{Policy: &cached.Policy, ID: cached.ID, Cached: true, Note: recErr.Error() + "; using the cached policy"}
		}
		if errors.Is(recErr, errNoRecord) {
			return Result{}
		}
		return Result{Note: recErr.Error()}
	}
	if cached != nil && cached.ID == id {
		// The id is unchanged: the cached policy is current. Past half its
		// max_age it is refreshed anyway (at most once an hour), so that a
		// policy host briefly down when it expires does not drop the
		// domain to opportunistic TLS (RFC 8461 §10.2 suggests it).
		half := cached.Fetched.Add(cached.Expires.Sub(cached.Fetched) / 2)
		if now.Before(half) || !s.refreshDue(domain, now) {
			return Result{Policy: &cached.Policy, ID: id, Cached: true}
		}
	}
	if s.failedRecently(domain, id, now) {
		// Said once, when it failed; meanwhile as after that failure.
		if cached != nil {
			return Result{Policy: &cached.Policy, ID: cached.ID, Cached: true}
		}
		return Result{}
	}
	p, err := s.fetch(ctx, domain)
	s.noteFetch(domain, id, now, err)
	if err != nil {
		if cached != nil {
			return Result{Policy: &cached.Policy, ID: cached.ID, Cached: true, Note: "policy refetch failed: " + err.Error() + "; using the cached policy"}
		}
		// §3.3: a record without a fetchable policy is as no policy.
		return Result{Note: "policy fetch failed: " + err.Error()}
	}
	e := entry{ID: id, Fetched: now, Expires: now.Add(p.MaxAge), Policy: *p}
	note := ""
	if b, err := json.Marshal(e); err == nil {
		if err := s.opts.Store.PutState(ctx, cacheKey(domain), b); err != nil {
			note = "policy not cached: " + err.Error()
		}
	}
	return Result{Policy: p, ID: id, Note: note}
}

// failedRecently reports whether fetching domain's policy for id failed
// less than retryFetch ago.
func (s *Source) failedRecently(domain, id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.failed[domain]
	return ok && f.id == id && now.Before(f.until)
}

// noteFetch remembers a failed fetch, and forgets it on success.
func (s *Source) noteFetch(domain, id string, now time.Time, err error) {
	if errors.Is(err, context.Canceled) {
		return // shutdown, not the policy host's failure
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.failed, domain)
		return
	}
	for d, f := range s.failed {
		if !now.Before(f.until) {
			delete(s.failed, d)
		}
	}
	s.failed[domain] = failure{id: id, until: now.Add(retryFetch)}
}

// refreshDue records a proactive refresh attempt of domain at now unless
// one was made within refreshEvery.
func (s *Source) refreshDue(domain string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.refreshed[domain]; ok && now.Sub(last) < refreshEvery {
		return false
	}
	for d, t := range s.refreshed {
		if now.Sub(t) >= refreshEvery {
			delete(s.refreshed, d) // keeps the map to the domains refreshing now
		}
	}
	s.refreshed[domain] = now
	return true
}

// load reads the cached policy of domain; nil when none or expired. An
// expired or unreadable entry is deleted: the cache holds only policies
// that may still apply.
func (s *Source) load(ctx context.Context, domain string, now time.Time) *entry {
	b, err := s.opts.Store.State(ctx, cacheKey(domain))
	if err != nil || len(b) == 0 {
		return nil
	}
	var e entry
	if json.Unmarshal(b, &e) != nil || !now.Before(e.Expires) {
		_ = s.opts.Store.PutState(ctx, cacheKey(domain), nil)
		return nil
	}
	return &e
}

var errNoRecord = errors.New("no MTA-STS record")

// record looks up _mta-sts.DOMAIN and returns the id of its one STSv1
// record (§3.1: records not starting with "v=STSv1;" are ignored; other
// than exactly one left means no policy).
func (s *Source) record(ctx context.Context, domain string) (string, error) {
	name := "_mta-sts." + domain
	txts, err := s.opts.Resolver.LookupTXT(ctx, name)
	if errors.Is(err, resolver.ErrNXDomain) {
		return "", errNoRecord
	}
	if err != nil {
		// A failed lookup: no live record, the cache decides.
		return "", fmt.Errorf("TXT %s: %w", name, err)
	}
	var sts []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1;") || strings.TrimRight(t, " \t") == "v=STSv1" {
			sts = append(sts, t)
		}
	}
	switch len(sts) {
	case 0:
		return "", errNoRecord
	case 1:
	default:
		return "", fmt.Errorf("TXT %s: %d STSv1 records, want one", name, len(sts))
	}
	id, err := ParseRecord(sts[0])
	if err != nil {
		return "", fmt.Errorf("TXT %s: %w", name, err)
	}
	return id, nil
}

// URL is where the policy of domain is published (RFC 8461 §3.3).
func URL(domain string) string {
	return "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
}

// fetch gets and parses the policy over HTTPS.
func (s *Source) fetch(ctx context.Context, domain string) (*Policy, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, URL(domain), nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %s", URL(domain), resp.Status)
	}
	// §3.3: the media type is checked, so that a host serving user content
	// cannot be made to publish a policy by accident.
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("%s: content type %q, want text/plain", URL(domain), resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", URL(domain), err)
	}
	if len(body) > MaxPolicySize {
		return nil, fmt.Errorf("%s: policy larger than %s bytes", URL(domain), strconv.Itoa(MaxPolicySize))
	}
	p, err := Parse(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", URL(domain), err)
	}
	return p, nil
}

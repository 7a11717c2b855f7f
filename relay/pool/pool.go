// Package pool holds the outbound IP pools of issue 17: which pool a
// message leaves from (pool_by), which IP of the pool takes a connection
// to a provider, and each new IP's warm-up: a daily cap per (IP, provider)
// that follows a schedule from a start date, held a day by a block.
//
// It decides over the time it is given and starts no goroutine. The
// per-(IP, provider) limits and suspensions themselves are the policy
// engine's (policy.SourceKey); this package adds what the engine does not
// know: pools, EHLO names and warm-up counts.
package pool

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"facteur/relay/config"
)

// IP is one outbound address of a pool.
type IP struct {
	Addr netip.Addr
	Pool string
	// EHLO is the name this address gives in EHLO ("" the hostname).
	EHLO   string
	Warmup *config.Warmup
}

// String is the address, the source key of the policy engine.
func (ip *IP) String() string { return ip.Addr.String() }

// Pool is a named set of IPs.
type Pool struct {
	Name     string
	IPs      []*IP
	Overflow string // config.OverflowWait or config.OverflowWarm
}

// Set is every pool of the config and the warm-up counters. Safe for
// concurrent use.
type Set struct {
	pools  map[string]*Pool
	byAddr map[string]*IP
	order  []*IP
	by     config.PoolBy

	mu   sync.Mutex
	sent map[dayKey]int // messages taken per (IP, provider, UTC day)
	// held are the UTC days a block held each (IP, provider)'s ramp.
	held map[ipProv]map[string]bool
}

type ipProv struct{ ip, provider string }

type dayKey struct {
	ip, provider string
	day          string // YYYY-MM-DD, UTC
}

// New returns the pools of cfg; nil when it has none (delivery.source_ip,
// or the default address, is used then).
func New(cfg *config.Config) *Set {
	if len(cfg.Pools) == 0 {
		return nil
	}
	s := &Set{pools: map[string]*Pool{}, byAddr: map[string]*IP{}, by: cfg.PoolBy,
		sent: map[dayKey]int{}, held: map[ipProv]map[string]bool{}}
	names := make([]string, 0, len(cfg.Pools))
	for n := range cfg.Pools {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		cp := cfg.Pools[n]
		p := &Pool{Name: n, Overflow: cp.Overflow}
		if p.Overflow == "" {
			p.Overflow = config.OverflowWait
		}
		for _, ci := range cp.IPs {
			a, err := netip.ParseAddr(ci.Addr)
			if err != nil {
				continue // Validate refused it
			}
			ip := &IP{Addr: a, Pool: n, EHLO: ci.EHLO, Warmup: ci.Warmup}
			p.IPs = append(p.IPs, ip)
			s.byAddr[ip.String()] = ip
			s.order = append(s.order, ip)
		}
		s.pools[n] = p
	}
	return s
}

// Pools returns the pools, sorted by name.
func (s *Set) Pools() []*Pool {
	if s == nil {
		return nil
	}
	out := make([]*Pool, 0, len(s.pools))
	for _, p := range s.pools {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Pool returns the pool named name, nil if none.
func (s *Set) Pool(name string) *Pool {
	if s == nil {
		return nil
	}
	return s.pools[name]
}

// IP returns the pool IP of addr, nil if none.
func (s *Set) IP(addr string) *IP {
	if s == nil {
		return nil
	}
	return s.byAddr[addr]
}

// Addrs returns every pool IP, in pool then config order.
func (s *Set) Addrs() []string {
	if s == nil {
		return nil
	}
	out := make([]string, len(s.order))
	for i, ip := range s.order {
		out[i] = ip.String()
	}
	return out
}

// For returns the pool of a message: by the envelope sender's domain
// (after rewriting), then by the submitting local user, then
// pool_by.default; "" when none applies (the default address).
func (s *Set) For(sender, user string) string {
	if s == nil {
		return ""
	}
	dom := ""
	if i := strings.LastIndexByte(sender, '@'); i >= 0 {
		dom = strings.ToLower(sender[i+1:])
	}
	if p, ok := s.by.SenderDomain[dom]; ok && dom != "" {
		return p
	}
	if p, ok := s.by.User[user]; ok && user != "" {
		return p
	}
	return s.by.Default
}

func utcDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }

func midnight(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// NextDay is the next UTC midnight after now: when a cap is lifted.
func NextDay(now time.Time) time.Time { return midnight(now).AddDate(0, 0, 1) }

// Day returns ip's warm-up day at provider on now's UTC day: the days since
// its start (day 0 the start date), less the days a block held its ramp;
// warm is true past the end of its schedule (or with no warm-up).
func (s *Set) Day(ip *IP, provider string, now time.Time) (day int, warm bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dayLocked(ip, provider, now)
}

func (s *Set) schedule(ip *IP, provider string) []int {
	if sch, ok := ip.Warmup.Providers[provider]; ok {
		return sch
	}
	return ip.Warmup.Schedule
}

func (s *Set) dayLocked(ip *IP, provider string, now time.Time) (int, bool) {
	if ip.Warmup == nil {
		return 0, true
	}
	today := midnight(now)
	day := int(today.Sub(midnight(ip.Warmup.Start)) / (24 * time.Hour))
	if day < 0 {
		day = 0 // not started yet: as careful as its first day
	}
	// A hold on day D means D+1 does not advance: count the holds before today.
	for d := range s.held[ipProv{ip.String(), provider}] {
		if d < utcDay(today) {
			day--
		}
	}
	day = max(day, 0)
	return day, day >= len(s.schedule(ip, provider))
}

// Cap returns ip's warm-up cap at provider today and what it has sent
// there today; ok is false when the IP is warm (no cap).
func (s *Set) Cap(ip *IP, provider string, now time.Time) (limit, sent int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sent = s.sent[dayKey{ip.String(), provider, utcDay(now)}]
	day, warm := s.dayLocked(ip, provider, now)
	if warm {
		return 0, sent, false
	}
	return s.schedule(ip, provider)[day], sent, true
}

// Count records one message sent from addr to provider (any IP: the
// counts feed `providers --json` too).
func (s *Set) Count(addr, provider string, now time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent[dayKey{addr, provider, utcDay(now)}]++
}

// Take takes one message from ip's warm-up cap at provider today; false
// when the cap is reached (nothing taken). A warm IP always gives one.
func (s *Set) Take(ip *IP, provider string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := dayKey{ip.String(), provider, utcDay(now)}
	day, warm := s.dayLocked(ip, provider, now)
	if !warm && s.sent[k] >= s.schedule(ip, provider)[day] {
		return false
	}
	s.sent[k]++
	return true
}

// Hold records a block on warming ip at provider: its ramp does not advance
// tomorrow. It reports whether this is the first hold of today on a
// warming IP (the caller logs it once) and the day the IP stays on.
func (s *Set) Hold(ip *IP, provider string, now time.Time) (first bool, day int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	day, warm := s.dayLocked(ip, provider, now)
	if warm {
		return false, day
	}
	k := ipProv{ip.String(), provider}
	if s.held[k] == nil {
		s.held[k] = map[string]bool{}
	}
	if s.held[k][utcDay(now)] {
		return false, day
	}
	s.held[k][utcDay(now)] = true
	return true, day
}

// Candidates returns the IPs of pool that may take mail to provider now,
// best first: warming IPs with cap left today (a new IP needs its daily
// volume to ramp), most cap left first; then the warm IPs, unless the pool
// overflows by waiting and has an IP warming at provider — then what its
// warming IPs cannot take today waits for tomorrow, as issue 17 §3 asks,
// and the warm IPs do not take it. capped is true when warming IPs were
// left out for their cap: with no candidate, the mail waits for NextDay.
// Each call order of equals is stable (config order); the caller ranks by
// connection capacity within a rank.
func (s *Set) Candidates(p *Pool, provider string, now time.Time) (warming, warm []*IP, capped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type left struct {
		ip   *IP
		room int
	}
	var ws []left
	anyWarming := false
	for _, ip := range p.IPs {
		day, isWarm := s.dayLocked(ip, provider, now)
		if isWarm {
			warm = append(warm, ip)
			continue
		}
		anyWarming = true
		room := s.schedule(ip, provider)[day] - s.sent[dayKey{ip.String(), provider, utcDay(now)}]
		if room <= 0 {
			capped = true
			continue
		}
		ws = append(ws, left{ip, room})
	}
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].room > ws[j].room })
	for _, w := range ws {
		warming = append(warming, w.ip)
	}
	if anyWarming && p.Overflow != config.OverflowWarm {
		warm = nil
	}
	return warming, warm, capped
}

// stateVersion is the format of MarshalState.
const stateVersion = 1

type savedState struct {
	Version int                 `json:"version"`
	Sent    []savedSent         `json:"sent"`
	Held    map[string][]string `json:"held,omitempty"` // "ip|provider" → days
}

type savedSent struct {
	IP       string `json:"ip"`
	Provider string `json:"provider"`
	Day      string `json:"day"`
	Count    int    `json:"count"`
}

// MarshalState returns today's counts and the holds, for the queue's state
// store: a restart must not give a warming IP its cap again.
func (s *Set) MarshalState(now time.Time) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := savedState{Version: stateVersion, Held: map[string][]string{}}
	today := utcDay(now)
	for k, n := range s.sent {
		if k.day == today {
			st.Sent = append(st.Sent, savedSent{k.ip, k.provider, k.day, n})
		}
	}
	sort.Slice(st.Sent, func(i, j int) bool {
		return st.Sent[i].IP+st.Sent[i].Provider < st.Sent[j].IP+st.Sent[j].Provider
	})
	for k, days := range s.held {
		for d := range days {
			st.Held[k.ip+"|"+k.provider] = append(st.Held[k.ip+"|"+k.provider], d)
		}
		sort.Strings(st.Held[k.ip+"|"+k.provider])
	}
	return json.Marshal(st)
}

// RestoreState loads what MarshalState saved; counts of another day are
// dropped.
func (s *Set) RestoreState(b []byte, now time.Time) error {
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("restore warm-up state: %w", err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("restore warm-up state: version %d, want %d", st.Version, stateVersion)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	today := utcDay(now)
	for _, e := range st.Sent {
		if e.Day == today && e.Count > 0 {
			s.sent[dayKey{e.IP, e.Provider, e.Day}] = e.Count
		}
	}
	for k, days := range st.Held {
		ip, prov, ok := strings.Cut(k, "|")
		if !ok {
			return fmt.Errorf("restore warm-up state: bad key %q", k)
		}
		for _, d := range days {
			if _, err := time.Parse(time.DateOnly, d); err != nil {
				return fmt.Errorf("restore warm-up state: %s: bad day %q", k, d)
			}
			kp := ipProv{ip, prov}
			if s.held[kp] == nil {
				s.held[kp] = map[string]bool{}
			}
			s.held[kp][d] = true
		}
	}
	return nil
}

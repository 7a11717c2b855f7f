package breaker

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"facteur/policy"
)

// Per values: what a sender is watched as (config `per`).
const (
	// PerUser watches each local user and each authenticated user.
	PerUser = "user"
	// PerSenderDomain watches each envelope sender domain.
	PerSenderDomain = "sender_domain"
)

// Key kinds, the part of a Key before "=". The strings are the contract of
// the log line, `facteur breaker list` and `breaker reset SENDER`.
const (
	KindUser         = "user"
	KindAuthUser     = "auth_user"
	KindSenderDomain = "sender_domain"
)

// Reason is the hold reason the queue records for mail the breaker holds.
const Reason = "breaker"

// Config is the breaker's part of the config (relay/config fills it).
type Config struct {
	Window        time.Duration
	MinRecipients int
	MaxFailed     float64 // share of the recipients, 0..1
	MaxDeferred   float64
	Per           []string // PerUser, PerSenderDomain
}

// Key names one watched sender: "user=www-data", "auth_user=alice",
// "sender_domain=example.com".
type Key string

// Kind is the part before "=".
func (k Key) Kind() string { kind, _, _ := strings.Cut(string(k), "="); return kind }

// Value is the part after "=".
func (k Key) Value() string { _, v, _ := strings.Cut(string(k), "="); return v }

// ParseKey reads "kind=value".
func ParseKey(s string) (Key, error) {
	kind, v, ok := strings.Cut(s, "=")
	if !ok || v == "" {
		return "", fmt.Errorf("bad sender %q: want user=NAME, auth_user=NAME or sender_domain=DOMAIN", s)
	}
	switch kind {
	case KindUser, KindAuthUser:
	case KindSenderDomain:
		v = strings.ToLower(v)
	default:
		return "", fmt.Errorf("bad sender %q: unknown kind %q (user, auth_user, sender_domain)", s, kind)
	}
	return Key(kind + "=" + v), nil
}

// Sender is what a message says about who sent it.
type Sender struct {
	User     string // local user ("" unknown)
	AuthUser string // SMTP AUTH login ("" none)
	Address  string // envelope sender ("" the null sender)
}

// Keys returns the keys s is watched under with cfg's `per`. The null
// sender has no sender domain, but a local or authenticated user sending
// with it is still watched under its user: otherwise MAIL FROM:<> would
// take a hacked site out of the breaker's sight. What facteur generates
// (bounces, the breaker's own notifications) has neither user nor AUTH
// user, so it has no key and is never held.
func (c Config) Keys(s Sender) []Key {
	var keys []Key
	for _, p := range c.Per {
		switch p {
		case PerUser:
			if s.User != "" {
				keys = append(keys, Key(KindUser+"="+s.User))
			}
			if s.AuthUser != "" {
				keys = append(keys, Key(KindAuthUser+"="+s.AuthUser))
			}
		case PerSenderDomain:
			if i := strings.LastIndexByte(s.Address, '@'); i >= 0 && i < len(s.Address)-1 {
				keys = append(keys, Key(KindSenderDomain+"="+strings.ToLower(s.Address[i+1:])))
			}
		}
	}
	return keys
}

// Status is a recipient's outcome as the scheduler reports it.
type Status string

// Outcomes.
const (
	Delivered  Status = "delivered"
	Bounced    Status = "bounced"    // a 5xx (or a permanent local verdict such as NXDOMAIN)
	Deferred   Status = "deferred"   // a 4xx
	Expired    Status = "expired"    // the lifetime ended on a 4xx: judged as its last attempt, a deferral
	Suppressed Status = "suppressed" // the recipient was found suppressed
)

// Outcome is one recipient attempt's result.
type Outcome struct {
	Sender Sender
	ID     string // queue ID: with Rcpt, names the recipient across retries
	Rcpt   string
	Status Status
	Class  string // policy class of the reply
	// ProviderWide: the reply's rule acted on the whole provider (suspend,
	// throttle, backoff): the provider's problem, not the sender's.
	ProviderWide bool
	Reply        string
	At           time.Time
}

// verdict is how an outcome counts.
type verdict int

const (
	countOK verdict = iota
	countFailed
	countDeferred
	excused // not counted at all
)

// judge applies issue 21 §1 and §4: failed = 5xx or suppressed, deferred =
// 4xx, except deferrals caused by a provider suspension or rate limit.
func judge(o Outcome) verdict {
	switch o.Status {
	case Delivered:
		return countOK
	case Bounced, Suppressed:
		return countFailed
	case Deferred, Expired:
		if o.ProviderWide || o.Class == string(policy.RateLimited) {
			return excused
		}
		return countDeferred
	}
	return excused
}

const (
	nBuckets = 60
	// recentN bounds the failures kept per key for the notification's top
	// domains and replies.
	recentN = 256
	// maxPending bounds the deferred recipients remembered (to count a
	// recipient once across its retries); past it a retry counts again,
	// which errs towards tripping.
	maxPending = 200000
	// pruneEvery: idle keys and stale pending entries are swept every so
	// many observations.
	pruneEvery = 4096
)

type bucket struct {
	Slot      int64 `json:"slot"`
	Attempted int   `json:"n"`
	Failed    int   `json:"failed,omitempty"`
	Deferred  int   `json:"deferred,omitempty"`
}

type sample struct {
	At     time.Time `json:"at"`
	Domain string    `json:"domain"`
	Reply  string    `json:"reply"`
	// By is who submitted the failed mail (Submitter), for a sender
	// domain's culprits.
	By string `json:"by,omitempty"`
}

type sender struct {
	Buckets [nBuckets]bucket
	ResetAt time.Time // Reset's time: earlier deferrals are not retracted
	Recent  []sample  // ring of recentN failures, for the top lists
	Next    int       // next slot of Recent once full
	Seen    time.Time // last observation, for pruning
}

type pending struct {
	at   time.Time
	keys []Key
}

// Count is one entry of a top list.
type Count struct {
	Value string `json:"value"`
	N     int    `json:"n"`
}

// Trip is a tripped key with the figures that tripped it.
type Trip struct {
	Key        Key       `json:"sender"`
	At         time.Time `json:"tripped_at"`
	Recipients int       `json:"recipients"`
	Failed     int       `json:"failed"`
	Deferred   int       `json:"deferred"`
	Window     string    `json:"window"`
	TopDomains []Count   `json:"top_domains"`
	TopReplies []Count   `json:"top_replies"`
	// Submitters, for a sender_domain trip, are the submitters whose
	// failures tripped it (Submitter; "" unknown): only their mail of the
	// domain is stopped. A sender domain is public, and a hacked site can
	// put another site's domain in its envelope sender; that must not
	// stop the other site's mail. nil (a state saved before): all of it.
	Submitters []string `json:"submitters,omitempty"`
	// Node is the fleet node where it tripped, when it was imposed from
	// there (Impose); "" when it tripped here.
	Node string `json:"node,omitempty"`
}

// Submitter names who submitted a message: "user=NAME" for a local user,
// "auth_user=NAME" for an authenticated one, "" when unknown (a remote
// trusted client).
func Submitter(s Sender) string {
	switch {
	case s.User != "":
		return KindUser + "=" + s.User
	case s.AuthUser != "":
		return KindAuthUser + "=" + s.AuthUser
	}
	return ""
}

// FailedPct and DeferredPct are the shares in whole percent.
func (t Trip) FailedPct() int   { return pct(t.Failed, t.Recipients) }
func (t Trip) DeferredPct() int { return pct(t.Deferred, t.Recipients) }

func pct(n, of int) int {
	if of == 0 {
		return 0
	}
	return int(math.Round(100 * float64(n) / float64(of)))
}

// Summary is the figures as the log line writes them:
// "failed=46% deferred=12% of 63 recipients in 1h".
func (t Trip) Summary() string {
	return fmt.Sprintf("failed=%d%% deferred=%d%% of %d recipients in %s", t.FailedPct(), t.DeferredPct(), t.Recipients, t.Window)
}

// Breaker holds the windows and the tripped keys. Its methods may be
// called concurrently.
type Breaker struct {
	cfg   Config
	width time.Duration // of one bucket

	mu       sync.Mutex // guards everything below
	senders  map[Key]*sender
	tripped  map[Key]*Trip
	pending  map[string]pending // queue ID + "\x00" + recipient -> its counted deferral
	observed int
}

// New returns a breaker with cfg; cfg.Window must be positive.
func New(cfg Config) *Breaker {
	if cfg.Window <= 0 {
		cfg.Window = time.Hour
	}
	w := cfg.Window / nBuckets
	if w <= 0 {
		w = 1
	}
	return &Breaker{cfg: cfg, width: w, senders: map[Key]*sender{}, tripped: map[Key]*Trip{}, pending: map[string]pending{}}
}

// Config returns the configuration the breaker runs with.
func (b *Breaker) Config() Config { return b.cfg }

func (b *Breaker) slot(t time.Time) int64 { return t.UnixNano() / int64(b.width) }

// add counts v at t in s's bucket; an outcome older than the window is
// dropped.
func (b *Breaker) add(s *sender, t time.Time, v verdict, now time.Time) {
	slot := b.slot(t)
	if slot < 0 || slot <= b.slot(now)-nBuckets {
		return // before 1970 (a zero time) or older than the window
	}
	bk := &s.Buckets[slot%nBuckets]
	if bk.Slot != slot {
		if slot < bk.Slot {
			return
		}
		*bk = bucket{Slot: slot}
	}
	bk.Attempted++
	switch v {
	case countFailed:
		bk.Failed++
	case countDeferred:
		bk.Deferred++
	}
}

// retract removes a deferral counted at t, if its bucket still holds it.
func (b *Breaker) retract(s *sender, t time.Time) {
	if t.Before(s.ResetAt) {
		return
	}
	slot := b.slot(t)
	if slot < 0 {
		return
	}
	bk := &s.Buckets[slot%nBuckets]
	if bk.Slot != slot || bk.Deferred == 0 || bk.Attempted == 0 {
		return
	}
	bk.Deferred--
	bk.Attempted--
}

// figures sums s's buckets inside the window ending at now.
func (b *Breaker) figures(s *sender, now time.Time) (n, failed, deferred int) {
	cur := b.slot(now)
	for _, bk := range s.Buckets {
		if bk.Slot > cur-nBuckets && bk.Slot <= cur {
			n += bk.Attempted
			failed += bk.Failed
			deferred += bk.Deferred
		}
	}
	return
}

func (b *Breaker) senderOf(k Key) *sender {
	s := b.senders[k]
	if s == nil {
		if len(b.senders) >= maxSenders {
			b.evictIdlest(maxSenders / 10)
		}
		s = &sender{}
		b.senders[k] = s
	}
	return s
}

// maxSenders bounds the keys watched at once. A local user can make a new
// sender domain per transaction (MAIL FROM a fresh domain, RCPT to a
// suppressed address, RSET), and each key holds a window of buckets for an
// hour: without a bound that is memory at its command.
const maxSenders = 50000

// evictIdlest forgets the n untripped keys seen least recently, in one pass
// (a sort every maxSenders/10 new keys, not a scan per key). The flood's own
// user key is seen at every transaction and stays.
func (b *Breaker) evictIdlest(n int) {
	type idle struct {
		k    Key
		seen time.Time
	}
	all := make([]idle, 0, len(b.senders))
	for k, s := range b.senders {
		if b.tripped[k] == nil {
			all = append(all, idle{k, s.Seen})
		}
	}
	slices.SortFunc(all, func(a, c idle) int { return a.seen.Compare(c.seen) })
	for _, x := range all[:min(n, len(all))] {
		delete(b.senders, x.k)
	}
}

// Observe counts one recipient outcome under each key of its sender and
// returns the keys it tripped (none most of the time). now is the clock's
// time, o.At the attempt's.
func (b *Breaker) Observe(o Outcome, now time.Time) []Trip {
	keys := b.cfg.Keys(o.Sender)
	if len(keys) == 0 {
		return nil
	}
	if o.At.IsZero() || o.At.After(now) {
		o.At = now
	}
	v := judge(o)
	if v == excused {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.observed++
	if b.observed%pruneEvery == 0 {
		b.prune(now)
	}
	rk := o.ID + "\x00" + o.Rcpt
	if p, ok := b.pending[rk]; ok {
		// The same recipient tried again: its earlier deferral is replaced
		// by this outcome, so that it counts once.
		for _, k := range p.keys {
			if s := b.senders[k]; s != nil {
				b.retract(s, p.at)
			}
		}
		delete(b.pending, rk)
	}
	if v == countDeferred && len(b.pending) < maxPending {
		b.pending[rk] = pending{at: o.At, keys: keys}
	}
	var trips []Trip
	for _, k := range keys {
		s := b.senderOf(k)
		s.Seen = now
		b.add(s, o.At, v, now)
		if v != countOK {
			sm := sample{At: o.At, Domain: domain(o.Rcpt), Reply: shortReply(o.Reply), By: Submitter(o.Sender)}
			if len(s.Recent) < recentN {
				s.Recent = append(s.Recent, sm)
			} else {
				s.Recent[s.Next] = sm
			}
			s.Next = (s.Next + 1) % recentN
		}
		if b.tripped[k] != nil {
			continue
		}
		n, failed, deferred := b.figures(s, now)
		if n < b.cfg.MinRecipients || n == 0 {
			continue
		}
		if float64(failed)/float64(n) > b.cfg.MaxFailed || float64(deferred)/float64(n) > b.cfg.MaxDeferred {
			t := &Trip{Key: k, At: now, Recipients: n, Failed: failed, Deferred: deferred,
				Window: policy.FormatDuration(b.cfg.Window)}
			t.TopDomains, t.TopReplies = b.tops(s, now)
			if k.Kind() == KindSenderDomain {
				t.Submitters = b.culprits(s, now)
			}
			b.tripped[k] = t
			trips = append(trips, *t)
		}
	}
	return trips
}

// tops counts the failures of s inside the window by recipient domain and
// by reply, five of each, most frequent first.
func (b *Breaker) tops(s *sender, now time.Time) (domains, replies []Count) {
	from := now.Add(-b.cfg.Window)
	dc, rc := map[string]int{}, map[string]int{}
	for _, sm := range s.Recent {
		if sm.At.Before(from) || sm.At.Before(s.ResetAt) {
			continue
		}
		dc[sm.Domain]++
		if sm.Reply != "" {
			rc[sm.Reply]++
		}
	}
	return top(dc, 5), top(rc, 5)
}

func top(m map[string]int, n int) []Count {
	out := make([]Count, 0, len(m))
	for v, c := range m {
		out = append(out, Count{Value: v, N: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].N != out[j].N {
			return out[i].N > out[j].N
		}
		return out[i].Value < out[j].Value
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

func domain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// shortReply keeps the part of a reply that identifies it (code and the
// start of the text), so that replies naming each recipient still group.
func shortReply(r string) string {
	r = strings.Join(strings.Fields(r), " ")
	// "550 5.1.1 <x@example.org>: user unknown": drop the address, which
	// differs for each recipient.
	if i := strings.IndexByte(r, '<'); i >= 0 {
		if j := strings.IndexByte(r[i:], '>'); j > 0 {
			r = r[:i] + "<...>" + r[i+j+1:]
		}
	}
	if len(r) > 100 {
		r = r[:100] + "..."
	}
	return r
}

// prune forgets keys idle for a window and not tripped, and pending
// deferrals older than the window.
func (b *Breaker) prune(now time.Time) {
	from := now.Add(-b.cfg.Window)
	for k, s := range b.senders {
		if b.tripped[k] == nil && s.Seen.Before(from) {
			delete(b.senders, k)
		}
	}
	for rk, p := range b.pending {
		if p.at.Before(from) {
			delete(b.pending, rk)
		}
	}
}

// Stopped returns the first of the sender's keys that is tripped.
func (b *Breaker) Stopped(s Sender) (Key, bool) {
	keys := b.cfg.Keys(s)
	if len(keys) == 0 {
		return "", false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	by := Submitter(s)
	for _, k := range keys {
		t := b.tripped[k]
		if t == nil {
			continue
		}
		if k.Kind() == KindSenderDomain && t.Submitters != nil && !slices.Contains(t.Submitters, by) {
			continue // another submitter's failures tripped this domain
		}
		return k, true
	}
	return "", false
}

// culprits returns the distinct submitters of s's failures inside the
// window, in order of first appearance; never nil.
func (b *Breaker) culprits(s *sender, now time.Time) []string {
	from := now.Add(-b.cfg.Window)
	out := []string{}
	n := len(s.Recent)
	for i := range n {
		sm := s.Recent[(s.Next+i)%n]
		if !sm.At.Before(from) && !slices.Contains(out, sm.By) {
			out = append(out, sm.By)
		}
	}
	return out
}

// Tripped returns the tripped keys, oldest trip first.
func (b *Breaker) Tripped() []Trip {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Trip, 0, len(b.tripped))
	for _, t := range b.tripped {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.Before(out[j].At)
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Figures are a key's current counts in the window.
type Figures struct {
	Key        Key `json:"sender"`
	Recipients int `json:"recipients"`
	Failed     int `json:"failed"`
	Deferred   int `json:"deferred"`
}

// Watched returns the current figures of every key with recipients in the
// window, most recipients first (for `breaker list --all` and debugging).
func (b *Breaker) Watched(now time.Time) []Figures {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Figures
	for k, s := range b.senders {
		n, f, d := b.figures(s, now)
		if n > 0 {
			out = append(out, Figures{Key: k, Recipients: n, Failed: f, Deferred: d})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Recipients != out[j].Recipients {
			return out[i].Recipients > out[j].Recipients
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Impose trips t.Key as another node found it (t.Node names that node),
// so that the sender is stopped here too. It reports whether the key was
// newly tripped; a key already tripped here keeps its own figures.
func (b *Breaker) Impose(t Trip) bool {
	if _, err := ParseKey(string(t.Key)); err != nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tripped[t.Key] != nil {
		return false
	}
	t.TopDomains = slices.Clone(t.TopDomains)
	t.TopReplies = slices.Clone(t.TopReplies)
	t.Submitters = slices.Clone(t.Submitters)
	b.tripped[t.Key] = &t
	return true
}

// ErrNotTripped: Reset was asked for a key that is not tripped.
var ErrNotTripped = errors.New("not tripped")

// Reset re-arms k: it is no longer tripped and its window starts empty at
// now, so that the mail released with it is judged afresh.
func (b *Breaker) Reset(k Key, now time.Time) (Trip, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.tripped[k]
	if t == nil {
		return Trip{}, fmt.Errorf("%s: %w", k, ErrNotTripped)
	}
	delete(b.tripped, k)
	if s := b.senders[k]; s != nil {
		*s = sender{ResetAt: now, Seen: now}
	}
	return *t, nil
}

// state is the saved form: the tripped keys, and for each key active in
// the window its non-empty buckets and its last failures, so that a busy
// server's state stays small (a few hundred bytes per active sender).
type state struct {
	Version int                 `json:"version"`
	Tripped []Trip              `json:"tripped"`
	Senders map[Key]savedSender `json:"senders,omitempty"`
	Width   time.Duration       `json:"width"`
}

type savedSender struct {
	Buckets []bucket  `json:"buckets,omitempty"`
	ResetAt time.Time `json:"reset_at,omitzero"`
	Recent  []sample  `json:"recent,omitempty"` // oldest first
	Seen    time.Time `json:"seen"`
}

const (
	stateVersion = 1
	// savedRecent bounds the failures saved per key: enough for the top
	// lists of a trip soon after a restart.
	savedRecent = 64
)

// MarshalState returns the tripped keys and the windows as of now, for the
// queue's state store. The pending deferrals are not saved: after a
// restart a recipient deferred before counts again if retried, which errs
// towards tripping, for one window at most.
func (b *Breaker) MarshalState(now time.Time) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := state{Version: stateVersion, Senders: map[Key]savedSender{}, Width: b.width}
	for _, t := range b.tripped {
		st.Tripped = append(st.Tripped, *t)
	}
	sort.Slice(st.Tripped, func(i, j int) bool { return st.Tripped[i].Key < st.Tripped[j].Key })
	cur := b.slot(now)
	from := now.Add(-b.cfg.Window)
	for k, s := range b.senders {
		var sv savedSender
		for _, bk := range s.Buckets {
			if bk.Attempted > 0 && bk.Slot > cur-nBuckets && bk.Slot <= cur {
				sv.Buckets = append(sv.Buckets, bk)
			}
		}
		if len(sv.Buckets) == 0 && b.tripped[k] == nil {
			continue
		}
		// The ring from its oldest entry, keeping the newest savedRecent
		// of those inside the window.
		n := len(s.Recent)
		for i := range n {
			sm := s.Recent[(s.Next+i)%n]
			if !sm.At.Before(from) {
				sv.Recent = append(sv.Recent, sm)
			}
		}
		if len(sv.Recent) > savedRecent {
			sv.Recent = sv.Recent[len(sv.Recent)-savedRecent:]
		}
		sv.ResetAt, sv.Seen = s.ResetAt, s.Seen
		st.Senders[k] = sv
	}
	return json.Marshal(st)
}

// RestoreState loads what MarshalState wrote. The tripped keys always come
// back; the windows only if the bucket width is unchanged (a new `window`
// starts them empty).
func (b *Breaker) RestoreState(data []byte) error {
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("breaker state: %w", err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("breaker state: version %d, want %d", st.Version, stateVersion)
	}
	for _, t := range st.Tripped {
		if _, err := ParseKey(string(t.Key)); err != nil {
			return fmt.Errorf("breaker state: %w", err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range st.Tripped {
		t := t
		b.tripped[t.Key] = &t
	}
	if st.Width != b.width {
		return nil
	}
	for k, sv := range st.Senders {
		s := &sender{ResetAt: sv.ResetAt, Seen: sv.Seen}
		for _, bk := range sv.Buckets {
			if bk.Slot < 0 || bk.Attempted < 0 || bk.Failed < 0 || bk.Deferred < 0 {
				continue
			}
			s.Buckets[bk.Slot%nBuckets] = bk
		}
		if len(sv.Recent) > recentN {
			sv.Recent = sv.Recent[len(sv.Recent)-recentN:]
		}
		s.Recent = sv.Recent
		s.Next = len(s.Recent) % recentN
		b.senders[k] = s
	}
	return nil
}

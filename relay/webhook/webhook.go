package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"facteur/relay/clock"
	"facteur/relay/config"
	"facteur/relay/maillog"
)

// Kind is a delivery event's name; its string is the JSON contract.
type Kind string

// The events the scheduler emits (issue 8 §4).
const (
	Delivered  Kind = "delivered"
	Deferred   Kind = "deferred"
	Bounced    Kind = "bounced"
	Expired    Kind = "expired"
	Suppressed Kind = "suppressed"
	// UnverifiedReport is a bounce or feedback report the inbound listener
	// got without a valid VERP token: it names Recipient but proves
	// nothing, so nothing was suppressed (issue 11 §5).
	UnverifiedReport Kind = "unverified_report"
	// Breaker: the circuit breaker stopped a sender (issue 21); Sender is
	// the key ("user=www-data"), Response the figures, Breaker the details.
	Breaker Kind = "breaker"
)

// Kinds lists every event, for config validation.
var Kinds = []Kind{Delivered, Deferred, Bounced, Expired, Suppressed, UnverifiedReport, Breaker}

// Event is one recipient outcome as the receiving app sees it. Every key is
// always present, empty when unknown (a suppression found by a bounce has no
// queue ID), so that a receiver need not test for missing keys.
type Event struct {
	Event     Kind      `json:"event"`
	ID        string    `json:"id"`
	Sender    string    `json:"sender"`
	Recipient string    `json:"recipient"`
	Provider  string    `json:"provider"`
	Class     string    `json:"class"`
	Response  string    `json:"response"`
	Timestamp time.Time `json:"timestamp"` // RFC 3339, UTC
	// Breaker is set on breaker events only.
	Breaker *BreakerInfo `json:"breaker,omitempty"`
}

// BreakerInfo details a breaker event: the tripped sender and its figures
// over the window.
type BreakerInfo struct {
	Sender     string `json:"sender"` // user=www-data, auth_user=NAME, sender_domain=DOMAIN
	Action     string `json:"action"` // hold or refuse
	Recipients int    `json:"recipients"`
	Failed     int    `json:"failed"`
	Deferred   int    `json:"deferred"`
	Window     string `json:"window"`
	Held       int    `json:"held"` // queued messages held at the trip
}

// Outbox is where events wait for the receiver: *queue.Store implements it
// with its state bucket. PutState must be durable when it returns nil (the
// queue's group commit makes concurrent calls share one fsync); a nil val
// deletes key. States returns every key starting with prefix. Both are
// called concurrently, by Add from the scheduler's workers and by Run.
type Outbox interface {
	PutState(ctx context.Context, key string, val []byte) error
	States(ctx context.Context, prefix string) (map[string][]byte, error)
}

// Options configure one webhook; relay/daemon fills them from the config's
// webhooks list.
type Options struct {
	// URL receives the POSTs; http or https.
	URL string
	// Secret keys the HMAC-SHA256 signature; required.
	Secret []byte
	// Events selects the kinds to send; empty means all.
	Events []string
	// BatchSize caps the events in one POST; default 100.
	BatchSize int
	// BatchWait is how long an idle webhook gathers events after the
	// first one before posting; default 1s.
	BatchWait time.Duration
	// Timeout bounds one POST, connection to response body; default 10s.
	Timeout time.Duration
	// MaxBackoff caps the wait between retries; default 10m.
	MaxBackoff time.Duration
	// Client sends the POSTs; default: a client that follows no redirect.
	Client *http.Client
}

// The defaults of the config keys are config.DefaultWebhook's; these are
// the webhook's own.
const (
	DefaultMaxBackoff = 10 * time.Minute

	// firstBackoff is the first retry's wait; each failure doubles it.
	firstBackoff = time.Second
	// seqDigits is the width of the sequence in keys: zero-padded so that
	// bbolt's byte order is numeric order.
	seqDigits = 20
	// deleters bounds the concurrent deletes after a delivery: they share
	// the queue's group commits, so a batch costs a few fsyncs, not one
	// per event.
	deleters = 32
	// maxReason caps how much of a failing receiver's body is logged.
	maxReason = 200
	// maxDrain caps how much of a response body is read so that the
	// connection can be reused; a receiver sending more is not our reader.
	maxDrain = 64 << 10
)

// ErrConfig reports unusable Options.
var ErrConfig = errors.New("webhook config")

// Webhook stores events in a durable outbox and posts them, in order, to
// one URL. Add may be called concurrently, before Run starts and after it
// returns; Run is called once.
type Webhook struct {
	opts   Options
	out    Outbox
	clock  clock.Clock
	log    *slog.Logger
	prefix string // "webhook/<hash of URL>/"
	url    string // redacted, for logs
	accept map[Kind]bool
	block  uint64 // seqs per States read: a power of ten ≥ BatchSize

	// mu guards next, inflight and pending.
	mu sync.Mutex
	// next is the sequence number the next Add takes.
	next uint64
	// inflight holds the seqs whose PutState has not returned: Run reads
	// only below the lowest of them, so that an event committed early
	// never overtakes one committed late (which would break the order,
	// and, once head moved past it, lose it).
	inflight map[uint64]struct{}
	// pending counts the events stored and not yet delivered.
	pending int

	// head is the lowest seq that may still be in the outbox. Run owns it
	// (New sets it before Run starts).
	head uint64

	// wake tells Run that Add stored an event; buffered, never blocks Add.
	wake chan struct{}
}

// New checks opts and restores the outbox's sequence counter and pending
// count from out. It starts no goroutine.
//
// The restore reads the whole outbox once (queue.Store.States copies every
// value), so a backlog of n events costs about n×300 bytes of memory for
// the duration of New; Run then reads it a block at a time.
func New(ctx context.Context, opts Options, out Outbox, clk clock.Clock, log *slog.Logger) (*Webhook, error) {
	if out == nil {
		return nil, fmt.Errorf("%w: no outbox", ErrConfig)
	}
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: url %q: %w", ErrConfig, opts.URL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: url %q: want http://host/... or https://host/...", ErrConfig, u.Redacted())
	}
	if len(opts.Secret) == 0 {
		return nil, fmt.Errorf("%w: %s: a secret is required: the receiver trusts a POST only by its signature", ErrConfig, u.Redacted())
	}
	var accept map[Kind]bool
	if len(opts.Events) > 0 {
		accept = map[Kind]bool{}
		for _, e := range opts.Events {
			if !slices.Contains(Kinds, Kind(e)) {
				return nil, fmt.Errorf("%w: %s: unknown event %q, want one of %v", ErrConfig, u.Redacted(), e, Kinds)
			}
			accept[Kind(e)] = true
		}
	}
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"batch_size", int64(opts.BatchSize)},
		{"batch_wait", int64(opts.BatchWait)},
		{"timeout", int64(opts.Timeout)},
		{"max_backoff", int64(opts.MaxBackoff)},
	} {
		if c.v < 0 {
			return nil, fmt.Errorf("%w: %s: negative %s", ErrConfig, u.Redacted(), c.name)
		}
	}
	def := config.DefaultWebhook()
	if opts.BatchSize == 0 {
		opts.BatchSize = def.BatchSize
	}
	if opts.BatchWait == 0 {
		opts.BatchWait = time.Duration(def.BatchWait)
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Duration(def.Timeout)
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.Client == nil {
		opts.Client = &http.Client{
			// A redirect would turn the POST into a GET (301, 302) or send
			// the signed events to another host: treat it as a failure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if clk == nil {
		clk = clock.Real{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Webhook{
		opts:     opts,
		out:      out,
		clock:    clk,
		log:      log,
		prefix:   Prefix(opts.URL),
		url:      u.Redacted(),
		accept:   accept,
		block:    blockFor(opts.BatchSize),
		inflight: map[uint64]struct{}{},
		wake:     make(chan struct{}, 1),
	}
	stored, err := out.States(ctx, w.prefix)
	if err != nil {
		return nil, fmt.Errorf("webhook %s: read outbox: %w", w.url, err)
	}
	var lo, hi uint64
	for k := range stored {
		seq, ok := w.seqOf(k)
		if !ok {
			continue
		}
		if w.pending == 0 || seq < lo {
			lo = seq
		}
		hi = max(hi, seq)
		w.pending++
	}
	w.next, w.head = hi+1, hi+1
	if w.pending > 0 {
		w.head = lo
	}
	return w, nil
}

// Prefix is the outbox key prefix of the webhook posting to rawURL: a hash,
// so that any URL makes a short fixed-width key, and two webhooks keep two
// outboxes. A changed URL starts an empty outbox; the old one's events stay
// under the old prefix. Two Webhooks over one Outbox must not share a URL:
// their sequence numbers would collide (relay/config should refuse a
// repeated url).
func Prefix(rawURL string) string {
	h := sha256.Sum256([]byte(rawURL))
	return "webhook/" + hex.EncodeToString(h[:12]) + "/"
}

// blockFor returns the smallest power of ten ≥ n (at least 10): Run reads
// the outbox with a key prefix that fixes all digits but the last few, so
// one States call returns at most one block, about one batch.
func blockFor(n int) uint64 {
	b := uint64(10)
	for b < uint64(n) && b < 1e18 {
		b *= 10
	}
	return b
}

func (w *Webhook) key(seq uint64) string {
	return w.prefix + fmt.Sprintf("%0*d", seqDigits, seq)
}

func (w *Webhook) seqOf(key string) (uint64, bool) {
	s, ok := strings.CutPrefix(key, w.prefix)
	if !ok || len(s) != seqDigits {
		return 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	return seq, err == nil
}

// Add stores ev in the outbox if this webhook wants its kind, and returns
// once it is durable: an event the scheduler reported is not lost by a
// crash that follows. Concurrent calls share the queue's fsyncs. ctx
// bounds the wait for the commit; at shutdown pass one that outlives Run,
// the scheduler still reports the deliveries it finishes then. An error
// means the event is not stored (the queue's disk is full or failing).
func (w *Webhook) Add(ctx context.Context, ev Event) error {
	if w.accept != nil && !w.accept[ev.Event] {
		return nil
	}
	ev.Timestamp = ev.Timestamp.UTC()
	val, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("webhook %s: encode event: %w", w.url, err)
	}
	w.mu.Lock()
	seq := w.next
	w.next++
	w.inflight[seq] = struct{}{}
	w.mu.Unlock()

	// Outside mu: concurrent Adds must reach the group commit together.
	err = w.out.PutState(ctx, w.key(seq), val)

	w.mu.Lock()
	delete(w.inflight, seq)
	if err == nil {
		w.pending++
	}
	w.mu.Unlock()
	if err != nil {
		// The seq stays unused: Run skips gaps.
		return fmt.Errorf("webhook %s: store %s event for %s: %w", w.url, ev.Event, ev.Recipient, err)
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// Pending returns how many events wait in the outbox, for metrics.
func (w *Webhook) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending
}

// durableBelow is the seq below which every Add has returned: Run may
// deliver only those.
func (w *Webhook) durableBelow() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	lim := w.next
	for s := range w.inflight {
		lim = min(lim, s)
	}
	return lim
}

// stored is one outbox entry.
type stored struct {
	seq uint64
	key string
	raw json.RawMessage
}

// load returns up to BatchSize events from head on, in order. It moves head
// past empty blocks and drops entries that are not events (they would make
// every POST invalid and block the outbox forever).
func (w *Webhook) load(ctx context.Context) ([]stored, error) {
	limit := w.durableBelow()
	var out []stored
	for from := w.head; from < limit && len(out) < w.opts.BatchSize; {
		start := from - from%w.block
		digits := fmt.Sprintf("%0*d", seqDigits, start)
		m, err := w.out.States(ctx, w.prefix+digits[:seqDigits-len(strconv.FormatUint(w.block, 10))+1])
		if err != nil {
			return out, fmt.Errorf("webhook %s: read outbox: %w", w.url, err)
		}
		var got []stored
		for k, v := range m {
			seq, ok := w.seqOf(k)
			if !ok || seq < from || seq >= limit {
				continue
			}
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				w.log.Error(maillog.WebhookDropped, "url", w.url, "key", k, "err", err)
				if err := w.out.PutState(ctx, k, nil); err != nil {
					return out, fmt.Errorf("webhook %s: delete corrupt %s: %w", w.url, k, err)
				}
				w.mu.Lock()
				w.pending--
				w.mu.Unlock()
				continue
			}
			got = append(got, stored{seq: seq, key: k, raw: v})
		}
		slices.SortFunc(got, func(a, b stored) int { return cmp.Compare(a.seq, b.seq) })
		out = append(out, got...)
		from = min(start+w.block, limit)
		if len(out) == 0 {
			w.head = from // nothing below from: skip the empty block next time
		}
	}
	if len(out) > w.opts.BatchSize {
		out = out[:w.opts.BatchSize]
	}
	return out, nil
}

// Run posts the outbox to the URL until ctx is done, then returns nil.
// Events go in seq order, in batches of at most BatchSize; a batch is
// retried, with the same events, until the receiver answers 2xx, and only
// then deleted: at least once, never dropped, never reordered.
//
// Batching: a full batch goes at once; a partial one waits BatchWait from
// the moment Run first sees its oldest event, or until BatchSize events
// are pending (Kafka's linger.ms): a backlog drains at full speed and a
// trickle costs one POST per BatchWait.
func (w *Webhook) Run(ctx context.Context) error {
	var waited uint64 // the first seq of the last partial batch that waited
	failures := 0     // consecutive outbox read failures
	for {
		evs, err := w.load(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d := w.backoff(failures)
			failures++
			w.log.Error(maillog.WebhookFailed, "url", w.url, "err", err, "retry_in", d)
			if !w.sleep(ctx, d) {
				return nil
			}
			continue
		}
		failures = 0
		if len(evs) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-w.wake:
			}
			continue
		}
		if len(evs) < w.opts.BatchSize && evs[0].seq != waited {
			waited = evs[0].seq
			if !w.gather(ctx) {
				return nil
			}
			continue
		}
		if !w.deliver(ctx, evs) {
			return nil
		}
	}
}

// gather waits BatchWait, or until BatchSize events are pending; false
// when ctx is done.
func (w *Webhook) gather(ctx context.Context) bool {
	timer := w.clock.After(w.opts.BatchWait)
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer:
			return true
		case <-w.wake:
			if w.Pending() >= w.opts.BatchSize {
				return true
			}
		}
	}
}

// sleep waits d on the clock; false when ctx is done first.
func (w *Webhook) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-w.clock.After(d):
		return true
	}
}

// backoff is the wait after the n-th consecutive failure (n from 0): 1s
// doubling up to MaxBackoff, then a random point in its upper half, so that
// many servers whose receiver came back do not all retry at once.
func (w *Webhook) backoff(n int) time.Duration {
	d := firstBackoff
	for i := 0; i < n && d < w.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.opts.MaxBackoff)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(d-half+1)
}

// deliver posts evs until the receiver takes them, then deletes them from
// the outbox; false when ctx ended first (the events stay in the outbox).
func (w *Webhook) deliver(ctx context.Context, evs []stored) bool {
	body := encodeBatch(evs)
	for attempt := 0; ; attempt++ {
		status, reason, err := w.post(ctx, body)
		if err == nil && status/100 == 2 {
			w.remove(ctx, evs)
			w.log.Info(maillog.WebhookDelivered, "url", w.url, "events", len(evs), "status", status, "attempts", attempt+1)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d := w.backoff(attempt)
		if err == nil {
			if r := retryAfter(reason.header, w.clock.Now()); r > d {
				d = min(r, w.opts.MaxBackoff)
			}
		}
		attrs := []any{"url", w.url, "events", len(evs), "attempt", attempt + 1, "retry_in", d}
		switch {
		case err != nil:
			w.log.Warn(maillog.WebhookFailed, append(attrs, "err", err)...)
		case status/100 == 4 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
			// The receiver refuses the request itself (bad secret, wrong
			// path): retrying cannot help until someone fixes it, so say
			// so loudly, but keep the events: the fix usually comes.
			w.log.Error(maillog.WebhookFailed, append(attrs, "status", status, "resp", reason.body,
				"hint", "the receiver refuses the request; check its URL and secret, events are kept and retried")...)
		default:
			w.log.Warn(maillog.WebhookFailed, append(attrs, "status", status, "resp", reason.body)...)
		}
		if !w.sleep(ctx, d) {
			return false
		}
	}
}

// encodeBatch writes {"events":[...]} from the stored JSON, byte for byte.
func encodeBatch(evs []stored) []byte {
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i, e := range evs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e.raw)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// remove deletes delivered events from the outbox and moves head past
// them. A failed delete is logged: that event is posted again after a
// restart (delivery is at least once).
func (w *Webhook) remove(ctx context.Context, evs []stored) {
	// The deletes run concurrently so that they share the queue's group
	// commits, and on a context that ignores shutdown: the receiver has
	// the events, leaving them would only repeat them at the next start.
	ctx = context.WithoutCancel(ctx)
	sem := make(chan struct{}, deleters)
	var wg sync.WaitGroup
	for _, e := range evs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := w.out.PutState(ctx, e.key, nil); err != nil {
				w.log.Error(maillog.WebhookFailed, "url", w.url, "key", e.key, "err", fmt.Errorf("delete delivered event: %w", err))
			}
		})
	}
	wg.Wait()
	w.head = evs[len(evs)-1].seq + 1
	w.mu.Lock()
	w.pending -= len(evs)
	w.mu.Unlock()
}

// response is what a non-2xx answer says, for the log and Retry-After.
type response struct {
	header http.Header
	body   string
}

// post sends one signed POST and returns the status.
func (w *Webhook) post(ctx context.Context, body []byte) (int, response, error) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	ts := strconv.FormatInt(w.clock.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.opts.URL, bytes.NewReader(body))
	if err != nil {
		return 0, response{}, fmt.Errorf("new request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "facteur")
	req.Header.Set("X-Facteur-Timestamp", ts)
	req.Header.Set("X-Facteur-Signature", Sign(w.opts.Secret, ts, body))
	resp, err := w.opts.Client.Do(req)
	if err != nil {
		return 0, response{}, err
	}
	defer resp.Body.Close()
	var r response
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason))
		r = response{header: resp.Header, body: strings.TrimSpace(string(b))}
	}
	// Drain so that the connection is reused; the body's content is not ours.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	return resp.StatusCode, r, nil
}

// retryAfter reads a Retry-After header (RFC 9110 §10.2.3: seconds or an
// HTTP date); 0 when absent or unreadable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s > 0 {
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// Sign returns the X-Facteur-Signature value for a body sent at the unix
// time ts (the X-Facteur-Timestamp value): "sha256=" and the hex
// HMAC-SHA256, keyed by secret, of ts + "." + body. Receivers written in Go
// can compare it with hmac.Equal.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

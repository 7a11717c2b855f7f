package dashboard

import (
	"sort"
	"strings"
	"sync"
	"time"

	"facteur/queue"
)

// Event is one delivery outcome the tally counts: what the scheduler
// reports for each recipient (delivered, deferred, bounced, expired).
type Event struct {
	Kind     string // delivered, deferred, bounced, expired
	ID       queue.ID
	Sender   string
	User     string
	Rcpt     string
	Provider string
	Class    string
	Response string
	At       time.Time
}

// Counts are the outcomes of one provider, sender domain or user in a
// window. Expired recipients count as bounced: the sender's list has the
// same problem either way.
type Counts struct {
	Delivered  int `json:"delivered"`
	Deferred   int `json:"deferred"`
	Bounced    int `json:"bounced"`
	Complaints int `json:"complaints"`
}

func (c *Counts) add(o Counts) {
	c.Delivered += o.Delivered
	c.Deferred += o.Deferred
	c.Bounced += o.Bounced
	c.Complaints += o.Complaints
}

// Reply is one answer of a provider, kept for the providers page.
type Reply struct {
	At       time.Time `json:"at"`
	Event    string    `json:"event"`
	ID       queue.ID  `json:"id"`
	Rcpt     string    `json:"rcpt"`
	Class    string    `json:"class"`
	Response string    `json:"response"`
}

const (
	// bucketWidth is the resolution of the hour chart; a day is 288 of
	// them, a few maps each: small whatever the traffic.
	bucketWidth = 5 * time.Minute
	keepFor     = 24 * time.Hour
	// RepliesKept is how many replies of each provider the page shows.
	RepliesKept = 20
	// originsKept bounds the queue ID → sender map a complaint is
	// attributed by (feedback reports arrive hours or days later; older
	// ones are counted by the sender of the message if it is still
	// queued): some 5 MB.
	originsKept = 50000
)

type bucket struct {
	start     time.Time
	providers map[string]*Counts
	domains   map[string]*Counts
	users     map[string]*Counts
}

type origin struct{ domain, user string }

// replyRing is a provider's last RepliesKept replies: written in place, so
// that a busy provider's every event costs no copy of the list.
type replyRing struct {
	buf  [RepliesKept]Reply
	next int // where the next reply goes: the oldest once full
	n    int // how many are kept, at most RepliesKept
}

func (r *replyRing) add(rep Reply) {
	r.buf[r.next] = rep
	r.next = (r.next + 1) % RepliesKept
	if r.n < RepliesKept {
		r.n++
	}
}

// newestFirst returns the kept replies, the last added first.
func (r *replyRing) newestFirst() []Reply {
	out := make([]Reply, r.n)
	for i := range out {
		out[i] = r.buf[(r.next-1-i+RepliesKept)%RepliesKept]
	}
	return out
}

// idRing is a FIFO of at most max queue IDs, in a fixed array once full:
// the oldest is overwritten in place instead of slid off the front of a
// slice that append copies over and over.
type idRing struct {
	ids  []queue.ID
	head int // the oldest
	n    int // how many are held
}

// push adds id and returns the ID it evicted ("" while not full).
func (r *idRing) push(id queue.ID, max int) queue.ID {
	switch {
	case r.n < len(r.ids):
		// Room left by pop.
		r.ids[(r.head+r.n)%len(r.ids)] = id
		r.n++
		return ""
	case len(r.ids) < max:
		if r.head != 0 {
			// Popped and refilled past the end: lay it out from 0 to grow.
			r.ids = append(append(make([]queue.ID, 0, len(r.ids)+1), r.ids[r.head:]...), r.ids[:r.head]...)
			r.head = 0
		}
		r.ids = append(r.ids, id)
		r.n++
		return ""
	}
	old := r.ids[r.head]
	r.ids[r.head] = id
	r.head = (r.head + 1) % len(r.ids)
	return old
}

// pop removes and returns the oldest ID ("" when empty).
func (r *idRing) pop() queue.ID {
	if r.n == 0 {
		return ""
	}
	old := r.ids[r.head]
	r.ids[r.head] = ""
	r.head = (r.head + 1) % len(r.ids)
	r.n--
	return old
}

// Tally counts delivery outcomes and complaints in 5-minute buckets over
// the last day, per provider, sender domain and local user, and keeps each
// provider's last replies. It lives in memory: after a restart the windows
// start empty (the queue's own counters are what survives). Safe for
// concurrent use.
type Tally struct {
	mu      sync.Mutex // guards all below
	buckets []*bucket  // oldest first
	replies map[string]*replyRing
	origins map[queue.ID]origin
	order   idRing // origins in insertion order, for eviction
}

// NewTally returns an empty tally.
func NewTally() *Tally {
	return &Tally{replies: map[string]*replyRing{}, origins: map[queue.ID]origin{}}
}

// SenderDomain is the domain part of a sender address, lower-cased; "<>"
// for the null sender.
func SenderDomain(sender string) string {
	if sender == "" {
		return "<>"
	}
	if i := strings.LastIndexByte(sender, '@'); i >= 0 {
		return strings.ToLower(sender[i+1:])
	}
	return strings.ToLower(sender)
}

func (t *Tally) bucketAt(at time.Time) *bucket {
	start := at.Truncate(bucketWidth)
	n := len(t.buckets)
	if n > 0 && t.buckets[n-1].start.Equal(start) {
		return t.buckets[n-1]
	}
	// Late events (a clock step back) join the bucket they belong to.
	for i := n - 1; i >= 0 && !t.buckets[i].start.Before(start); i-- {
		if t.buckets[i].start.Equal(start) {
			return t.buckets[i]
		}
	}
	b := &bucket{start: start, providers: map[string]*Counts{}, domains: map[string]*Counts{}, users: map[string]*Counts{}}
	t.buckets = append(t.buckets, b)
	sort.Slice(t.buckets, func(i, j int) bool { return t.buckets[i].start.Before(t.buckets[j].start) })
	// Drop what is older than a day.
	cut := 0
	for cut < len(t.buckets) && t.buckets[cut].start.Before(start.Add(-keepFor)) {
		cut++
	}
	t.buckets = t.buckets[cut:]
	return b
}

func counter(m map[string]*Counts, k string) *Counts {
	c := m[k]
	if c == nil {
		c = &Counts{}
		m[k] = c
	}
	return c
}

// Record counts one outcome.
func (t *Tally) Record(e Event) {
	var one Counts
	switch e.Kind {
	case "delivered":
		one.Delivered = 1
	case "deferred":
		one.Deferred = 1
	case "bounced", "expired":
		one.Bounced = 1
	default:
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bucketAt(e.At)
	if e.Provider != "" {
		counter(b.providers, e.Provider).add(one)
		rs := t.replies[e.Provider]
		if rs == nil {
			rs = &replyRing{}
			t.replies[e.Provider] = rs
		}
		rs.add(Reply{At: e.At, Event: e.Kind, ID: e.ID, Rcpt: e.Rcpt, Class: e.Class, Response: e.Response})
	}
	dom := SenderDomain(e.Sender)
	counter(b.domains, dom).add(one)
	if e.User != "" {
		counter(b.users, e.User).add(one)
	}
	if e.ID != "" {
		if _, ok := t.origins[e.ID]; !ok {
			t.origins[e.ID] = origin{dom, e.User}
			if old := t.order.push(e.ID, originsKept); old != "" {
				delete(t.origins, old)
			}
		}
	}
}

// Complaint counts a feedback report (a recipient marked the message as
// spam) against the message's sender domain and user: those facteur
// delivered it for when it still knows the queue ID, else sender and user
// as the report gives them.
func (t *Tally) Complaint(id queue.ID, sender, user string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	dom := ""
	if sender != "" {
		dom = SenderDomain(sender)
	}
	if o, ok := t.origins[id]; ok && id != "" {
		dom, user = o.domain, o.user
	}
	if dom == "" {
		return
	}
	b := t.bucketAt(at)
	counter(b.domains, dom).Complaints++
	if user != "" {
		counter(b.users, user).Complaints++
	}
}

// Window is the outcomes of the last Span.
type Window struct {
	Span      time.Duration
	Providers map[string]Counts
	Domains   map[string]Counts
	Users     map[string]Counts
}

// Window sums the buckets that started within span before now.
func (t *Tally) Window(now time.Time, span time.Duration) Window {
	w := Window{Span: span, Providers: map[string]Counts{}, Domains: map[string]Counts{}, Users: map[string]Counts{}}
	from := now.Add(-span)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range t.buckets {
		if b.start.Add(bucketWidth).Before(from) || b.start.After(now) {
			continue
		}
		for _, pair := range []struct {
			src map[string]*Counts
			dst map[string]Counts
		}{{b.providers, w.Providers}, {b.domains, w.Domains}, {b.users, w.Users}} {
			for k, c := range pair.src {
				sum := pair.dst[k]
				sum.add(*c)
				pair.dst[k] = sum
			}
		}
	}
	return w
}

// Point is the all-provider outcomes of one interval of a series.
type Point struct {
	Start  time.Time `json:"start"`
	Counts Counts    `json:"counts"`
}

// Series returns n consecutive intervals of width step ending at now,
// oldest first, summed over providers (the overview's chart).
func (t *Tally) Series(now time.Time, step time.Duration, n int) []Point {
	// Intervals on round times (an hour's bar is 13:00-14:00); step is
	// a multiple of the bucket width.
	end := now.Truncate(step).Add(step)
	start := end.Add(-step * time.Duration(n))
	out := make([]Point, n)
	for i := range out {
		out[i].Start = start.Add(step * time.Duration(i))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range t.buckets {
		if b.start.Before(start) || !b.start.Before(end) {
			continue
		}
		i := int(b.start.Sub(start) / step)
		for _, c := range b.providers {
			out[i].Counts.add(*c)
		}
	}
	return out
}

// Replies returns the last replies of provider, newest first.
func (t *Tally) Replies(provider string) []Reply {
	t.mu.Lock()
	defer t.mu.Unlock()
	rs := t.replies[provider]
	if rs == nil {
		return []Reply{}
	}
	return rs.newestFirst()
}

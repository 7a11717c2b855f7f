package admin

import (
	"cmp"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"facteur/queue"
)

// Top (issue 13 §3, Postfix's qshape for a hacked site): the senders, local
// users, client IPs, recipient domains and subjects with the most messages,
// in the queue and among those received in the last hour, each with its
// recipients counted by state.

// StateCounts is how many messages a key has and its recipients by state.
type StateCounts struct {
	Messages int            `json:"messages"`
	States   map[string]int `json:"states"`
}

// TopEntry is one sender, user, client, domain or subject.
type TopEntry struct {
	Key      string      `json:"key"`
	Queue    StateCounts `json:"queue"`
	LastHour StateCounts `json:"last_hour"`
}

// TopReport is the answer of GET /queue/top.
type TopReport struct {
	At       time.Time  `json:"at"`
	Messages int        `json:"messages"`  // in the queue
	LastHour int        `json:"last_hour"` // received in the last hour
	Senders  []TopEntry `json:"senders"`
	Users    []TopEntry `json:"users"`
	Clients  []TopEntry `json:"clients"`
	Domains  []TopEntry `json:"domains"`
	Subjects []TopEntry `json:"subjects"`
}

// Arrival is what the daemon remembers of a message received recently,
// after it left the queue: who sent it and what became of each recipient.
type Arrival struct {
	ID       queue.ID
	At       time.Time
	Sender   string
	ClientIP string
	User     string
	Subject  string
	Rcpts    []RcptState // in the order of the envelope
}

// RcptState is a recipient and its last status (queued until an event).
type RcptState struct {
	Addr   string
	Status string
}

// Arrivals is the daemon's memory of the last hour's arrivals; the zero
// value is ready. Safe for concurrent use.
//
// It is kept compact because a flood fills it (issue 19: memory bounded
// with a million messages): an entry is a value in a slice, not a pointer
// and a map of recipients; the sender, client, user and subject strings,
// repeated across a flood's messages, are interned; the ID index is the
// slice itself (IDs grow with arrival, so a binary search finds one).
type Arrivals struct {
	mu      sync.Mutex // guards the fields below
	entries []arrival  // by arrival, oldest first
	intern  map[string]string
	dropped int // entries dropped since intern was last rebuilt
}

type arrival struct {
	id                            queue.ID
	at                            int64 // Unix nanoseconds
	sender, client, user, subject string
	rcpts                         []RcptState
}

// maxArrivals bounds the memory (about 150 bytes a message): an hour of a
// flood is still counted, as far as this many messages.
const maxArrivals = 100000

// Add records a message just queued.
func (a *Arrivals) Add(m queue.Message, subject string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.intern == nil {
		a.intern = map[string]string{}
	}
	e := arrival{id: m.ID, at: m.Created.UnixNano(), sender: a.internLocked(m.Sender), client: a.internLocked(m.ClientIP),
		user: a.internLocked(m.User), subject: a.internLocked(subject), rcpts: make([]RcptState, len(m.Recipients))}
	for i, r := range m.Recipients {
		st := string(r.Status)
		if st == "" {
			st = string(queue.Queued)
		}
		e.rcpts[i] = RcptState{Addr: r.Address, Status: st}
	}
	// Sessions finish out of ID order by a few places at most: insert from
	// the end, so that the slice stays sorted for Event's search.
	k := len(a.entries)
	for k > 0 && a.entries[k-1].id > e.id {
		k--
	}
	a.entries = slices.Insert(a.entries, k, e)
	if len(a.entries) > maxArrivals {
		a.dropLocked(len(a.entries) - maxArrivals)
	}
}

// internLocked returns the stored copy of s. The table is rebuilt when the
// entries it served are dropped (dropLocked), so it holds only live strings.
func (a *Arrivals) internLocked(s string) string {
	if v, ok := a.intern[s]; ok {
		return v
	}
	a.intern[s] = s
	return s
}

// dropLocked forgets the n oldest entries, and from time to time the
// interned strings only they used.
func (a *Arrivals) dropLocked(n int) {
	clear(a.entries[:n])
	a.entries = a.entries[n:]
	// Rebuilt once as many entries were dropped as half of those kept: the
	// cost stays a constant per entry, whatever share of the strings are
	// unique (every subject different, every client too).
	a.dropped += n
	if a.dropped > len(a.entries)/2+1024 {
		a.dropped = 0
		old := a.intern
		a.intern = make(map[string]string, len(old)/2)
		for _, e := range a.entries {
			for _, s := range []string{e.sender, e.client, e.user, e.subject} {
				a.intern[s] = old[s]
			}
		}
	}
	if cap(a.entries) > 2*len(a.entries)+1024 {
		a.entries = slices.Clone(a.entries) // give the dropped part back
	}
}

// Event records a delivery outcome (delivered, deferred, bounced, expired,
// suppressed) of a remembered message.
func (a *Arrivals) Event(id queue.ID, rcpt, event string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, ok := slices.BinarySearchFunc(a.entries, id, func(e arrival, id queue.ID) int { return cmp.Compare(e.id, id) })
	if !ok {
		return
	}
	for j := range a.entries[i].rcpts {
		if a.entries[i].rcpts[j].Addr == rcpt {
			a.entries[i].rcpts[j].Status = event
		}
	}
}

// Since returns copies of the arrivals at or after t, and forgets older ones.
func (a *Arrivals) Since(t time.Time) []Arrival {
	a.mu.Lock()
	defer a.mu.Unlock()
	cut := t.UnixNano()
	i := 0
	for i < len(a.entries) && a.entries[i].at < cut {
		i++
	}
	if i > 0 {
		a.dropLocked(i)
	}
	out := make([]Arrival, 0, len(a.entries))
	for _, e := range a.entries {
		out = append(out, Arrival{ID: e.id, At: time.Unix(0, e.at), Sender: e.sender, ClientIP: e.client,
			User: e.user, Subject: e.subject, Rcpts: slices.Clone(e.rcpts)})
	}
	return out
}

// Subject decodes a Subject field for display (RFC 2047), on one line.
func Subject(raw string) string {
	s, err := new(mime.WordDecoder).DecodeHeader(raw)
	if err != nil {
		s = raw
	}
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "(no subject)"
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// headerValue returns the unfolded value of the first field name in a
// message's header section.
func headerValue(msg []byte, name string) string {
	h := string(HeaderOf(msg))
	lines := strings.Split(strings.ReplaceAll(h, "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		k, v, ok := strings.Cut(lines[i], ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), name) {
			continue
		}
		for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], " ") || strings.HasPrefix(lines[i+1], "\t")) {
			i++
			v += " " + strings.TrimSpace(lines[i])
		}
		return strings.TrimSpace(v)
	}
	return ""
}

// maxTopKeys bounds each table of a report: a flood of messages with a
// different subject each (an order number in it) must not make a report of
// a million-message queue hold a million entries. Keys first seen past the
// bound are counted together under otherKeys.
const (
	maxTopKeys = 20000
	otherKeys  = "(other keys)"
)

// topTally builds a report one message at a time, so that the queue is
// streamed, not loaded.
type topTally struct {
	rep     TopReport
	hourAgo time.Time
	tables  map[string]map[string]*TopEntry
	recent  []Arrival
	inQueue map[queue.ID]int // recent arrivals by ID -> index; -1 once seen queued
}

func newTopTally(now time.Time, recent []Arrival) *topTally {
	t := &topTally{
		rep:     TopReport{At: now},
		hourAgo: now.Add(-time.Hour),
		tables:  map[string]map[string]*TopEntry{"sender": {}, "user": {}, "client": {}, "domain": {}, "subject": {}},
		recent:  recent,
		inQueue: make(map[queue.ID]int, len(recent)),
	}
	for i, a := range recent {
		t.inQueue[a.ID] = i
	}
	return t
}

func (t *topTally) add(table, key string, inQueue, lastHour bool, rcpts []RcptState) {
	tab := t.tables[table]
	e := tab[key]
	if e == nil {
		if len(tab) >= maxTopKeys {
			key = otherKeys
			e = tab[key]
		}
		if e == nil {
			e = &TopEntry{Key: key, Queue: StateCounts{States: map[string]int{}}, LastHour: StateCounts{States: map[string]int{}}}
			tab[key] = e
		}
	}
	count := func(c *StateCounts) {
		c.Messages++
		for _, r := range rcpts {
			c.States[r.Status]++
		}
	}
	if inQueue {
		count(&e.Queue)
	}
	if lastHour {
		count(&e.LastHour)
	}
}

func (t *topTally) feed(sender, user, client, subject string, rcpts []RcptState, inQueue, lastHour bool) {
	if sender == "" {
		sender = "<>"
	}
	if user == "" {
		user = "(unknown)"
	}
	if client == "" {
		client = "local"
	}
	t.add("sender", sender, inQueue, lastHour, rcpts)
	t.add("user", user, inQueue, lastHour, rcpts)
	t.add("client", client, inQueue, lastHour, rcpts)
	t.add("subject", subject, inQueue, lastHour, rcpts)
	// Each domain of the message once, with its own recipients.
	done := map[string]bool{}
	for _, r := range rcpts {
		d := strings.ToLower(domainOf(r.Addr))
		if done[d] {
			continue
		}
		done[d] = true
		var rs []RcptState
		for _, x := range rcpts {
			if strings.EqualFold(domainOf(x.Addr), d) {
				rs = append(rs, x)
			}
		}
		t.add("domain", d, inQueue, lastHour, rs)
	}
}

// queued counts a message of the queue.
func (t *topTally) queued(m queue.Message, subject string) {
	t.rep.Messages++
	if i, ok := t.inQueue[m.ID]; ok && i >= 0 {
		t.inQueue[m.ID] = -1 // counted here, not again as a past arrival
	}
	rcpts := make([]RcptState, len(m.Recipients))
	for i, r := range m.Recipients {
		rcpts[i] = RcptState{Addr: r.Address, Status: string(r.Status)}
	}
	last := !m.Created.Before(t.hourAgo)
	if last {
		t.rep.LastHour++
	}
	t.feed(m.Sender, m.User, m.ClientIP, subject, rcpts, true, last)
}

// report adds the recent arrivals that left the queue and returns the n
// first of each table.
func (t *topTally) report(n int) TopReport {
	for _, a := range t.recent {
		if t.inQueue[a.ID] < 0 || a.At.Before(t.hourAgo) {
			continue
		}
		t.rep.LastHour++
		t.feed(a.Sender, a.User, a.ClientIP, a.Subject, a.Rcpts, false, true)
	}
	sorted := func(tab map[string]*TopEntry) []TopEntry {
		out := make([]TopEntry, 0, len(tab))
		for _, e := range tab {
			out = append(out, *e)
		}
		sort.Slice(out, func(i, j int) bool {
			a, b := out[i], out[j]
			if a.Queue.Messages+a.LastHour.Messages != b.Queue.Messages+b.LastHour.Messages {
				return a.Queue.Messages+a.LastHour.Messages > b.Queue.Messages+b.LastHour.Messages
			}
			return a.Key < b.Key
		})
		if len(out) > n {
			out = out[:n]
		}
		return out
	}
	rep := t.rep
	rep.Senders = sorted(t.tables["sender"])
	rep.Users = sorted(t.tables["user"])
	rep.Clients = sorted(t.tables["client"])
	rep.Domains = sorted(t.tables["domain"])
	rep.Subjects = sorted(t.tables["subject"])
	return rep
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

// top serves GET /queue/top?n=10.
func (s *Server) top(w http.ResponseWriter, r *http.Request) {
	n := 10
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			WriteError(w, http.StatusBadRequest, fmt.Errorf("n: want a positive number, got %q", v))
			return
		}
	}
	// The queue is streamed (a page of messages per read transaction, one
	// body read per message for its Subject), never loaded: a report of a
	// million queued messages holds the tables, not the queue.
	now := s.Clock.Now()
	var recent []Arrival
	if s.Arrivals != nil {
		recent = s.Arrivals.Since(now.Add(-time.Hour))
	}
	t := newTopTally(now, recent)
	err := s.Store.Each(r.Context(), queue.Filter{}, func(m queue.Message) error {
		subject := ""
		if body, err := s.Store.Body(r.Context(), m.ID); err == nil {
			subject = Subject(headerValue(body, "Subject"))
		} // else delivered meanwhile: counted without its subject
		t.queued(m, subject)
		return nil
	})
	if err != nil {
		WriteError(w, statusFor(err), err)
		return
	}
	WriteJSON(w, http.StatusOK, t.report(n))
}

// WriteTop prints the report as `facteur top` shows it.
func WriteTop(w io.Writer, rep TopReport) {
	fmt.Fprintf(w, "%d message%s in the queue, %d received in the last hour (%s)\n", rep.Messages, Plural(rep.Messages), rep.LastHour, rep.At.Local().Format(TextTime))
	for _, t := range []struct {
		title   string
		entries []TopEntry
	}{{"Senders", rep.Senders}, {"Local users", rep.Users}, {"Client IPs", rep.Clients}, {"Recipient domains", rep.Domains}, {"Subjects", rep.Subjects}} {
		fmt.Fprintf(w, "\n%-40s %7s %-28s %7s %s\n", t.title, "QUEUE", "", "LAST 1H", "")
		if len(t.entries) == 0 {
			fmt.Fprintln(w, "  (none)")
		}
		for _, e := range t.entries {
			fmt.Fprintf(w, "%-40s %7d %-28s %7d %s\n", clip(e.Key, 40), e.Queue.Messages, states(e.Queue.States), e.LastHour.Messages, states(e.LastHour.States))
		}
	}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// states prints recipients by state, the usual ones first.
func states(m map[string]int) string {
	order := []string{"queued", "deferred", "held", "delivered", "bounced", "expired", "suppressed"}
	var parts []string
	seen := map[string]bool{}
	for _, k := range order {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
		seen[k] = true
	}
	var rest []string
	for k := range m {
		if !seen[k] && m[k] > 0 {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

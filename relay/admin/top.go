package admin

import (
	"fmt"
	"io"
	"mime"
	"net/http"
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
	Rcpts    map[string]string // recipient -> last status (queued until an event)
}

// Arrivals is the daemon's memory of the last hour's arrivals; the zero
// value is ready. Safe for concurrent use.
type Arrivals struct {
	mu    sync.Mutex // guards byID and order
	byID  map[queue.ID]*Arrival
	order []queue.ID
}

// maxArrivals bounds the memory: an hour of a flood is still counted, as far
// as this many messages.
const maxArrivals = 200000

// Add records a message just queued.
func (a *Arrivals) Add(m queue.Message, subject string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byID == nil {
		a.byID = map[queue.ID]*Arrival{}
	}
	ar := &Arrival{ID: m.ID, At: m.Created, Sender: m.Sender, ClientIP: m.ClientIP, User: m.User, Subject: subject, Rcpts: map[string]string{}}
	for _, r := range m.Recipients {
		st := r.Status
		if st == "" {
			st = queue.Queued
		}
		ar.Rcpts[r.Address] = string(st)
	}
	a.byID[m.ID] = ar
	a.order = append(a.order, m.ID)
	if len(a.order) > maxArrivals {
		delete(a.byID, a.order[0])
		a.order = a.order[1:]
	}
}

// Event records a delivery outcome (delivered, deferred, bounced, expired,
// suppressed) of a remembered message.
func (a *Arrivals) Event(id queue.ID, rcpt, event string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ar := a.byID[id]; ar != nil {
		if _, ok := ar.Rcpts[rcpt]; ok {
			ar.Rcpts[rcpt] = event
		}
	}
}

// Since returns copies of the arrivals at or after t, and forgets older ones.
func (a *Arrivals) Since(t time.Time) []Arrival {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := 0
	for i < len(a.order) && a.byID[a.order[i]].At.Before(t) {
		delete(a.byID, a.order[i])
		i++
	}
	a.order = a.order[i:]
	out := make([]Arrival, 0, len(a.order))
	for _, id := range a.order {
		ar := *a.byID[id]
		ar.Rcpts = make(map[string]string, len(a.byID[id].Rcpts))
		for k, v := range a.byID[id].Rcpts {
			ar.Rcpts[k] = v
		}
		out = append(out, ar)
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

type topRow struct {
	key   string
	queue bool
	rcpts map[string]string // recipient -> status, for this message
}

// ComputeTop builds the report from the queue, the subjects of its
// messages, and the recent arrivals (nil when the daemon is down: the last
// hour is then what is still queued).
func ComputeTop(msgs []queue.Message, subjects map[queue.ID]string, recent []Arrival, now time.Time, n int) TopReport {
	rep := TopReport{At: now, Messages: len(msgs)}
	type acc map[string]*TopEntry
	tables := map[string]acc{"sender": {}, "user": {}, "client": {}, "domain": {}, "subject": {}}
	add := func(table, key string, inQueue, lastHour bool, states map[string]string) {
		t := tables[table]
		e := t[key]
		if e == nil {
			e = &TopEntry{Key: key, Queue: StateCounts{States: map[string]int{}}, LastHour: StateCounts{States: map[string]int{}}}
			t[key] = e
		}
		count := func(c *StateCounts) {
			c.Messages++
			for _, st := range states {
				c.States[st]++
			}
		}
		if inQueue {
			count(&e.Queue)
		}
		if lastHour {
			count(&e.LastHour)
		}
	}
	feed := func(sender, user, client, subject string, rcpts map[string]string, inQueue, lastHour bool) {
		if sender == "" {
			sender = "<>"
		}
		if user == "" {
			user = "(unknown)"
		}
		if client == "" {
			client = "local"
		}
		add("sender", sender, inQueue, lastHour, rcpts)
		add("user", user, inQueue, lastHour, rcpts)
		add("client", client, inQueue, lastHour, rcpts)
		add("subject", subject, inQueue, lastHour, rcpts)
		byDomain := map[string]map[string]string{}
		for r, st := range rcpts {
			d := strings.ToLower(domainOf(r))
			if byDomain[d] == nil {
				byDomain[d] = map[string]string{}
			}
			byDomain[d][r] = st
		}
		for d, rs := range byDomain {
			add("domain", d, inQueue, lastHour, rs)
		}
	}
	hourAgo := now.Add(-time.Hour)
	queued := map[queue.ID]bool{}
	for _, m := range msgs {
		queued[m.ID] = true
		rcpts := map[string]string{}
		for _, r := range m.Recipients {
			rcpts[r.Address] = string(r.Status)
		}
		last := !m.Created.Before(hourAgo)
		if last {
			rep.LastHour++
		}
		feed(m.Sender, m.User, m.ClientIP, subjects[m.ID], rcpts, true, last)
	}
	for _, a := range recent {
		if queued[a.ID] || a.At.Before(hourAgo) {
			continue
		}
		rep.LastHour++
		feed(a.Sender, a.User, a.ClientIP, a.Subject, a.Rcpts, false, true)
	}
	sorted := func(t acc) []TopEntry {
		out := make([]TopEntry, 0, len(t))
		for _, e := range t {
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
	rep.Senders = sorted(tables["sender"])
	rep.Users = sorted(tables["user"])
	rep.Clients = sorted(tables["client"])
	rep.Domains = sorted(tables["domain"])
	rep.Subjects = sorted(tables["subject"])
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
	msgs, err := s.Store.List(r.Context(), queue.Filter{})
	if err != nil {
		WriteError(w, statusFor(err), err)
		return
	}
	subjects := make(map[queue.ID]string, len(msgs))
	for _, m := range msgs {
		body, err := s.Store.Body(r.Context(), m.ID)
		if err != nil {
			continue // delivered meanwhile
		}
		subjects[m.ID] = Subject(headerValue(body, "Subject"))
	}
	now := s.Clock.Now()
	var recent []Arrival
	if s.Arrivals != nil {
		recent = s.Arrivals.Since(now.Add(-time.Hour))
	}
	WriteJSON(w, http.StatusOK, ComputeTop(msgs, subjects, recent, now, n))
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

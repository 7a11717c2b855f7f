package breaker

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)

func defaultConfig() Config {
	return Config{Window: time.Hour, MinRecipients: 20, MaxFailed: 0.25, MaxDeferred: 0.5, Per: []string{PerUser, PerSenderDomain}}
}

var (
	www  = Sender{User: "www-data", Address: "noreply@shop.example"}
	cron = Sender{User: "alice", Address: "alice@blog.example"}
)

// send is n recipients of one sender with one status, at a time offset.
type send struct {
	s      Sender
	n      int
	status Status
	class  string
	wide   bool
	at     time.Duration
	id     string // queue ID; "" gives each recipient its own message
	rcpt   string // prefix of the addresses; default "r"
}

func (sd send) run(b *Breaker) []Trip {
	var trips []Trip
	for i := range sd.n {
		id := sd.id
		if id == "" {
			id = fmt.Sprintf("M%s%d", sd.rcpt, i)
		}
		prefix := sd.rcpt
		if prefix == "" {
			prefix = "r"
		}
		at := t0.Add(sd.at)
		reply := "250 ok"
		switch sd.status {
		case Bounced:
			reply = fmt.Sprintf("550 5.1.1 <%s%d@example.org>: user unknown", prefix, i)
		case Deferred:
			reply = "451 4.7.1 try later"
		}
		trips = append(trips, b.Observe(Outcome{Sender: sd.s, ID: id, Rcpt: fmt.Sprintf("%s%d@example.org", prefix, i),
			Status: sd.status, Class: sd.class, ProviderWide: sd.wide, Reply: reply, At: at}, at)...)
	}
	return trips
}

func TestTrips(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sends []send
		want  []string // keys tripped, in order
	}{
		{"newsletter of 200 with 2% unknown", []send{
			{s: www, n: 196, status: Delivered},
			{s: www, n: 4, status: Bounced, rcpt: "u"},
		}, nil},
		{"hacked site: 80% user unknown trips at min_recipients", []send{
			{s: www, n: 4, status: Delivered},
			{s: www, n: 16, status: Bounced, rcpt: "u"},
		}, []string{"user=www-data", "sender_domain=shop.example"}},
		{"19 failures are below min_recipients", []send{
			{s: www, n: 19, status: Bounced},
		}, nil},
		{"exactly 25% failed does not trip", []send{
			{s: www, n: 15, status: Delivered},
			{s: www, n: 5, status: Bounced, rcpt: "u"},
		}, nil},
		{"26% failed trips", []send{
			{s: www, n: 37, status: Delivered},
			{s: www, n: 13, status: Bounced, rcpt: "u"},
		}, []string{"user=www-data", "sender_domain=shop.example"}},
		{"suppressed counts as failed", []send{
			{s: www, n: 10, status: Delivered},
			{s: www, n: 10, status: Suppressed, rcpt: "s"},
		}, []string{"user=www-data", "sender_domain=shop.example"}},
		{"a TSS04 wave (rate_limited) is the provider's problem", []send{
			{s: www, n: 10, status: Delivered},
			{s: www, n: 100, status: Deferred, class: "rate_limited", rcpt: "y"},
		}, nil},
		{"a deferral whose rule suspends the provider does not count", []send{
			{s: www, n: 10, status: Delivered},
			{s: www, n: 100, status: Deferred, class: "ip_blocked", wide: true, rcpt: "y"},
		}, nil},
		{"deferrals past max_deferred trip", []send{
			{s: www, n: 9, status: Delivered},
			{s: www, n: 11, status: Deferred, class: "other_temporary", rcpt: "d"},
		}, []string{"user=www-data", "sender_domain=shop.example"}},
		{"expired on a 4xx counts as a deferral", []send{
			{s: www, n: 9, status: Delivered},
			{s: www, n: 11, status: Expired, class: "other_temporary", rcpt: "d"},
		}, []string{"user=www-data", "sender_domain=shop.example"}},
		{"a recipient retried counts once", []send{
			{s: www, n: 15, status: Delivered},
			{s: www, n: 15, status: Deferred, class: "greylisted", rcpt: "g", at: 0},
			{s: www, n: 15, status: Deferred, class: "greylisted", rcpt: "g", at: 10 * time.Minute},
			{s: www, n: 15, status: Deferred, class: "greylisted", rcpt: "g", at: 20 * time.Minute},
		}, nil},
		{"greylisted then delivered leaves no deferral", []send{
			{s: www, n: 12, status: Delivered},
			{s: www, n: 12, status: Deferred, class: "greylisted", rcpt: "g"},
			{s: www, n: 12, status: Delivered, rcpt: "g", at: 5 * time.Minute},
			{s: www, n: 12, status: Deferred, class: "greylisted", rcpt: "h", at: 6 * time.Minute},
		}, nil},
		{"failures older than the window are forgotten", []send{
			{s: www, n: 19, status: Bounced},
			{s: www, n: 10, status: Delivered, rcpt: "later", at: 2 * time.Hour},
			{s: www, n: 1, status: Bounced, rcpt: "late", at: 2 * time.Hour},
		}, nil},
		{"failures inside the window add up", []send{
			{s: www, n: 19, status: Bounced},
			{s: www, n: 1, status: Bounced, rcpt: "late", at: 50 * time.Minute},
		}, []string{"user=www-data", "sender_domain=shop.example"}},
		{"another sender's clean mail is its own", []send{
			{s: cron, n: 100, status: Delivered, rcpt: "c"},
			{s: www, n: 20, status: Bounced},
		}, []string{"user=www-data", "sender_domain=shop.example"}},
		{"the null sender is watched by its user only", []send{
			{s: Sender{User: "www-data"}, n: 50, status: Bounced},
		}, []string{"user=www-data"}},
		{"facteur's own null-sender mail is never watched", []send{
			{s: Sender{}, n: 50, status: Bounced},
		}, nil},
		{"an authenticated user is watched", []send{
			{s: Sender{AuthUser: "alice", Address: "a@x.example"}, n: 20, status: Bounced},
		}, []string{"auth_user=alice", "sender_domain=x.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(defaultConfig())
			var got []string
			for _, sd := range tc.sends {
				for _, tr := range sd.run(b) {
					got = append(got, string(tr.Key))
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("tripped %v, want %v (watched %+v)", got, tc.want, b.Watched(t0.Add(3*time.Hour)))
			}
			for _, k := range tc.want {
				s := www
				if strings.Contains(k, "alice") || strings.Contains(k, "x.example") {
					s = Sender{AuthUser: "alice", Address: "a@x.example"}
				}
				if got, ok := b.Stopped(s); !ok || got != Key(tc.want[0]) {
					t.Errorf("Stopped = %v %v, want %s", got, ok, tc.want[0])
				}
			}
			if len(tc.want) == 0 {
				if k, ok := b.Stopped(www); ok {
					t.Errorf("www-data stopped by %s", k)
				}
			}
			if _, ok := b.Stopped(cron); ok {
				t.Errorf("alice stopped")
			}
		})
	}
}

func TestTripFigures(t *testing.T) {
	b := New(defaultConfig())
	send{s: www, n: 4, status: Delivered}.run(b)
	trips := send{s: www, n: 16, status: Bounced, rcpt: "u"}.run(b)
	if len(trips) != 2 {
		t.Fatalf("trips %+v", trips)
	}
	tr := trips[0]
	if got, want := "user=www-data "+tr.Summary(), "user=www-data failed=80% deferred=0% of 20 recipients in 1h"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	if len(tr.TopDomains) != 1 || tr.TopDomains[0] != (Count{"example.org", 16}) {
		t.Errorf("top domains %+v", tr.TopDomains)
	}
	if len(tr.TopReplies) != 1 || tr.TopReplies[0] != (Count{"550 5.1.1 <...>: user unknown", 16}) {
		t.Errorf("top replies %+v", tr.TopReplies)
	}
	rep := Report("web1.example", trips, "hold", 7)
	for _, want := range []string{"user=www-data and sender_domain=shop.example", "failed=80% deferred=0% of 20 recipients in 1h",
		"16  example.org", "550 5.1.1 <...>: user unknown", "(7 messages held now)",
		"facteur breaker reset user=www-data sender_domain=shop.example", "facteur breaker reset --delete user=www-data"} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
}

func TestResetRearms(t *testing.T) {
	b := New(defaultConfig())
	if n := len(send{s: www, n: 20, status: Bounced}.run(b)); n != 2 {
		t.Fatalf("%d trips", n)
	}
	// Further failures while tripped trip nothing new.
	if n := len(send{s: www, n: 20, status: Bounced, rcpt: "more", at: time.Minute}.run(b)); n != 0 {
		t.Fatalf("%d new trips while tripped", n)
	}
	if _, err := b.Reset("user=www-data", t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reset("user=www-data", t0.Add(2*time.Minute)); err == nil {
		t.Fatal("second reset of the same key succeeded")
	}
	if k, ok := b.Stopped(Sender{User: "www-data", Address: "x@other.example"}); ok {
		t.Fatalf("still stopped by %s after reset", k)
	}
	// The window starts empty: 19 new failures do not trip, the 20th does.
	if n := len(send{s: Sender{User: "www-data", Address: "x@other.example"}, n: 19, status: Bounced, rcpt: "again", at: 3 * time.Minute}.run(b)); n != 0 {
		t.Fatalf("tripped again before min_recipients")
	}
	trips := send{s: Sender{User: "www-data", Address: "x@other.example"}, n: 1, status: Bounced, rcpt: "last", at: 3 * time.Minute}.run(b)
	if len(trips) == 0 || trips[0].Key != "user=www-data" || trips[0].Recipients != 20 {
		t.Fatalf("after reset: %+v", trips)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	b := New(defaultConfig())
	send{s: www, n: 20, status: Bounced}.run(b)
	send{s: cron, n: 10, status: Bounced, rcpt: "c"}.run(b)
	st, err := b.MarshalState(t0)
	if err != nil {
		t.Fatal(err)
	}
	b2 := New(defaultConfig())
	if err := b2.RestoreState(st); err != nil {
		t.Fatal(err)
	}
	if k, ok := b2.Stopped(www); !ok || k != "user=www-data" {
		t.Fatalf("restored: stopped %v %v", k, ok)
	}
	if len(b2.Tripped()) != 2 {
		t.Fatalf("tripped %+v", b2.Tripped())
	}
	// alice's 10 failures were kept: 10 more trip her.
	if n := len(send{s: cron, n: 10, status: Bounced, rcpt: "d", at: time.Minute}.run(b2)); n != 2 {
		t.Fatalf("alice's window was not restored: %d trips", n)
	}
	if err := b2.RestoreState([]byte("{")); err == nil {
		t.Fatal("corrupt state accepted")
	}
}

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"user=www-data", "user=www-data", true},
		{"auth_user=alice", "auth_user=alice", true},
		{"sender_domain=Shop.Example", "sender_domain=shop.example", true},
		{"www-data", "", false},
		{"user=", "", false},
		{"ip=1.2.3.4", "", false},
	} {
		k, err := ParseKey(tc.in)
		if (err == nil) != tc.ok || string(k) != tc.want {
			t.Errorf("ParseKey(%q) = %q, %v", tc.in, k, err)
		}
	}
}

func TestPerSelectsKeys(t *testing.T) {
	c := defaultConfig()
	c.Per = []string{PerSenderDomain}
	if got := c.Keys(Sender{User: "u", AuthUser: "a", Address: "x@Y.example"}); len(got) != 1 || got[0] != "sender_domain=y.example" {
		t.Errorf("keys %v", got)
	}
	c.Per = []string{PerUser}
	if got := c.Keys(Sender{User: "u", AuthUser: "a", Address: "x@y.example"}); len(got) != 2 || got[0] != "user=u" || got[1] != "auth_user=a" {
		t.Errorf("keys %v", got)
	}
}

// A busy server's saved state stays small: only keys active in the window,
// only their non-empty buckets, and a bounded number of failures.
func TestStateIsCompact(t *testing.T) {
	b := New(defaultConfig())
	for i := range 500 {
		s := Sender{Address: fmt.Sprintf("a@d%d.example", i)}
		send{s: s, n: 3, status: Delivered, rcpt: fmt.Sprintf("k%d-", i)}.run(b)
		send{s: s, n: 1, status: Bounced, rcpt: fmt.Sprintf("f%d-", i)}.run(b)
	}
	send{s: www, n: 300, status: Bounced, rcpt: "many"}.run(b)
	st, err := b.MarshalState(t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state: %d bytes", len(st))
	if len(st) > 500*400 {
		t.Errorf("state of 500 active senders is %d bytes", len(st))
	}
	// An hour later nothing is active: only the tripped keys remain.
	later, err := b.MarshalState(t0.Add(2 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(later), "d1.example") {
		t.Errorf("idle senders saved: %d bytes", len(later))
	}
	b2 := New(defaultConfig())
	if err := b2.RestoreState(st); err != nil {
		t.Fatal(err)
	}
	tr := b2.Tripped()
	if len(tr) != 2 {
		t.Fatalf("tripped after restore %+v", tr)
	}
	// The restored windows go on counting.
	b2.Reset("sender_domain=shop.example", t0)
	if w := b2.Watched(t0); len(w) == 0 || w[0].Key != "user=www-data" || w[0].Recipients != 300 {
		t.Errorf("watched after restore %+v", w[:min(len(w), 2)])
	}
}

// Odd times never panic nor count outside the window.
func TestOddTimes(t *testing.T) {
	b := New(defaultConfig())
	for _, at := range []time.Time{{}, time.Unix(-5, 0), t0.Add(48 * time.Hour)} {
		b.Observe(Outcome{Sender: www, ID: "X", Rcpt: "a@example.org", Status: Bounced, At: at}, t0)
	}
	// The zero and the future time count as now; 1969 is out of the window.
	if w := b.Watched(t0); len(w) != 2 || w[0].Recipients != 2 {
		t.Errorf("watched %+v", w)
	}
}

// A trip imposed from another node stops the sender here like a local
// one (a sender_domain trip only its submitters), survives a restart, is
// cleared by Reset, and never overwrites a local trip's figures.
func TestImpose(t *testing.T) {
	tests := []struct {
		name    string
		trip    Trip
		stopped []Sender
		free    []Sender
		ok      bool
	}{
		{"user", Trip{Key: "user=www-data", Node: "b", Recipients: 40, Failed: 30}, []Sender{www}, []Sender{cron}, true},
		{"domain of one submitter", Trip{Key: "sender_domain=example.com", Node: "b", Submitters: []string{"user=www-data"}},
			[]Sender{{User: "www-data", Address: "x@example.com"}}, []Sender{{User: "alice", Address: "x@example.com"}}, true},
		{"bad key", Trip{Key: "nobody", Node: "b"}, nil, []Sender{www}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Config{Window: time.Hour, MinRecipients: 20, MaxFailed: 0.25, MaxDeferred: 0.5, Per: []string{PerUser, PerSenderDomain}})
			if got := b.Impose(tc.trip); got != tc.ok {
				t.Fatalf("Impose = %v", got)
			}
			for _, s := range tc.stopped {
				if _, ok := b.Stopped(s); !ok {
					t.Errorf("%+v not stopped", s)
				}
			}
			for _, s := range tc.free {
				if k, ok := b.Stopped(s); ok {
					t.Errorf("%+v stopped by %s", s, k)
				}
			}
			if !tc.ok {
				return
			}
			if b.Impose(tc.trip) {
				t.Error("imposed twice")
			}
			st, err := b.MarshalState(t0)
			if err != nil {
				t.Fatal(err)
			}
			b2 := New(b.Config())
			if err := b2.RestoreState(st); err != nil {
				t.Fatal(err)
			}
			if tr := b2.Tripped(); len(tr) != 1 || tr[0].Node != "b" {
				t.Fatalf("restored %+v", tr)
			}
			if _, err := b2.Reset(tc.trip.Key, t0); err != nil {
				t.Fatal(err)
			}
			if _, ok := b2.Stopped(tc.stopped[0]); ok {
				t.Error("still stopped after Reset")
			}
		})
	}
	// A local trip keeps its own figures when the fleet's news arrives.
	b := New(defaultConfig())
	send{s: www, n: 20, status: Bounced}.run(b)
	if b.Impose(Trip{Key: "user=www-data", Node: "b", Recipients: 999}) {
		t.Fatal("imposed over a local trip")
	}
	for _, tr := range b.Tripped() {
		if tr.Recipients == 999 || tr.Node != "" {
			t.Fatalf("local trip overwritten: %+v", tr)
		}
	}
}

// A flood of fresh sender domains (each a new key) keeps the watched keys
// bounded; the flooding user's own key, seen all along, is still counted,
// and so is an earlier tripped key.
func TestSenderKeysBounded(t *testing.T) {
	b := New(defaultConfig())
	send{s: www, n: 300, status: Bounced, rcpt: "many"}.run(b)
	if len(b.Tripped()) == 0 {
		t.Fatal("nothing tripped")
	}
	flood := Sender{User: "flooder"}
	for i := range maxSenders + maxSenders/2 {
		flood.Address = fmt.Sprintf("x@r%d.example", i)
		b.Observe(Outcome{Sender: flood, ID: fmt.Sprint(i), Rcpt: "gone@example.org", Status: Suppressed, At: t0}, t0)
	}
	b.mu.Lock()
	n := len(b.senders)
	_, user := b.senders["user=flooder"]
	b.mu.Unlock()
	if n > maxSenders {
		t.Errorf("%d keys watched, bound %d", n, maxSenders)
	}
	if !user {
		t.Error("the flooding user's key was evicted")
	}
	if len(b.Tripped()) == 0 {
		t.Error("a tripped key was evicted")
	}
}

package policy

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)

func reply(t *testing.T, s string) Reply {
	t.Helper()
	r, err := ParseReply(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mayConnect acquires and releases at once, returning whether a connection could open.
func mayConnect(e *Engine, provider, domain string, now time.Time) (bool, time.Time) {
	a := e.Acquire(provider, domain, now)
	if a.OK {
		a.Release()
	}
	return a.OK, a.Until
}

func TestYahooTSS04SuspendsFourHours(t *testing.T) {
	p := mustBuiltin(t)
	e := NewEngine(p)
	out := e.Observe("yahoo", "yahoo.fr", reply(t, "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints"), t0)
	if out.Decision.Action != Suspend || out.Decision.Suppress || out.Decision.Class != RateLimited {
		t.Fatalf("decision %s, want rate_limited suspend without suppression", out.Decision)
	}
	if want := t0.Add(4 * time.Hour); !out.Until.Equal(want) {
		t.Fatalf("until %v, want %v", out.Until, want)
	}
	if len(out.Events) != 1 || out.Events[0].Kind != Suspended || !strings.Contains(out.Events[0].Reason, "[TSS04]") {
		t.Fatalf("events %+v, want one suspended event quoting the reply", out.Events)
	}
	for _, at := range []time.Duration{0, time.Minute, 3*time.Hour + 59*time.Minute} {
		if ok, wait := mayConnect(e, "yahoo", "ymail.com", t0.Add(at)); ok || !wait.Equal(t0.Add(4*time.Hour)) {
			t.Errorf("at +%v: connect ok=%t wait=%v, want refused until +4h", at, ok, wait)
		}
		if e.Allow("yahoo", "ymail.com", t0.Add(at)).OK {
			t.Errorf("at +%v: a message was allowed during the suspension", at)
		}
	}
	if ok, _ := mayConnect(e, "yahoo", "ymail.com", t0.Add(4*time.Hour)); !ok {
		t.Error("at +4h: connection refused after the suspension")
	}
	// The scheduler's next attempt: max(own schedule, suspension end).
	next, expired := e.NextAttempt("yahoo", 1, t0, t0)
	until, why := e.SuspendedUntil("yahoo", "", t0)
	if expired || !next.Equal(t0.Add(4*time.Hour)) || !until.Equal(t0.Add(4*time.Hour)) || !strings.Contains(why, "TSS04") {
		t.Errorf("next=%v expired=%t until=%v why=%q", next, expired, until, why)
	}
	// Other providers are not held.
	if ok, _ := mayConnect(e, "google", "gmail.com", t0); !ok {
		t.Error("google held by a yahoo suspension")
	}
}

func TestFreeBackoffDoubles(t *testing.T) {
	p := mustBuiltin(t)
	e := NewEngine(p)
	fail := reply(t, "451 too many errors from your ip")
	now := t0
	out := e.Observe("free", "free.fr", fail, now)
	if out.Decision.Action != Backoff || !out.Until.Equal(now.Add(15*time.Minute)) {
		t.Fatalf("first failure: %s until %v, want backoff 15m", out.Decision, out.Until)
	}
	// Another recipient's reply within the window is the same incident.
	if out := e.Observe("free", "aliceadsl.fr", fail, now.Add(time.Second)); !out.Until.Equal(now.Add(15*time.Minute)) || len(out.Events) != 0 {
		t.Fatalf("same incident extended the window: until %v events %+v", out.Until, out.Events)
	}
	if ok, wait := mayConnect(e, "free", "free.fr", now.Add(14*time.Minute)); ok || !wait.Equal(now.Add(15*time.Minute)) {
		t.Fatalf("connection inside the window: ok=%t wait=%v", ok, wait)
	}
	// Ops resume, then the next failure waits twice as long.
	now = now.Add(5 * time.Minute)
	ev, err := e.Resume("free", now)
	if err != nil || ev.Kind != Resumed || ev.BackoffLevel != 1 {
		t.Fatalf("Resume: %+v, %v", ev, err)
	}
	if ok, _ := mayConnect(e, "free", "free.fr", now); !ok {
		t.Fatal("connection refused after resume")
	}
	out = e.Observe("free", "free.fr", fail, now)
	if !out.Until.Equal(now.Add(30*time.Minute)) || out.Events[0].BackoffLevel != 2 {
		t.Fatalf("second failure: until %v (level %d), want +30m", out.Until, out.Events[0].BackoffLevel)
	}
	// Windows keep doubling up to 24h.
	wants := []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 16 * time.Hour, 24 * time.Hour, 24 * time.Hour}
	for _, w := range wants {
		now = out.Until
		out = e.Observe("free", "free.fr", fail, now)
		if got := out.Until.Sub(now); got != w {
			t.Fatalf("window %v, want %v", got, w)
		}
	}
	// Only a delivery resets the level.
	now = out.Until
	e.Delivered("free", "free.fr", now)
	if out = e.Observe("free", "free.fr", fail, now); out.Until.Sub(now) != 15*time.Minute {
		t.Fatalf("after a delivery: window %v, want 15m", out.Until.Sub(now))
	}
}

func TestMicrosoftBlockHoldsCustomDomains(t *testing.T) {
	p := mustBuiltin(t)
	e := NewEngine(p)
	custom := p.Recognize("contoso.example", []string{"contoso-example.mail.protection.outlook.com."})
	if custom != "microsoft" {
		t.Fatalf("custom domain recognised as %q, want microsoft", custom)
	}
	out := e.Observe(p.Recognize("hotmail.com", nil), "hotmail.com", reply(t, "550 SC-001 (SNT004-MC3F21) Unfortunately, messages from 192.0.2.1 weren't sent. Please contact your Internet service provider since part of their network is on our block list."), t0)
	if out.Decision.Action != Suspend || out.Decision.Suppress || out.Decision.Class != IPBlocked {
		t.Fatalf("decision %s, want ip_blocked suspend, no suppression", out.Decision)
	}
	if ok, wait := mayConnect(e, custom, "contoso.example", t0.Add(time.Hour)); ok || !wait.Equal(out.Until) {
		t.Fatalf("custom Microsoft domain not held: ok=%t wait=%v", ok, wait)
	}
}

func TestOrangeBlockHoldsVadeGroup(t *testing.T) {
	p := mustBuiltin(t)
	e := NewEngine(p)
	out := e.Observe("orange", "orange.fr", reply(t, "421 mwinf5c77 ME Service refuse. Veuillez essayer plus tard. Service refused, please try later. OFR_999 [999]"), t0)
	if out.Decision.Action != Suspend {
		t.Fatalf("decision %s", out.Decision)
	}
	ev := out.Events[0]
	if ev.Group != "vade" || strings.Join(ev.Affects, ",") != "laposte,orange,sfr" {
		t.Fatalf("event %+v, want group vade affecting laposte,orange,sfr", ev)
	}
	for _, prov := range []string{"orange", "sfr", "laposte"} {
		if ok, _ := mayConnect(e, prov, "", t0.Add(time.Hour)); ok {
			t.Errorf("%s not held by orange's block", prov)
		}
		if ok, _ := mayConnect(e, prov, "", t0.Add(2*time.Hour)); !ok {
			t.Errorf("%s still held after the 2h suspension", prov)
		}
	}
	if ok, _ := mayConnect(e, "free", "free.fr", t0.Add(time.Hour)); !ok {
		t.Error("free (not in vade) held")
	}
	// Resume by group name ends it for all.
	e.Observe("orange", "orange.fr", reply(t, "421 OFR_999 [999]"), t0.Add(3*time.Hour))
	if _, err := e.Resume("vade", t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := mayConnect(e, "sfr", "", t0.Add(3*time.Hour)); !ok {
		t.Error("sfr held after resume of vade")
	}
}

func ratePolicy(t *testing.T, extra string) *Policy {
	t.Helper()
	p, err := Parse("test.yaml", []byte(`
providers:
  fast:
    domains: [fast.example]
    rate: 10/s
    connections: 1
`+extra))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRateSpacesSends(t *testing.T) {
	e := NewEngine(ratePolicy(t, ""))
	now := t0
	var sent []time.Time
	for len(sent) < 50 {
		a := e.Allow("fast", "fast.example", now)
		at := a.Until
		if a.OK {
			sent = append(sent, now)
			continue
		}
		if !at.After(now) {
			t.Fatalf("refused at %v with a wait until %v", now, at)
		}
		now = at
	}
	span := sent[49].Sub(sent[0])
	if span < 4800*time.Millisecond || span > 5*time.Second {
		t.Fatalf("50 sends at 10/s took %v, want about 4.9s", span)
	}
	for i := 1; i < len(sent); i++ {
		if gap := sent[i].Sub(sent[i-1]); gap < 99*time.Millisecond {
			t.Fatalf("send %d only %v after the previous one", i, gap)
		}
	}
	// The bucket starts with one token: a new engine (a restart) cannot burst.
	e2 := NewEngine(ratePolicy(t, ""))
	if !e2.Allow("fast", "fast.example", t0).OK {
		t.Fatal("first message refused")
	}
	if a := e2.Allow("fast", "fast.example", t0); a.OK || a.Until.Sub(t0) != 100*time.Millisecond {
		t.Fatalf("second message at once: ok=%t at=+%v, want refused until +100ms", a.OK, a.Until.Sub(t0))
	}
}

func TestConnectionsLimit(t *testing.T) {
	p := mustBuiltin(t) // free: connections 1
	e := NewEngine(p)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		current int
		maxSeen int
	)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 20; n++ {
				adm := e.Acquire("free", "free.fr", t0)
				release, reason := adm.Release, adm.Why
				if !adm.OK {
					if !strings.Contains(reason, "1 of 1") {
						t.Errorf("reason %q", reason)
					}
					continue
				}
				mu.Lock()
				current++
				maxSeen = max(maxSeen, current)
				mu.Unlock()
				mu.Lock()
				current--
				mu.Unlock()
				release()
				release() // idempotent
			}
		}()
	}
	wg.Wait()
	if maxSeen != 1 {
		t.Fatalf("%d simultaneous connections granted, want 1", maxSeen)
	}
	a1 := e.Acquire("free", "free.fr", t0)
	r1, ok1 := a1.Release, a1.OK
	ok2 := e.Acquire("free", "free.fr", t0).OK
	if !ok1 || ok2 {
		t.Fatalf("ok1=%t ok2=%t, want the second refused", ok1, ok2)
	}
	r1()
	if ok, _ := mayConnect(e, "free", "free.fr", t0); !ok {
		t.Fatal("refused after release")
	}
}

func TestDefaultBudgetPerDomain(t *testing.T) {
	p := mustBuiltin(t)
	e := NewEngine(p)
	var releases []func()
	for i := 0; i < 20; i++ {
		a := e.Acquire(DefaultProvider, "a.example", t0)
		r := a.Release
		if !a.OK {
			t.Fatalf("connection %d to a.example refused", i+1)
		}
		releases = append(releases, r)
	}
	if ok, _ := mayConnect(e, DefaultProvider, "a.example", t0); ok {
		t.Fatal("a 21st connection to a.example granted")
	}
	if ok, _ := mayConnect(e, DefaultProvider, "B.Example.", t0); !ok {
		t.Fatal("b.example held by a.example's connections")
	}
	// A suspension of one default domain holds that domain only.
	e.Observe(DefaultProvider, "b.example", reply(t, "421 4.7.0 [TSS04] deferred"), t0) // no default rule suspends:
	if u, _ := e.SuspendedUntil(DefaultProvider, "b.example", t0); !u.IsZero() {
		t.Fatal("a default rule suspended a domain")
	}
	pol, err := Parse("t.yaml", []byte("providers:\n  default:\n    rules:\n      - {name: stop, match: 'STOPME', class: ip_blocked, action: suspend, duration: 1h}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.Swap(pol, t0)
	e.Observe("", "b.example", reply(t, "554 STOPME"), t0)
	if ok, _ := mayConnect(e, DefaultProvider, "b.example", t0); ok {
		t.Fatal("b.example not suspended")
	}
	if ok, _ := mayConnect(e, DefaultProvider, "c.example", t0); !ok {
		t.Fatal("c.example held by b.example's suspension")
	}
	for _, r := range releases {
		r()
	}
	snap := e.Snapshot(t0)
	def := snap[indexOf(snap, DefaultProvider)]
	if len(def.Destinations) != 3 || def.Destinations[1].Domain != "b.example" || def.Destinations[1].SuspendedUntil == nil {
		t.Fatalf("destinations %+v", def.Destinations)
	}
}

func indexOf(states []ProviderState, name string) int {
	for i, s := range states {
		if s.Name == name {
			return i
		}
	}
	return -1
}

func TestThrottleHalvesAndRecovers(t *testing.T) {
	p := mustBuiltin(t) // microsoft: 1000/h, factor 2, cooldown 1m, recover_after 30m
	e := NewEngine(p)
	rp := reply(t, "421 RP-001 (COL004-MC1F20) Unfortunately, some messages from 192.0.2.1 weren't sent. Please try again.")
	rateOf := func(now time.Time) string {
		s := e.Snapshot(now)[indexOf(e.Snapshot(now), "microsoft")]
		if s.ThrottledRate == nil {
			return s.Limits.Rate
		}
		return *s.ThrottledRate
	}
	steps := []struct {
		at     time.Duration
		action string // observe, deliver
		want   string
		event  bool
	}{
		{0, "observe", "500/h", true},
		{30 * time.Second, "observe", "500/h", false}, // within the cooldown: same event
		{2 * time.Minute, "observe", "250/h", true},
		{10 * time.Minute, "deliver", "250/h", false}, // too early to recover
		{32 * time.Minute, "deliver", "500/h", true},
		{40 * time.Minute, "deliver", "500/h", false},
		{62 * time.Minute, "deliver", "1000/h", true},
		{120 * time.Minute, "deliver", "1000/h", false},
	}
	for _, s := range steps {
		now := t0.Add(s.at)
		var evs []Event
		if s.action == "observe" {
			out := e.Observe("microsoft", "outlook.com", rp, now)
			if out.Decision.Action != Throttle {
				t.Fatalf("decision %s", out.Decision)
			}
			evs = out.Events
		} else {
			evs = e.Delivered("microsoft", "outlook.com", now)
		}
		if got := rateOf(now); got != s.want {
			t.Fatalf("+%v %s: rate %s, want %s", s.at, s.action, got, s.want)
		}
		if (len(evs) == 1) != s.event || (s.event && (evs[0].Kind != Throttled || FormatRate(evs[0].Rate) != s.want)) {
			t.Fatalf("+%v %s: events %+v, want event=%t", s.at, s.action, evs, s.event)
		}
	}
	// The limiter follows: at 500/h messages are 7.2s apart.
	e2 := NewEngine(p)
	e2.Observe("microsoft", "outlook.com", rp, t0)
	if !e2.Allow("microsoft", "outlook.com", t0).OK {
		t.Fatal("first message refused")
	}
	if at := e2.Allow("microsoft", "outlook.com", t0).Until; at.Sub(t0) != 7200*time.Millisecond {
		t.Fatalf("next message at +%v, want +7.2s", at.Sub(t0))
	}
	// The floor: throttle.min 10/h.
	for i := 0; i < 20; i++ {
		e2.Observe("microsoft", "outlook.com", rp, t0.Add(time.Duration(i)*time.Hour))
	}
	if got := rateOf2(e2, t0.Add(20*time.Hour)); got != "10/h" {
		t.Fatalf("floor: %s, want 10/h", got)
	}
}

func rateOf2(e *Engine, now time.Time) string {
	s := e.Snapshot(now)
	ps := s[indexOf(s, "microsoft")]
	if ps.ThrottledRate == nil {
		return ps.Limits.Rate
	}
	return *ps.ThrottledRate
}

func TestSwapKeepsState(t *testing.T) {
	p := mustBuiltin(t)
	e := NewEngine(p)
	release := e.Acquire("yahoo", "yahoo.com", t0).Release
	e.Observe("yahoo", "yahoo.com", reply(t, "421 4.7.0 [TSS05] deferred"), t0)
	e.Observe("free", "free.fr", reply(t, "451 too many errors from your ip"), t0)
	p2, err := Parse("reload.yaml", []byte("providers:\n  yahoo:\n    connections: 1\n  free:\n    rate: 1/m\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.Swap(p2, t0.Add(time.Minute))
	if u, _ := e.SuspendedUntil("yahoo", "", t0.Add(time.Hour)); !u.Equal(t0.Add(4 * time.Hour)) {
		t.Fatalf("suspension lost on reload: %v", u)
	}
	snap := e.Snapshot(t0.Add(time.Hour))
	if y := snap[indexOf(snap, "yahoo")]; y.Connections != 1 || y.Limits.Connections != 1 {
		t.Fatalf("yahoo after reload: %+v", y)
	}
	if f := snap[indexOf(snap, "free")]; f.BackoffLevel != 1 || f.Limits.Rate != "1/m" {
		t.Fatalf("free after reload: %+v", f)
	}
	release()
	// The new rate applies: 1/m.
	if !e.Allow("free", "free.fr", t0.Add(2*time.Hour)).OK {
		t.Fatal("first message refused")
	}
	if at := e.Allow("free", "free.fr", t0.Add(2*time.Hour)).Until; at.Sub(t0.Add(2*time.Hour)) != time.Minute {
		t.Fatalf("next at +%v, want +1m", at.Sub(t0.Add(2*time.Hour)))
	}
}

func TestNextAttemptAndLifetime(t *testing.T) {
	p := mustBuiltin(t)
	e := NewEngine(p)
	tests := []struct {
		name     string
		provider string
		attempts int
		queued   time.Duration // before now
		want     time.Duration // after now; -1: expired
	}{
		{"default first retry", "", 1, 0, 5 * time.Minute},
		{"default second", "google", 2, 5 * time.Minute, 10 * time.Minute},
		{"default grows to hours", "", 6, 2 * time.Hour, 2 * time.Hour},
		{"default last repeats", "", 30, 2 * day, 4 * time.Hour},
		{"clamped to lifetime", "", 30, 5*day - time.Hour, time.Hour},
		{"default expired at 5d", "", 40, 5 * day, -1},
		{"yahoo every 4h", "yahoo", 1, 0, 4 * time.Hour},
		{"yahoo at 44h", "yahoo", 11, 44 * time.Hour, 4 * time.Hour},
		{"yahoo expired at 48h", "yahoo", 12, 48 * time.Hour, -1},
		{"attempts 0 is the first", "", 0, 0, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0.Add(10 * day)
			next, expired := e.NextAttempt(tt.provider, tt.attempts, now.Add(-tt.queued), now)
			if tt.want < 0 {
				if !expired {
					t.Fatalf("next %v, want expired", next.Sub(now))
				}
				return
			}
			if expired || next.Sub(now) != tt.want {
				t.Fatalf("next +%v expired=%t, want +%v", next.Sub(now), expired, tt.want)
			}
		})
	}
	if d := p.Deadline("yahoo", t0); !d.Equal(t0.Add(48 * time.Hour)) {
		t.Errorf("yahoo deadline %v", d)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	p := mustBuiltin(t)
	e := NewEngine(p)
	e.Observe("yahoo", "yahoo.com", reply(t, "421 4.7.0 [TSS04] deferred"), t0)
	e.Observe("free", "free.fr", reply(t, "451 too many errors from your ip"), t0)
	e.Observe("microsoft", "live.com", reply(t, "421 RP-001 slow down"), t0)
	e.Observe("google", "gmail.com", reply(t, "421 4.7.28 unusual rate"), t0)
	e.Delivered("google", "gmail.com", t0.Add(time.Hour)) // recovers: nothing left to save
	b, err := e.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(10 * time.Minute)
	e2 := NewEngine(p)
	if err := e2.RestoreState(b, now); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(e.Snapshot(now))
	c, _ := json.Marshal(e2.Snapshot(now))
	if string(a) != string(c) {
		t.Fatalf("snapshot after restore differs:\n%s\n%s", a, c)
	}
	if strings.Contains(string(b), "google") {
		t.Errorf("idle google saved: %s", b)
	}
	// The free backoff level survives: after its window, the next failure waits 30m.
	out := e2.Observe("free", "free.fr", reply(t, "451 too many errors from your ip"), t0.Add(20*time.Minute))
	if out.Until.Sub(t0.Add(20*time.Minute)) != 30*time.Minute {
		t.Fatalf("backoff level lost: window %v", out.Until.Sub(t0.Add(20*time.Minute)))
	}
	for _, bad := range []string{"", "{", `{"version":2,"scopes":[]}`, `{"version":1,"scopes":[{"key":""}]}`, `{"version":1,"scopes":[{"key":"x","cause":"bounce"}]}`} {
		if err := NewEngine(p).RestoreState([]byte(bad), now); err == nil {
			t.Errorf("RestoreState(%q) accepted", bad)
		}
	}
}

func TestResumeErrors(t *testing.T) {
	e := NewEngine(mustBuiltin(t))
	if _, err := e.Resume("nosuch", t0); err == nil {
		t.Fatal("Resume of an unknown name accepted")
	}
	if ev, err := e.Resume("example.org", t0); err != nil || ev.Domain != "example.org" {
		t.Fatalf("Resume of a default domain: %+v %v", ev, err)
	}
}

func TestSnapshotJSON(t *testing.T) {
	e := NewEngine(mustBuiltin(t))
	e.Observe("yahoo", "yahoo.com", reply(t, "421 4.7.0 [TSS04] deferred"), t0)
	b, err := json.Marshal(e.Snapshot(t0))
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, ps := range got {
		for _, k := range []string{"name", "group", "limits", "connections", "queued", "deferred", "suspended_until", "suspended_reason", "throttled_rate"} {
			if _, ok := ps[k]; !ok {
				t.Errorf("%v: no %s", ps["name"], k)
			}
		}
		switch ps["name"] {
		case "yahoo":
			if ps["suspended_until"] != "2026-11-22T18:00:00Z" || !strings.Contains(ps["suspended_reason"].(string), "TSS04") {
				t.Errorf("yahoo: %v", ps)
			}
		case "google":
			if ps["suspended_until"] != nil || ps["throttled_rate"] != nil {
				t.Errorf("google: %v", ps)
			}
		}
	}
	var sb strings.Builder
	if err := WriteProviders(&sb, e.Snapshot(t0)); err != nil || !strings.Contains(sb.String(), "2026-11-22T18:00:00Z") {
		t.Fatalf("WriteProviders: %v\n%s", err, sb.String())
	}
}

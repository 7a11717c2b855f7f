package pool

import (
	"testing"
	"time"

	"facteur/relay/config"
)

var start = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func testSet(t *testing.T, overflow string) *Set {
	t.Helper()
	cfg := config.Default()
	cfg.Pools = map[string]config.Pool{"p": {Overflow: overflow, IPs: []config.PoolIP{
		{Addr: "127.0.0.2"},
		{Addr: "127.0.0.3", Warmup: &config.Warmup{Start: start, Schedule: []int{2, 5, 10}, Providers: map[string][]int{"microsoft": {1}}}},
	}}}
	cfg.PoolBy = config.PoolBy{SenderDomain: map[string]string{"shop.example": "p"}, User: map[string]string{"www-data": "p"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return New(cfg)
}

func TestFor(t *testing.T) {
	s := testSet(t, "")
	for _, tc := range []struct{ sender, user, want string }{
		{"a@shop.example", "", "p"},
		{"a@Shop.Example", "", "p"},
		{"a@other.example", "www-data", "p"},
		{"a@other.example", "bob", ""},
		{"", "", ""},
	} {
		if got := s.For(tc.sender, tc.user); got != tc.want {
			t.Errorf("For(%q, %q) = %q, want %q", tc.sender, tc.user, got, tc.want)
		}
	}
	var none *Set
	if none.For("a@shop.example", "") != "" || none.Pool("p") != nil {
		t.Error("a nil Set has pools")
	}
}

// The cap follows the schedule by UTC day from start, per provider, and
// the IP is warm past its end.
func TestCapByDay(t *testing.T) {
	s := testSet(t, "")
	ip := s.IP("127.0.0.3")
	for _, tc := range []struct {
		at       time.Time
		provider string
		cap      int
		warm     bool
	}{
		{start.Add(-time.Hour), "yahoo", 2, false}, // before start: as day 0
		{start, "yahoo", 2, false},
		{start.Add(23*time.Hour + 59*time.Minute), "yahoo", 2, false},
		{start.Add(24 * time.Hour), "yahoo", 5, false},
		{start.Add(2 * 24 * time.Hour), "gmail", 10, false},
		{start.Add(3 * 24 * time.Hour), "gmail", 0, true},
		{start, "microsoft", 1, false},
		{start.Add(24 * time.Hour), "microsoft", 0, true},
	} {
		limit, _, warming := s.Cap(ip, tc.provider, tc.at)
		if warming == tc.warm || (warming && limit != tc.cap) {
			t.Errorf("%v %s: cap %d warming %v, want %d warm %v", tc.at, tc.provider, limit, warming, tc.cap, tc.warm)
		}
	}
	if _, _, warming := s.Cap(s.IP("127.0.0.2"), "yahoo", start); warming {
		t.Error("an IP without warm-up is warming")
	}
}

// Take stops at the cap, per provider and per day; a warm IP counts but
// never stops.
func TestTake(t *testing.T) {
	s := testSet(t, "")
	ip, warm := s.IP("127.0.0.3"), s.IP("127.0.0.2")
	for i := range 2 {
		if !s.Take(ip, "yahoo", start) {
			t.Fatalf("take %d refused", i)
		}
	}
	if s.Take(ip, "yahoo", start.Add(time.Hour)) {
		t.Fatal("third take on day 0 allowed")
	}
	if !s.Take(ip, "gmail", start) {
		t.Fatal("the cap of yahoo stopped gmail")
	}
	if !s.Take(ip, "yahoo", start.Add(24*time.Hour)) {
		t.Fatal("day 1 still capped")
	}
	for range 100 {
		if !s.Take(warm, "yahoo", start) {
			t.Fatal("a warm IP was capped")
		}
	}
	if _, sent, _ := s.Cap(warm, "yahoo", start); sent != 100 {
		t.Errorf("warm IP sent %d", sent)
	}
}

// A block holds the ramp: the day after stays on the same step, and the
// hold is reported once a day.
func TestHold(t *testing.T) {
	s := testSet(t, "")
	ip := s.IP("127.0.0.3")
	if first, day := s.Hold(ip, "yahoo", start.Add(time.Hour)); !first || day != 0 {
		t.Fatalf("hold: first %v day %d", first, day)
	}
	if first, _ := s.Hold(ip, "yahoo", start.Add(2*time.Hour)); first {
		t.Fatal("second hold of the day reported")
	}
	if day, _ := s.Day(ip, "yahoo", start.Add(24*time.Hour)); day != 0 {
		t.Fatalf("day after a hold: %d, want 0", day)
	}
	if day, _ := s.Day(ip, "gmail", start.Add(24*time.Hour)); day != 1 {
		t.Fatalf("gmail held by a yahoo block: day %d", day)
	}
	if day, _ := s.Day(ip, "yahoo", start.Add(48*time.Hour)); day != 1 {
		t.Fatalf("two days after: %d, want 1", day)
	}
	if first, _ := s.Hold(s.IP("127.0.0.2"), "yahoo", start); first {
		t.Fatal("a warm IP was held")
	}
	// The counts and the holds survive a restart.
	s.Take(ip, "yahoo", start.Add(24*time.Hour))
	b, err := s.MarshalState(start.Add(24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r := testSet(t, "")
	if err := r.RestoreState(b, start.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if day, _ := r.Day(r.IP("127.0.0.3"), "yahoo", start.Add(24*time.Hour)); day != 0 {
		t.Errorf("restored hold lost: day %d", day)
	}
	if _, sent, _ := r.Cap(r.IP("127.0.0.3"), "yahoo", start.Add(24*time.Hour)); sent != 1 {
		t.Errorf("restored count %d", sent)
	}
	if err := r.RestoreState([]byte(`{"version":2}`), start); err == nil {
		t.Error("a future version was restored")
	}
}

func TestCandidates(t *testing.T) {
	for _, tc := range []struct {
		overflow     string
		taken        int
		warming, ips int
		capped       bool
	}{
		{config.OverflowWarm, 0, 1, 2, false},
		{config.OverflowWarm, 2, 0, 1, true},
		{config.OverflowWait, 0, 1, 1, false},
		{config.OverflowWait, 2, 0, 0, true},
	} {
		s := testSet(t, tc.overflow)
		ip := s.IP("127.0.0.3")
		for range tc.taken {
			s.Take(ip, "yahoo", start)
		}
		warming, warm, capped := s.Candidates(s.Pool("p"), "yahoo", start)
		if len(warming) != tc.warming || len(warming)+len(warm) != tc.ips || capped != tc.capped {
			t.Errorf("%s after %d: warming %v warm %v capped %v", tc.overflow, tc.taken, warming, warm, capped)
		}
		// Past the schedule the pool is all warm: wait no longer matters.
		warming, warm, _ = s.Candidates(s.Pool("p"), "yahoo", start.Add(5*24*time.Hour))
		if len(warming) != 0 || len(warm) != 2 {
			t.Errorf("%s warm pool: %v %v", tc.overflow, warming, warm)
		}
	}
}

func TestNextDay(t *testing.T) {
	if got := NextDay(start.Add(25 * time.Hour)); !got.Equal(start.Add(48 * time.Hour)) {
		t.Errorf("NextDay = %v", got)
	}
}

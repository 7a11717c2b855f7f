package guard

import (
	"context"
	"testing"
	"time"

	"facteur/policy"
)

func rateOf(t *testing.T, s string) policy.Rate {
	r, err := policy.ParseRate(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSenderLimitLeavesOthersAlone(t *testing.T) {
	g := New(Options{PerSender: rateOf(t, "10/h")})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i := range 10 {
		if err := g.Admit("127.0.0.1", "flood@example.com", "", now); err != nil {
			t.Fatalf("message %d refused: %v", i, err)
		}
	}
	err := g.Admit("127.0.0.1", "flood@example.com", "", now)
	if err == nil || err.Code != 451 || err.EnhancedCode[1] != 7 {
		t.Fatalf("11th message: %v, want 451 4.7.1", err)
	}
	if err := g.Admit("127.0.0.1", "other@example.com", "", now); err != nil {
		t.Fatalf("another sender refused: %v", err)
	}
	// One token comes back every 6 minutes.
	if err := g.Admit("127.0.0.1", "flood@example.com", "", now.Add(6*time.Minute)); err != nil {
		t.Fatalf("after 6 min: %v", err)
	}
}

func TestRefusalCostsNoToken(t *testing.T) {
	g := New(Options{PerClientIP: rateOf(t, "2/h"), PerSender: rateOf(t, "1/h")})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	if err := g.Admit("10.0.0.1", "a@example.com", "", now); err != nil {
		t.Fatal(err)
	}
	if err := g.Admit("10.0.0.1", "a@example.com", "", now); err == nil {
		t.Fatal("second message of a 1/h sender accepted")
	}
	// The refused message did not take the IP's second token.
	if err := g.Admit("10.0.0.1", "b@example.com", "", now); err != nil {
		t.Fatalf("IP token lost to a refusal: %v", err)
	}
}

func TestNoLimitByDefault(t *testing.T) {
	g := New(Options{})
	now := time.Now()
	for range 10000 {
		if err := g.Admit("127.0.0.1", "bulk@example.com", "", now); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStorageFloors(t *testing.T) {
	g := New(Options{MaxQueue: 5, QueueSize: func(context.Context) (int, error) { return 5, nil }})
	if err := g.Admit("127.0.0.1", "a@example.com", "", time.Now()); err == nil || err.Code != 452 {
		t.Fatalf("queue full: %v", err)
	}
	g = New(Options{MinFreeDisk: 1 << 62, DataDir: t.TempDir()})
	if err := g.Admit("127.0.0.1", "a@example.com", "", time.Now()); err == nil || err.Code != 452 {
		t.Fatalf("disk floor: %v", err)
	}
	g = New(Options{MinFreeDisk: 1, DataDir: t.TempDir()})
	if err := g.Admit("127.0.0.1", "a@example.com", "", time.Now()); err != nil {
		t.Fatalf("disk has room: %v", err)
	}
}

package guard

import (
	"context"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

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
		if err := g.Admit(Client{IP: "127.0.0.1"}, "flood@example.com", now); err != nil {
			t.Fatalf("message %d refused: %v", i, err)
		}
	}
	err := g.Admit(Client{IP: "127.0.0.1"}, "flood@example.com", now)
	if err == nil || err.Code != 451 || err.EnhancedCode[1] != 7 {
		t.Fatalf("11th message: %v, want 451 4.7.1", err)
	}
	if err := g.Admit(Client{IP: "127.0.0.1"}, "other@example.com", now); err != nil {
		t.Fatalf("another sender refused: %v", err)
	}
	// One token comes back every 6 minutes.
	if err := g.Admit(Client{IP: "127.0.0.1"}, "flood@example.com", now.Add(6*time.Minute)); err != nil {
		t.Fatalf("after 6 min: %v", err)
	}
}

func TestRefusalCostsNoToken(t *testing.T) {
	g := New(Options{PerClientIP: rateOf(t, "2/h"), PerSender: rateOf(t, "1/h")})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	if err := g.Admit(Client{IP: "10.0.0.1"}, "a@example.com", now); err != nil {
		t.Fatal(err)
	}
	if err := g.Admit(Client{IP: "10.0.0.1"}, "a@example.com", now); err == nil {
		t.Fatal("second message of a 1/h sender accepted")
	}
	// The refused message did not take the IP's second token.
	if err := g.Admit(Client{IP: "10.0.0.1"}, "b@example.com", now); err != nil {
		t.Fatalf("IP token lost to a refusal: %v", err)
	}
}

func TestNoLimitByDefault(t *testing.T) {
	g := New(Options{})
	now := time.Now()
	for range 10000 {
		if err := g.Admit(Client{IP: "127.0.0.1"}, "bulk@example.com", now); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStorageFloors(t *testing.T) {
	g := New(Options{MaxQueue: 5, QueueSize: func(context.Context) (int, error) { return 5, nil }})
	if err := g.Admit(Client{IP: "127.0.0.1"}, "a@example.com", time.Now()); err == nil || err.Code != 452 {
		t.Fatalf("queue full: %v", err)
	}
	g = New(Options{MinFreeDisk: 1 << 62, DataDir: t.TempDir()})
	if err := g.Admit(Client{IP: "127.0.0.1"}, "a@example.com", time.Now()); err == nil || err.Code != 452 {
		t.Fatalf("disk floor: %v", err)
	}
	g = New(Options{MinFreeDisk: 1, DataDir: t.TempDir()})
	if err := g.Admit(Client{IP: "127.0.0.1"}, "a@example.com", time.Now()); err != nil {
		t.Fatalf("disk has room: %v", err)
	}
}

func TestPerClientIPSparesTrustedClients(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name         string
		trusted, opt bool
		wantRefused  bool
	}{
		{"untrusted client is limited", false, false, true},
		{"trusted client is not limited", true, false, false},
		{"trusted client limited when asked", true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(Options{PerClientIP: rateOf(t, "2/h"), PerClientIPTrusted: tc.opt})
			c := Client{IP: "127.0.0.1", Trusted: tc.trusted}
			var err *smtp.SMTPError
			for range 3 {
				err = g.Admit(c, "a@example.com", now)
			}
			if (err != nil) != tc.wantRefused {
				t.Fatalf("third message: %v, want refused=%v", err, tc.wantRefused)
			}
		})
	}
}

func TestPerUserCountsRecipients(t *testing.T) {
	g := New(Options{PerUser: rateOf(t, "10/h")})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	if _, err := g.Spend("www-data", 8, now); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Spend("www-data", 3, now); err == nil || err.Code != 451 {
		t.Fatalf("11 recipients in 10/h: %v, want 451", err)
	}
	// The refusal took nothing: two more fit, and another user is apart.
	sp, err := g.Spend("www-data", 2, now)
	if err != nil {
		t.Fatalf("2 more: %v", err)
	}
	if _, err := g.Spend("shop", 10, now); err != nil {
		t.Fatalf("other user: %v", err)
	}
	// An abandoned transaction gives its recipients back.
	sp.Refund(now)
	if _, err := g.Spend("www-data", 2, now); err != nil {
		t.Fatalf("after refund: %v", err)
	}
	// More recipients than the budget can ever hold is permanent.
	if err := g.Local("shop", "a@example.com", 11, now); err == nil || err.Code/100 != 5 {
		t.Fatalf("11 recipients against 10/h: %v, want 5xx", err)
	}
	// Unknown users are not limited.
	if _, err := g.Spend("", 100, now); err != nil {
		t.Fatal(err)
	}
}

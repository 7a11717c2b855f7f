package daemon

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/breaker"
	"facteur/relay/clock"
	"facteur/relay/config"
	"facteur/relay/maillog"
)

// tripWWWData trips user=www-data (and its sender domain) in g.
func tripWWWData(g *breakerGuard) {
	now := time.Now()
	for i := range 20 {
		g.Observe(queue.Message{ID: queue.ID(fmt.Sprintf("M%d", i)), Sender: "noreply@shop.example", User: "www-data"},
			breaker.Outcome{ID: fmt.Sprintf("M%d", i), Rcpt: fmt.Sprintf("u%d@example.org", i), Status: breaker.Bounced,
				Reply: "550 5.1.1 user unknown", At: now})
	}
}

func TestBreakerGuardHold(t *testing.T) {
	for _, tc := range []struct {
		action     string
		user       string
		wantReason string
		wantCode   int
	}{
		{"hold", "www-data", "breaker", 0},
		{"hold", "alice", "", 0},
		{"refuse", "www-data", "", 451},
		{"refuse", "alice", "", 0},
	} {
		t.Run(tc.action+" "+tc.user, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir = t.TempDir()
			cfg.Breaker = config.DefaultBreaker()
			cfg.Breaker.Action = tc.action
			store, err := queue.Open(admin.DBPath(cfg), queue.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			g := newBreakerGuard(t.Context(), cfg, store, maillog.New(io.Discard, "text"), clock.Real{})
			tripWWWData(g)
			reason, attrs, err := g.Hold(queue.Envelope{Sender: "x@other.example", User: tc.user}, time.Now())
			var se *smtp.SMTPError
			if tc.wantCode != 0 {
				if !errors.As(err, &se) || se.Code != tc.wantCode || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) {
					t.Fatalf("err %v, want %d 4.7.1", err, tc.wantCode)
				}
				return
			}
			if err != nil || reason != tc.wantReason {
				t.Fatalf("Hold = %q %v %v, want %q", reason, attrs, err, tc.wantReason)
			}
			if reason != "" && fmt.Sprint(attrs) != "[user www-data]" {
				t.Errorf("attrs %v", attrs)
			}
		})
	}
}

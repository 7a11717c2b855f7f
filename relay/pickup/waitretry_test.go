package pickup

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/queue/maildrop"
	"facteur/relay/cleanup"
	"facteur/relay/clock"
)

// countingGuard refuses everything with a 4xx (a user over its budget)
// and counts how often it is asked.
type countingGuard struct{ asked int }

func (g *countingGuard) Local(user, sender string, nrcpt int, now time.Time) *smtp.SMTPError {
	g.asked++
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Rate limit exceeded for user " + user}
}

// A file held back by the guard is not read again at every scan (one a
// second): a user over its budget with its 100 MiB of maildrop quota
// waiting would make the daemon read and hash 100 MiB a second for the
// hour its budget takes to refill. It is retried every waitRetry, and
// nothing is lost.
func TestWaitingFileRetriedNotReread(t *testing.T) {
	for _, tc := range []struct {
		name  string
		scans int           // one per second
		files int           // waiting
		want  int           // guard questions
		after time.Duration // then one more scan this much later
		more  int           // questions it adds
	}{
		{"one file, a minute of scans", 60, 1, 2, waitRetry, 1},
		{"three files, ten seconds", 10, 3, 3, waitRetry, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			drop := filepath.Join(dir, "maildrop")
			if err := maildrop.Init(drop, -1); err != nil {
				t.Fatal(err)
			}
			st, err := queue.Open(filepath.Join(dir, "q.db"), queue.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var logb bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logb, nil))
			c := cleanup.New(cleanup.Options{Hostname: "relay.test", LocalDomain: "example.com"}, st, nil, log)
			now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
			clk := clock.NewFake(now)
			g := &countingGuard{}
			p := &Pickup{Dir: drop, Cleanup: c, Log: log, Clock: clk, Guard: g}
			for range tc.files {
				env := maildrop.Envelope{Sender: "web@example.com", Recipients: []string{"a@example.org"}, UID: os.Getuid(), User: "web", Time: now}
				if _, err := maildrop.Write(drop, env, strings.NewReader("Subject: x\r\n\r\ny\r\n")); err != nil {
					t.Fatal(err)
				}
			}
			for range tc.scans {
				if _, err := p.Scan(t.Context()); err != nil {
					t.Fatal(err)
				}
				clk.Advance(time.Second)
			}
			if g.asked != tc.want {
				t.Fatalf("%d scans over %d waiting files asked the guard %d times, want %d", tc.scans, tc.files, g.asked, tc.want)
			}
			clk.Advance(tc.after)
			p.Scan(t.Context())
			if g.asked != tc.want+tc.more {
				t.Fatalf("after the retry delay: asked %d times, want %d", g.asked, tc.want+tc.more)
			}
			if left, _ := maildrop.List(drop); len(left) != tc.files {
				t.Fatalf("%d files left, want %d (nothing lost)", len(left), tc.files)
			}
			if got := strings.Count(logb.String(), "maildrop message waits"); got != tc.files {
				t.Errorf("%d waits logged, want one per file", got)
			}
		})
	}
}

package pickup

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"facteur/queue"
	"facteur/queue/maildrop"
	"facteur/relay/cleanup"
	"facteur/relay/clock"
)

// One entry of the maildrop that cannot be read (a socket: open fails; a
// FIFO: open would wait for a writer for ever) must not stop pickup: the
// other users' files behind it, cron's mail among them, are still queued,
// and the scan returns.
func TestOddEntryDoesNotStopPickup(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(path string) error
	}{
		{"socket", func(path string) error {
			ln, err := net.Listen("unix", path)
			if err == nil {
				t.Cleanup(func() { ln.Close() })
			}
			return err
		}},
		{"fifo", func(path string) error { return syscall.Mkfifo(path, 0o640) }},
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
			p := &Pickup{Dir: drop, Cleanup: c, Log: log, Clock: clock.NewFake(now)}
			// The odd entry sorts first.
			if err := tc.make(filepath.Join(drop, "0000-odd")); err != nil {
				t.Fatal(err)
			}
			env := maildrop.Envelope{Sender: "root@example.com", Recipients: []string{"ops@example.org"}, UID: os.Getuid(), User: "root", Time: now}
			if _, err := maildrop.Write(drop, env, strings.NewReader("Subject: cron\r\n\r\nout\r\n")); err != nil {
				t.Fatal(err)
			}
			type result struct {
				n   int
				err error
			}
			done := make(chan result, 1)
			go func() {
				n, err := p.Scan(t.Context())
				done <- result{n, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the scan hangs on the odd entry")
			}
			if r.n != 1 {
				t.Fatalf("scan queued %d (%v), want the file behind the odd entry", r.n, r.err)
			}
			if !strings.Contains(logb.String(), "0000-odd") {
				t.Errorf("the odd entry is not logged:\n%s", logb.String())
			}
		})
	}
}

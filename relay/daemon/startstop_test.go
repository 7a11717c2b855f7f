package daemon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"facteur/relay/config"
	"facteur/relay/maillog"
)

// cancelOnLine is the daemon's log: it cancels when a line holding mark is
// written, as a SIGTERM arriving right then would.
type cancelOnLine struct {
	mark   string
	cancel context.CancelFunc
	mu     sync.Mutex // guards buf
	buf    bytes.Buffer
}

func (w *cancelOnLine) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mark != "" && bytes.Contains(p, []byte(w.mark)) {
		w.cancel()
	}
	return w.buf.Write(p)
}

func (w *cancelOnLine) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// A SIGTERM at any moment of the start stops the daemon: the listeners
// are served by goroutines that may not have run yet when the shutdown
// closes them, and one that registered its server after the shutdown had
// looked served its listener for ever (systemd then waits TimeoutStopSec
// and kills it; a test hangs).
func TestRunStopsWhenSignalledDuringStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		mark string // "" cancels before Run
	}{
		{"before the start", ""},
		{"at the started line", " started "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// 20 rounds: the goroutines' order varies from one to the next.
			for i := range 20 {
				dir := t.TempDir()
				secret := filepath.Join(dir, "verp.key")
				if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
					t.Fatal(err)
				}
				yaml := fmt.Sprintf(`listen: [127.0.0.1:0]
admin: ""
data_dir: %s
resolver: 127.0.0.1:9
shutdown_timeout: 5s
bounces:
  domain: bounces.example.com
  listen: [127.0.0.1:0]
  secret_file: %s
`, filepath.Join(dir, "data"), secret)
				cfg, err := config.Parse(filepath.Join(dir, "facteur.yaml"), []byte(yaml))
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				w := &cancelOnLine{mark: tc.mark, cancel: cancel}
				if tc.mark == "" {
					cancel()
				}
				done := make(chan error, 1)
				go func() { done <- Run(ctx, cfg, maillog.New(w, "text")) }()
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("round %d: Run: %v\n%s", i, err, w)
					}
				case <-time.After(30 * time.Second):
					var stacks bytes.Buffer
					pprof.Lookup("goroutine").WriteTo(&stacks, 1)
					t.Fatalf("round %d: Run still running 30 s after its context ended (shutdown_timeout 5s)\n%s\n%s", i, w, &stacks)
				}
				if tc.mark != "" && !strings.Contains(w.String(), " stopped") {
					t.Errorf("round %d: no stopped line:\n%s", i, w)
				}
			}
		})
	}
}

package pickup

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"facteur/queue"
	"facteur/queue/maildrop"
	"facteur/relay/cleanup"
)

func TestScanIngestsAndQuarantines(t *testing.T) {
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
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := cleanup.New(cleanup.Options{Hostname: "relay.test", LocalDomain: "example.com", Aliases: map[string]string{"root": "ops@example.org"}}, st, nil, log)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	p := &Pickup{Dir: drop, Cleanup: c, Log: log, Now: func() time.Time { return now }}

	env := maildrop.Envelope{Sender: "www-data@example.com", Recipients: []string{"root@example.com"}, UID: os.Getuid(), User: "www-data", Time: now}
	if _, err := maildrop.Write(drop, env, strings.NewReader("Subject: cron\r\n\r\nout\r\n")); err != nil {
		t.Fatal(err)
	}
	loop := env
	loop.Recipients = []string{"x@example.org"}
	if _, err := maildrop.Write(drop, loop, strings.NewReader(strings.Repeat("Received: x\r\n", 60)+"\r\nloop\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(drop, "garbage"), []byte("not a maildrop file"), 0o640); err != nil {
		t.Fatal(err)
	}
	n, err := p.Scan(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("Scan = %d, %v; want 1 queued", n, err)
	}
	msgs, _ := st.List(t.Context(), queue.Filter{})
	if len(msgs) != 1 || msgs[0].Recipients[0].Address != "ops@example.org" {
		t.Fatalf("queue: %+v", msgs)
	}
	body, _ := st.Body(t.Context(), msgs[0].ID)
	if !bytes.Contains(body, []byte("Received: by relay.test (facteur, from userid ")) {
		t.Errorf("no local Received: %q", body)
	}
	left, _ := maildrop.List(drop)
	if len(left) != 0 {
		t.Errorf("maildrop still holds %v", left)
	}
	// The loop and the garbage are kept aside, not dropped.
	corrupt, _ := os.ReadDir(filepath.Join(drop, "corrupt"))
	if len(corrupt) < 2 {
		t.Errorf("quarantine holds %d entries, want the loop and the garbage", len(corrupt))
	}
}

package admin

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"facteur/queue"
	"facteur/relay/unixsock"
)

// showq answers every client with the listing, and reads nothing: a
// command sent to it does nothing.
func TestShowq(t *testing.T) {
	s := testServer(t, "", false)
	now := time.Now()
	id, err := s.Store.Enqueue(t.Context(), queue.Envelope{Sender: "app@example.com", Recipients: []string{"bob@example.org"}}, []byte("Subject: x\r\n\r\nx\r\n"), now)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "showq.sock")
	ln, err := unixsock.Listen(path, 0o666, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	q := &Showq{Store: s.Store}
	go func() { done <- q.Serve(ctx, ln) }()
	for _, send := range []string{"", "POST /queue/delete?all=1 HTTP/1.1\r\nHost: x\r\n\r\n"} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, send)
		b, err := io.ReadAll(c)
		c.Close()
		if send != "" {
			// Closed with the command unread: the kernel may reset.
			err = nil
		}
		if err != nil || !strings.Contains(string(b), string(id)) || !strings.Contains(string(b), "bob@example.org") {
			t.Errorf("listing %q, %v", b, err)
		}
	}
	if _, err := s.Store.Get(t.Context(), id); err != nil {
		t.Errorf("the message is gone: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

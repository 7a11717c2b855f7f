package inbound

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Shutdown stops the listener whichever runs first: Serve starts in a
// goroutine of its own, and a SIGTERM during the daemon's start may come
// before it. A Serve left accepting kept the daemon from exiting.
func TestShutdownStopsServe(t *testing.T) {
	for _, tc := range []struct {
		name          string
		shutdownFirst bool
	}{
		{"Shutdown before Serve", true},
		{"Shutdown after Serve", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Domain: "bounces.example.com", Hostname: "relay.test"}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if tc.shutdownFirst {
				if err := s.Shutdown(t.Context()); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- s.Serve(ln) }()
			if !tc.shutdownFirst {
				// Serve runs once a client gets the greeting.
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 64)
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if n, err := c.Read(buf); err != nil || string(buf[:3]) != "220" {
					t.Fatalf("greeting: %q %v", buf[:n], err)
				}
				c.Close()
				if err := s.Shutdown(t.Context()); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				ln.Close()
				t.Fatal("Serve still accepting 10 s after Shutdown")
			}
			if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
				c.Close()
				t.Errorf("%s still accepts connections after Shutdown", ln.Addr())
			}
		})
	}
}

// A remote that aborts a BDAT transaction (RSET after a chunk) and sends
// the next bounce on the same connection, pipelined: each transaction gets
// its own reply, and the handler sees each kept bounce with its own
// recipients (package bdat; without it the next transaction got the
// aborted one's 554, and Data raced Reset on the recipients).
func TestBDATAbortThenReuse(t *testing.T) {
	var mu sync.Mutex
	var got []string
	s := &Server{Domain: "bounces.example.com", Hostname: "relay.test", Log: slog.New(slog.DiscardHandler),
		Handle: func(_ context.Context, _ string, rcpts []string, raw []byte) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, strings.Join(rcpts, ",")+" "+string(raw))
			return nil
		}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	const rounds = 40
	aborted, kept := "Subject: aborted\r\n\r\nhalf", "Subject: kept\r\n\r\nwhole\r\n"
	script := "EHLO mx.example.org\r\n"
	for i := range rounds {
		// Not an empty chunk (BDAT 0): go-smtp then goes on before the
		// aborted Data starts, and its own goroutine races it (package bdat).
		chunk := aborted
		script += fmt.Sprintf("MAIL FROM:<>\r\nRCPT TO:<b%d@bounces.example.com>\r\nBDAT %d\r\n%sRSET\r\n", i, len(chunk), chunk)
		script += fmt.Sprintf("MAIL FROM:<>\r\nRCPT TO:<c%d@bounces.example.com>\r\nBDAT %d LAST\r\n%s", i, len(kept), kept)
	}
	go c.Write([]byte(script + "QUIT\r\n"))
	out, _ := io.ReadAll(c)
	if strings.Contains(string(out), "aborted") || strings.Count(string(out), "\r\n250 ") < 4*rounds {
		t.Errorf("replies:\n%s", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != rounds {
		t.Fatalf("%d bounces handled, want %d: %q", len(got), rounds, got)
	}
	for i, g := range got {
		if want := fmt.Sprintf("c%d@bounces.example.com %s", i, kept); g != want {
			t.Errorf("bounce %d: %q, want %q", i, g, want)
		}
	}
}

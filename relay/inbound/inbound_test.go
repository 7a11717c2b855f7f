package inbound

import (
	"net"
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

package submission

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// A Shutdown that comes before Serve has run (a SIGTERM during the
// daemon's start, whose listeners are served by goroutines that may not
// have run yet) still stops it: Serve closes its listener and returns,
// instead of accepting for ever on a listener nobody closes, which kept
// the daemon from exiting.
func TestShutdownBeforeServe(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen func(t *testing.T) (net.Listener, Listener)
	}{
		{"loopback TCP", func(t *testing.T) (net.Listener, Listener) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			return ln, Listener{Addr: ln.Addr().String()}
		}},
		{"the shim's socket", func(t *testing.T) (net.Listener, Listener) {
			ln, err := ListenLocal(filepath.Join(t.TempDir(), "public"), -1)
			if err != nil {
				t.Fatal(err)
			}
			return ln, Listener{Addr: ln.Addr().String(), Local: true}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := New(Options{Hostname: "relay.test"}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ln, l := tc.listen(t)
			if err := srv.Shutdown(t.Context()); err != nil {
				t.Fatalf("Shutdown with nothing served: %v", err)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(t.Context(), ln, l) }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve after Shutdown: %v", err)
				}
			case <-time.After(10 * time.Second):
				ln.Close() // let the goroutine end
				t.Fatal("Serve still accepting 10 s after Shutdown")
			}
			if c, err := net.Dial(ln.Addr().Network(), ln.Addr().String()); err == nil {
				c.Close()
				t.Errorf("%s still accepts connections after Shutdown", ln.Addr())
			}
		})
	}
}

// Shutdown closes a listener that Serve has taken: the common order, kept
// working by the change above (go-smtp then finds it closed already).
func TestShutdownAfterServe(t *testing.T) {
	srv := New(Options{Hostname: "relay.test"}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(t.Context(), ln, Listener{Addr: ln.Addr().String()}) }()
	// Serve has registered once a client gets the greeting.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(buf); err != nil || n < 3 || string(buf[:3]) != "220" {
		t.Fatalf("greeting: %q %v", buf[:n], err)
	}
	c.Close()
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still accepting 10 s after Shutdown")
	}
}

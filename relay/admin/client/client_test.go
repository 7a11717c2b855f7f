package client

import (
	"bytes"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// A daemon that takes the connection and never answers fails the command,
// a streamed listing included (it has no overall timeout): the CLI must not
// hold a cron job or a script for ever.
func TestSilentDaemonTimesOut(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Accepts, reads the request, answers nothing.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	for _, tc := range []struct {
		name string
		out  any
	}{
		{"JSON answer", nil},
		{"streamed answer", &bytes.Buffer{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// New's bounds are minutes; the mechanism is the same.
			c := newClient(sock, 200*time.Millisecond, 200*time.Millisecond)
			done := make(chan error, 1)
			go func() { done <- c.Do("GET", "/queue", nil, nil, tc.out) }()
			select {
			case err := <-done:
				if err == nil || errors.Is(err, ErrDaemonDown) {
					t.Fatalf("got %v, want a timeout", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("still waiting 10 s on a daemon that never answers")
			}
		})
	}
}

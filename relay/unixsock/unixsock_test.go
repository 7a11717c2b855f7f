package unixsock

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.sock")
	ln, err := Listen(path, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	t.Run("a live socket is not taken over", func(t *testing.T) {
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		if _, err := Listen(path, 0o600, -1); !errors.Is(err, ErrInUse) {
			t.Errorf("Listen over a live socket: %v, want ErrInUse", err)
		}
	})
	t.Run("Peer is the connecting process", func(t *testing.T) {
		done := make(chan Cred, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- Cred{PID: -1}
				return
			}
			defer c.Close()
			cred, err := Peer(c)
			if err != nil {
				cred.PID = -1
			}
			done <- cred
		}()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cred := <-done
		if cred.PID != os.Getpid() || cred.UID != os.Geteuid() || cred.GID != os.Getegid() {
			t.Errorf("Peer = %+v, want pid %d uid %d gid %d", cred, os.Getpid(), os.Geteuid(), os.Getegid())
		}
	})
	t.Run("a stale socket is replaced", func(t *testing.T) {
		// A socket file nobody listens on, as a killed daemon leaves it.
		stale := filepath.Join(dir, "stale.sock")
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: stale}); err != nil {
			t.Fatal(err)
		}
		syscall.Close(fd)
		ln2, err := Listen(stale, 0o666, -1)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		ln2.Close()
	})
	t.Run("a regular file is not removed", func(t *testing.T) {
		f := filepath.Join(dir, "file")
		os.WriteFile(f, []byte("x"), 0o600)
		if _, err := Listen(f, 0o600, -1); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen over a file: %v", err)
		}
	})
	t.Run("path too long", func(t *testing.T) {
		if _, err := Listen(filepath.Join(dir, strings.Repeat("x", 120)), 0o600, -1); err == nil {
			t.Error("a path past sun_path was accepted")
		}
	})
	ln.Close()
}

func TestPrepareDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	// An existing, too open directory is closed again.
	if err := PrepareDir(dir, 0o700, -1); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", fi.Mode().Perm())
	}
}

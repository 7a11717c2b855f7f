package unixsock

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
)

// The kernel says "no such socket" for a tuple nobody holds: unknown, not
// someone else's uid.
func TestTCPOwnerUnknownSocket(t *testing.T) {
	local := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}
	remote := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 2}
	if uid, err := TCPOwner(local, remote); err == nil {
		t.Fatalf("uid %d for a socket that does not exist", uid)
	}
}

// A loopback connection's client end is owned by this process's uid.
func TestTCPOwnerOfALoopbackClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	uid, err := TCPOwner(s.RemoteAddr().(*net.TCPAddr), s.LocalAddr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	if int(uid) != os.Getuid() {
		t.Errorf("owner uid %d, want %d", uid, os.Getuid())
	}
}

// A client that sent everything and closed before the lookup (its end in
// FIN_WAIT2, owned by nobody) is unknown: the kernel says uid 0 for it, which
// must not read as root.
func TestTCPOwnerOfAClosedClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := c.Write([]byte("EHLO x\r\nQUIT\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The server reads to the client's FIN: the client's end is orphaned now.
	if _, err := io.ReadAll(s); err != nil {
		t.Fatal(err)
	}
	uid, err := TCPOwner(s.RemoteAddr().(*net.TCPAddr), s.LocalAddr().(*net.TCPAddr))
	if !errors.Is(err, ErrNoOwner) {
		t.Fatalf("owner uid %d, %v for a socket its process closed, want ErrNoOwner", uid, err)
	}
}

package unixsock

import (
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

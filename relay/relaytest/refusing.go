package relaytest

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"
)

// RefusingAddr returns ip:port where connections are refused for the whole
// test: a socket bound there and never listening holds the port, so that no
// other process (a parallel test, another package's) can start listening on
// it meanwhile, as one could after a picked port was closed. ip is an IPv4
// loopback address, 127.0.0.1 when empty.
func RefusingAddr(t testing.TB, ip string) string {
	t.Helper()
	if ip == "" {
		ip = "127.0.0.1"
	}
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		t.Fatalf("RefusingAddr: %q is not an IPv4 address", ip)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: a.As4()}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s:%d", ip, sa.(*syscall.SockaddrInet4).Port)
}

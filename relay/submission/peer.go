package submission

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"facteur/relay/unixsock"
)

// Peer is the local account behind a connection, as the kernel tells it
// (issue 11 §1): SO_PEERCRED on the local socket, the owner of the client's
// TCP socket (sock_diag) for a loopback client. A hacked site can forge
// anything it writes, never this.
type Peer struct {
	Known bool
	UID   int
	User  string // the account name, or the decimal uid when it has none
}

// peerOfUnix reads SO_PEERCRED of a Unix-socket connection, through
// unixsock, the package that owns the local sockets and reads their peers
// for the admin API too.
func peerOfUnix(c *net.UnixConn) (Peer, error) {
	cred, err := unixsock.Peer(c)
	if err != nil {
		return Peer{}, err
	}
	return Peer{Known: true, UID: cred.UID}, nil
}

// peerOfTCP asks the kernel (NETLINK_SOCK_DIAG, inet_diag) which uid owns
// the client's end of a loopback TCP connection: its local address is our
// remote one. The PHP-FPM pool of each site runs as its own user, so
// PHPMailer on 127.0.0.1 is told apart from the other sites.
//
// The request names the exact 4-tuple without NLM_F_DUMP, so the kernel
// answers from its connection hash (inet_diag_find_one_icsk) in
// microseconds; a dump, as vishvananda/netlink's SocketGet sends, walks
// every socket of the host and cost 10 ms a session under load. Like ss(8),
// it needs no privilege.
func peerOfTCP(c net.Conn) (Peer, error) {
	client, ok1 := c.RemoteAddr().(*net.TCPAddr)
	server, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return Peer{}, fmt.Errorf("not a TCP connection")
	}
	uid, err := unixsock.TCPOwner(client, server)
	if err != nil {
		return Peer{}, err
	}
	return Peer{Known: true, UID: int(uid)}, nil
}

// LocalSocket is the name of the shim's socket in DATA_DIR/public.
const LocalSocket = "submit.sock"

// ListenLocal creates dir (DATA_DIR/public) and the shim's socket in it.
// As Postfix's public/, the directory is 0710 with group gid (the shim's
// setgid group, facteur-drop), so that only the shim reaches the socket;
// the socket itself is 0666 inside it. gid < 0 leaves the group alone.
func ListenLocal(dir string, gid int) (net.Listener, error) {
	if err := os.MkdirAll(dir, 0o710); err != nil {
		return nil, fmt.Errorf("local socket: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(dir, -1, gid); err != nil {
			return nil, fmt.Errorf("local socket: %w", err)
		}
	}
	if err := os.Chmod(dir, 0o710); err != nil {
		return nil, fmt.Errorf("local socket: %w", err)
	}
	path := filepath.Join(dir, LocalSocket)
	// A socket left by a daemon that was killed: nobody listens on it (the
	// bind of the admin and SMTP ports already proved we are alone).
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("local socket: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("local socket: %w", err)
	}
	return ln, nil
}

// ListenTCP binds an SMTP listener. Accepted connections get no TCP
// keepalive: the session's idle timeout already ends a connection whose
// client vanished, as Postfix's smtpd relies on its timeouts, and the four
// setsockopt calls Go makes per accepted socket for keepalive were a tenth
// of the system calls of a loopback submission.
func ListenTCP(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

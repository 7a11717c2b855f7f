package submission

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
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

// peerOfUnix reads SO_PEERCRED of a Unix-socket connection.
func peerOfUnix(c *net.UnixConn) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if serr != nil {
		return Peer{}, serr
	}
	return Peer{Known: true, UID: int(cred.Uid)}, nil
}

// peerOfTCP asks the kernel (NETLINK_INET_DIAG) which uid owns the client's
// end of a loopback TCP connection: its local address is our remote one.
// The PHP-FPM pool of each site runs as its own user, so PHPMailer on
// 127.0.0.1 is told apart from the other sites.
func peerOfTCP(c net.Conn) (Peer, error) {
	local, ok1 := c.RemoteAddr().(*net.TCPAddr)
	remote, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return Peer{}, fmt.Errorf("not a TCP connection")
	}
	s, err := netlink.SocketGet(local, remote)
	if err != nil {
		return Peer{}, err
	}
	return Peer{Known: true, UID: int(s.UID)}, nil
}

// names caches uid → account name: a lookup reads /etc/passwd (or NSS).
type names struct {
	mu sync.Mutex // guards m
	m  map[int]string
}

func (n *names) lookup(uid int) string {
	n.mu.Lock()
	name, ok := n.m[uid]
	n.mu.Unlock()
	if ok {
		return name
	}
	name = strconv.Itoa(uid)
	if u, err := user.LookupId(name); err == nil && u.Username != "" {
		name = u.Username
	}
	n.mu.Lock()
	if n.m == nil || len(n.m) > 10000 {
		n.m = map[int]string{}
	}
	n.m[uid] = name
	n.mu.Unlock()
	return name
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

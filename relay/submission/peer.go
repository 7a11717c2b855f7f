package submission

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"

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
	uid, err := inetDiagUID(client, server)
	if err != nil {
		return Peer{}, err
	}
	return Peer{Known: true, UID: int(uid)}, nil
}

// inetDiagUID returns the owner of the TCP socket whose local address is
// local and whose peer is remote.
func inetDiagUID(local, remote *net.TCPAddr) (uint32, error) {
	family := uint8(unix.AF_INET6)
	src, dst := local.IP.To16(), remote.IP.To16()
	if l4, r4 := local.IP.To4(), remote.IP.To4(); l4 != nil && r4 != nil {
		family, src, dst = unix.AF_INET, l4, r4
	}
	if src == nil || dst == nil {
		return 0, fmt.Errorf("bad address %v / %v", local, remote)
	}
	// struct nlmsghdr (16) + struct inet_diag_req_v2 (56).
	req := make([]byte, 16+56)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	r := req[16:]
	r[0], r[1] = family, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(r[4:], 0xffffffff) // every state
	id := r[8:]                                      // struct inet_diag_sockid
	binary.BigEndian.PutUint16(id[0:], uint16(local.Port))
	binary.BigEndian.PutUint16(id[2:], uint16(remote.Port))
	copy(id[4:20], src)
	copy(id[20:36], dst)
	binary.NativeEndian.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	binary.NativeEndian.PutUint32(id[44:], 0xffffffff)

	fd, err := diagSockets.get()
	if err != nil {
		return 0, fmt.Errorf("sock_diag: %w", err)
	}
	seq := diagSeq.Add(1)
	binary.NativeEndian.PutUint32(req[8:], seq)
	uid, err := diagAsk(fd, req, seq)
	if err != nil {
		// A socket that timed out may still receive the late answer:
		// never reuse it.
		unix.Close(fd)
		return 0, err
	}
	diagSockets.put(fd)
	return uid, nil
}

// diagSeq numbers the requests, so that an answer is matched to its
// question.
var diagSeq atomic.Uint32

// diagSockets keeps a few NETLINK_SOCK_DIAG sockets open between lookups: a
// socket per lookup cost five system calls of every loopback session.
var diagSockets = &diagPool{free: make(chan int, 8)}

type diagPool struct{ free chan int }

func (p *diagPool) get() (int, error) {
	select {
	case fd := <-p.free:
		return fd, nil
	default:
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, err
	}
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (p *diagPool) put(fd int) {
	select {
	case p.free <- fd:
	default:
		unix.Close(fd)
	}
}

// diagAsk sends one inet_diag request on fd and reads its answer.
func diagAsk(fd int, req []byte, seq uint32) (uint32, error) {
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag: %w", err)
	}
	buf := make([]byte, 1024) // the answer without extensions: 124 bytes
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("sock_diag: %w", err)
	}
	if n < 16 {
		return 0, fmt.Errorf("sock_diag: short answer")
	}
	if got := binary.NativeEndian.Uint32(buf[8:]); got != seq {
		return 0, fmt.Errorf("sock_diag: answer %d to question %d", got, seq)
	}
	switch binary.NativeEndian.Uint16(buf[4:]) {
	case unix.NLMSG_ERROR:
		if n >= 20 {
			if e := int32(binary.NativeEndian.Uint32(buf[16:])); e != 0 {
				return 0, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
			}
		}
		return 0, fmt.Errorf("sock_diag: error answer")
	case unix.SOCK_DIAG_BY_FAMILY:
		// struct inet_diag_msg: 4 bytes, the sockid (48), expires,
		// rqueue, wqueue, then uid.
		const uidOff = 16 + 4 + 48 + 12
		if n < uidOff+4 {
			return 0, fmt.Errorf("sock_diag: short answer")
		}
		return binary.NativeEndian.Uint32(buf[uidOff:]), nil
	}
	return 0, fmt.Errorf("sock_diag: unexpected answer")
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

package unixsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrNoOwner is TCPOwner's answer for a socket its process has already
// closed: nobody can be named for it.
var ErrNoOwner = errors.New("the socket has no owner any more (closed by its process)")

// TCPOwner returns the uid owning the TCP socket whose local address is
// local and whose peer is remote: for a loopback connection accepted by the
// daemon, pass the client's address as local, so that the kernel names the
// account of the process that connected (issue 11 §1). It asks
// NETLINK_SOCK_DIAG for that exact 4-tuple (inet_diag_find_one_icsk, no
// dump), which needs no privilege, as ss(8). A tuple nobody holds, or a
// socket its process has already closed, is an error, never uid 0.
func TCPOwner(local, remote *net.TCPAddr) (uint32, error) {
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
		// struct inet_diag_msg: family, state, timer, retrans, the sockid
		// (48), expires, rqueue, wqueue, then uid and inode.
		const uidOff = 16 + 4 + 48 + 12
		if n < uidOff+8 {
			return 0, fmt.Errorf("sock_diag: short answer")
		}
		// A socket its process has closed (FIN_WAIT2, TIME_WAIT: the client
		// sent a whole pipelined transaction and hung up before our accept
		// asked) belongs to nobody: the kernel reports it with inode 0 and
		// uid 0. Unknown, never root: root's budget and sender_login would
		// be anyone's who closes fast enough.
		if binary.NativeEndian.Uint32(buf[uidOff+4:]) == 0 {
			return 0, fmt.Errorf("sock_diag: %w (state %d)", ErrNoOwner, buf[16+1])
		}
		return binary.NativeEndian.Uint32(buf[uidOff:]), nil
	}
	return 0, fmt.Errorf("sock_diag: unexpected answer")
}

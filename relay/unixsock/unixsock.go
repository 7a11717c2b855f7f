// Package unixsock creates the daemon's local Unix sockets (the admin
// socket in private/, the read-only queue listing in public/) and reads the
// credentials of the process at the other end (SO_PEERCRED), Postfix's
// model of local IPC: the directory's permissions say who may connect, the
// kernel says who did.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// MaxPath is the longest socket path the kernel accepts (sun_path, with
// its terminating NUL).
const MaxPath = 107

// ErrInUse is returned when a live daemon already listens on the path.
var ErrInUse = errors.New("another process listens on this socket")

// ErrPathTooLong is returned for a path the kernel cannot bind.
var ErrPathTooLong = errors.New("socket path too long")

// Listen binds a stream socket at path with the given mode and group (gid
// < 0: the process's group). A socket file left by a daemon that died is
// removed; one a live process answers on is not (ErrInUse), so that a
// second daemon cannot steal the first one's clients.
func Listen(path string, mode fs.FileMode, gid int) (*net.UnixListener, error) {
	if len(path) > MaxPath {
		return nil, fmt.Errorf("%w: %s is %d bytes, the kernel takes %d", ErrPathTooLong, path, len(path), MaxPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", path, ErrInUse)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	// Bound with the umask's mode, then set: the directory, prepared
	// first, is what keeps others out meanwhile (the umask is the whole
	// process's, not to be changed while other goroutines create files).
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(true)
	if gid >= 0 {
		if err := os.Lchown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("chgrp %s: %w", path, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Cred is the peer of a connection, as the kernel recorded it at connect.
type Cred struct {
	PID, UID, GID int
}

// Peer returns the credentials of the process at the other end of c.
func Peer(c net.Conn) (Cred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Cred{}, fmt.Errorf("not a Unix socket: %T", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, err
	}
	if serr != nil {
		return Cred{}, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return Cred{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}, nil
}

// PrepareDir creates dir (and parents) and sets its mode and group (gid <
// 0: left alone), also when it existed: a directory's permissions are the
// access control of the sockets in it.
func PrepareDir(dir string, mode fs.FileMode, gid int) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if gid >= 0 {
		if err := os.Lchown(dir, -1, gid); err != nil {
			return fmt.Errorf("chgrp %s: %w", dir, err)
		}
	}
	return os.Chmod(dir, mode)
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"facteur/relay/maillog"
	"facteur/relay/unixsock"
)

// The daemon's local sockets (issue 11 §4), Postfix's layout:
//   data_dir/private/admin.sock  every admin action; private/ is 0700, the
//                                daemon's user's (0750 and admin_group's
//                                with admin_group), peers checked with
//                                SO_PEERCRED
//   data_dir/public/showq.sock   the queue listing for mailq, nothing else;
//                                public/ is 0710, group facteur-drop, the
//                                setgid shim's group (shared with the
//                                shim's submission socket)

// bindAdminSockets prepares private/ and public/ and binds the admin and
// showq sockets; dropGID is the facteur-drop group (-1: none on this host).
func (d *daemon) bindAdminSockets(dropGID int) (net.Listener, net.Listener, error) {
	cfg := d.cfg
	sockMode, dirMode := os.FileMode(0o600), os.FileMode(0o700)
	if d.adminPeers.GID >= 0 {
		sockMode, dirMode = 0o660, 0o750
	}
	path := cfg.AdminSocketPath()
	if cfg.AdminSocket == "" {
		if err := unixsock.PrepareDir(filepath.Dir(path), dirMode, d.adminPeers.GID); err != nil {
			return nil, nil, fmt.Errorf("admin socket directory: %w", err)
		}
	}
	// A path the kernel cannot bind (a data_dir deeper than a socket
	// address allows) is said, not fatal: the daemon still delivers, the
	// CLI then answers from the database where it can. A live socket is
	// fatal: another daemon runs on this data_dir.
	var adminLn, showqLn net.Listener
	ln, err := unixsock.Listen(path, sockMode, d.adminPeers.GID)
	switch {
	case errors.Is(err, unixsock.ErrPathTooLong):
		d.log.Error(maillog.AdminListenFailed, "admin_socket", path, "err", err.Error())
	case err != nil:
		return nil, nil, fmt.Errorf("admin_socket: %w", err)
	default:
		adminLn = ln
	}
	closeAdmin := func() {
		if adminLn != nil {
			adminLn.Close()
		}
	}
	// public/: the drop group may enter (the setgid shim has it); without
	// that group (a development setup) only root and the daemon's user.
	// The shim's submission socket shares the directory and its mode.
	showq := cfg.ShowqSocketPath()
	if err := unixsock.PrepareDir(filepath.Dir(showq), 0o710, dropGID); err != nil {
		closeAdmin()
		return nil, nil, fmt.Errorf("public socket directory: %w", err)
	}
	ln, err = unixsock.Listen(showq, 0o666, -1)
	switch {
	case errors.Is(err, unixsock.ErrPathTooLong):
		d.log.Error(maillog.AdminListenFailed, "showq_socket", showq, "err", err.Error())
	case err != nil:
		closeAdmin()
		return nil, nil, fmt.Errorf("showq socket: %w", err)
	default:
		showqLn = ln
	}
	return adminLn, showqLn, nil
}

// serveAdminTCP runs the optional TCP admin listener. A port someone else
// holds does not stop the daemon from delivering: it logs and tries the
// bind again every few seconds until it gets the port or the daemon stops.
// ln is the listener bound at start, or nil when that bind failed (serve
// logged it).
func (d *daemon) serveAdminTCP(ctx context.Context, addr string, ln net.Listener) error {
	const maxWait = 5 * time.Second
	wait := 250 * time.Millisecond
	lastErr := ""
	if ln == nil {
		lastErr = "bind failed at start"
	}
	for {
		var err error
		if ln == nil {
			ln, err = net.Listen("tcp", addr)
		}
		if err == nil {
			if lastErr != "" {
				d.log.Info(maillog.AdminListening, "admin", ln.Addr().String())
			}
			hostAddr := addr
			if _, port, _ := net.SplitHostPort(addr); port == "0" {
				hostAddr = ln.Addr().String()
			}
			err = d.admin.Serve(ctx, ln, d.dashboardFront(hostAddr, d.admin.TCPHandler(hostAddr)))
			ln = nil
			if err == nil || ctx.Err() != nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		// One line per new error, not one per try: a squatter that stays
		// would fill the log.
		if err.Error() != lastErr && lastErr != "bind failed at start" {
			d.log.Error(maillog.AdminListenFailed, append([]any{"admin", addr, "err", err.Error()}, portHolder(addr, err)...)...)
		}
		lastErr = err.Error()
		select {
		case <-ctx.Done():
			return nil
		case <-d.clock.After(wait):
		}
		wait = min(2*wait, maxWait)
	}
}

// portHolder names, for a bind that found addr taken, the local account
// whose socket listens there, as the kernel tells it (sock_diag): on an
// unprivileged port (8025 by default) any local user can take the admin
// address before the daemon does, a hacked PHP site included, and serve a
// look-alike login page that collects the admin token. The daemon keeps
// delivering and takes the port back when it is free; this is what tells
// the operator not to log in there meanwhile. Nothing when the holder
// cannot be learnt (another error, an address that is not local).
func portHolder(addr string, err error) []any {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil
	}
	ta, rerr := net.ResolveTCPAddr("tcp", addr)
	if rerr != nil {
		return nil
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		// A wildcard bind: the holder also answers on loopback.
		ip = net.IPv4(127, 0, 0, 1)
	}
	// A listening socket is found by its own address, whatever the peer.
	uid, derr := unixsock.TCPOwner(&net.TCPAddr{IP: ip, Port: ta.Port}, &net.TCPAddr{IP: ip})
	if derr != nil {
		return nil
	}
	return []any{"holder_uid", uid, "holder", (&unixsock.Names{}).Lookup(int(uid)),
		"hint", "another process listens there: do not log in to the dashboard at this address until facteur logs admin listening"}
}

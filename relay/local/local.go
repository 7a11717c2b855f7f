// Package local delivers mail for the host's own users into their mailbox,
// /var/mail/USER in mbox format, as Postfix's local(8) does, so that cron's
// mail to root is read with `mail` rather than sent to a DNS name that does
// not exist. It owns the mailbox file format and its locking, not the
// decision of which recipient is local (the scheduler's) nor aliases
// (cleanup's).
//
// Locking is what Debian's MUAs (bsd-mailx, mutt, through liblockfile)
// expect: a dot-lock USER.lock next to the mailbox, then an fcntl write lock
// on the mailbox itself, both held while one message is appended.
package local

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoUser: the recipient is no account of this host (a permanent failure,
// 550 5.1.1).
var ErrNoUser = errors.New("no such user on this host")

// Mailboxes delivers into Dir/USER.
type Mailboxes struct {
	// Dir is the mail spool, /var/mail on Debian.
	Dir string
	// Lookup finds a user's uid and gid; nil: the host's passwd (os/user).
	Lookup func(name string) (uid, gid int, err error)
	// LockTimeout bounds the wait for a mailbox a MUA holds; default 30s.
	LockTimeout time.Duration
}

// DefaultDir is Debian's mail spool.
const DefaultDir = "/var/mail"

func (m *Mailboxes) lookup(name string) (int, int, error) {
	if m.Lookup != nil {
		return m.Lookup(name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		var unk user.UnknownUserError
		if errors.As(err, &unk) {
			return 0, 0, ErrNoUser
		}
		return 0, 0, err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("user %s: non-numeric uid or gid", name)
	}
	return uid, gid, nil
}

// Exists reports whether name is an account of this host.
func (m *Mailboxes) Exists(name string) bool {
	if !validName(name) {
		return false
	}
	_, _, err := m.lookup(name)
	return err == nil
}

// validName refuses what must not become a file name under Dir.
func validName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '/' || c < 0x21 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Deliver appends msg (CRLF or LF line ends) to name's mailbox, with the
// envelope sender in the From_ line and a Return-Path and Delivered-To
// header, durably (fsync) before it returns nil. ErrNoUser is permanent;
// any other error temporary (the mailbox is left as it was).
func (m *Mailboxes) Deliver(name, sender, rcpt string, msg []byte, at time.Time) error {
	if !validName(name) {
		return ErrNoUser
	}
	uid, gid, err := m.lookup(name)
	if err != nil {
		return err
	}
	path := filepath.Join(m.Dir, name)
	timeout := m.LockTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	// The locks are shared with other programs (MUAs, procmail, mutt):
	// their age is a file's mtime and their wait is real time, so the wall
	// clock, not the injected one, times them.
	deadline := time.Now().Add(timeout)
	unlock, err := dotLock(path+".lock", deadline)
	if err != nil {
		return err
	}
	defer unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("mailbox %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("mailbox %s: %w", path, err)
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	if !st.Mode().IsRegular() || (sys != nil && sys.Nlink != 1) {
		// A hard link or a device planted in the spool must not make the
		// daemon write elsewhere.
		return fmt.Errorf("mailbox %s is not a plain file with one link: not delivering", path)
	}
	if st.Size() == 0 && sys != nil && int(sys.Uid) != uid {
		// New mailbox: it belongs to its user. Without the right to chown
		// (a daemon not running as root), the spool's group (mail) may
		// still read it, as Debian's MUAs do.
		if err := f.Chown(uid, gid); err != nil {
			f.Chmod(0o660)
		}
	}
	if err := fcntlLock(f, deadline); err != nil {
		return fmt.Errorf("mailbox %s: %w", path, err)
	}
	defer unix.FcntlFlock(f.Fd(), unix.F_SETLK, &unix.Flock_t{Type: unix.F_UNLCK, Whence: 0})
	end, err := f.Seek(0, 2)
	if err != nil {
		return fmt.Errorf("mailbox %s: %w", path, err)
	}
	data := Format(sender, rcpt, msg, at)
	if _, err := f.Write(data); err != nil {
		f.Truncate(end)
		return fmt.Errorf("mailbox %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Truncate(end)
		return fmt.Errorf("mailbox %s: %w", path, err)
	}
	return nil
}

// Format renders one mbox entry as Postfix's local writes it (mboxo, which
// bsd-mailx reads): the From_ line, Return-Path and Delivered-To, the
// message with LF line ends and every line starting "From " quoted as
// ">From ", then an empty line.
func Format(sender, rcpt string, msg []byte, at time.Time) []byte {
	from := sender
	if from == "" {
		from = "MAILER-DAEMON"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From %s  %s\n", from, at.Local().Format(time.ANSIC))
	fmt.Fprintf(&b, "Return-Path: <%s>\n", sender)
	fmt.Fprintf(&b, "Delivered-To: %s\n", rcpt)
	msg = bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line = msg[:i+1]
		}
		msg = msg[len(line):]
		if bytes.HasPrefix(line, []byte("From ")) {
			b.WriteByte('>')
		}
		b.Write(line)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// staleLock is the age past which a dot-lock is taken as left by a dead
// process (liblockfile's rule is five minutes).
const staleLock = 5 * time.Minute

// dotLock creates path exclusively, waiting until deadline for another
// holder, and returns its release.
func dotLock(path string, deadline time.Time) (func(), error) {
	for {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("dot-lock %s: %w", path, err)
		}
		if st, err := os.Stat(path); err == nil && time.Since(st.ModTime()) > staleLock {
			os.Remove(path)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("dot-lock %s: held by another process", path)
		}
		// A MUA holds the mailbox for the moment it rewrites it: poll, as
		// liblockfile does.
		time.Sleep(100 * time.Millisecond)
	}
}

func fcntlLock(f *os.File, deadline time.Time) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			return fmt.Errorf("fcntl lock: %w", err)
		}
		if time.Now().After(deadline) {
			return errors.New("fcntl lock held by another process")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

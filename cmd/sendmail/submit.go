package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/queue/maildrop"
	"facteur/relay/admin"
)

// Timeouts toward the local daemon. A daemon that does not answer within
// them is treated as down: the message goes to the maildrop.
const (
	dialTimeout    = 10 * time.Second
	commandTimeout = 2 * time.Minute
	// RFC 5321 §4.5.3.2.6: up to 10 minutes after the final dot.
	dataEndTimeout = 10 * time.Minute
	adminTimeout   = 30 * time.Second
)

// unreachable: the daemon could not be reached (nothing listens, the
// connection broke before the daemon answered for the message). Only then
// does the message go to the maildrop (issue 11 §2): a reply from the daemon,
// 4xx included, is its decision, and the maildrop must not be a way around
// it. recipients are those not refused for good.
type unreachable struct {
	err        error
	recipients []string
	refused    []refusal // recipients refused for good before the failure
}

func (e *unreachable) Error() string { return fmt.Sprintf("daemon unreachable (%v)", e.err) }
func (e *unreachable) Unwrap() error { return e.err }

// tempReply: the daemon answered 4xx (a rate limit, the queue full): the
// caller must try again later (EX_TEMPFAIL), nothing is queued.
type tempReply struct {
	stage   string
	reply   *smtp.SMTPError
	refused []refusal
}

func (e *tempReply) Error() string {
	return fmt.Sprintf("%s deferred by the daemon: %s", e.stage, formatReply(e.reply))
}

type refusal struct {
	rcpt string
	err  *smtp.SMTPError
}

type submitResult struct {
	reply   string // the reply to the final dot ("" if no DATA was sent)
	refused []refusal
}

// dialDaemon connects to the daemon's local socket (DATA_DIR/public/
// submit.sock, where it learns our uid from the kernel), else to its SMTP
// listener on loopback (where it asks the kernel who owns our socket).
func dialDaemon(socket, addr string) (net.Conn, error) {
	var errs []error
	if socket != "" {
		c, err := net.DialTimeout("unix", socket, dialTimeout)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	if addr != "" {
		c, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, errors.New("no listen address in the config")
	}
	return nil, errors.Join(errs...)
}

// submit sends one message to the daemon over SMTP (EHLO, no STARTTLS: the
// daemon is local). A 5xx to RCPT refuses that recipient only; a 5xx to
// MAIL or DATA is returned as *exitError; a 4xx as *tempReply; a daemon
// that cannot be reached as *unreachable. A connection lost after the
// final dot is unreachable too: the message may then be queued twice,
// never lost.
func submit(socket, addr, hello string, env maildrop.Envelope, data []byte) (*submitResult, error) {
	conn, err := dialDaemon(socket, addr)
	if err != nil {
		return nil, &unreachable{err: err, recipients: env.Recipients}
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	c.CommandTimeout = commandTimeout
	c.SubmissionTimeout = dataEndTimeout
	res := &submitResult{}
	fail := func(stage string, err error, rcpts []string) error {
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &se) && se.Code/100 == 5:
			return &exitError{code: replyExit(se), msg: fmt.Sprintf("%s refused by the daemon: %s", stage, formatReply(se))}
		case errors.As(err, &se) && se.Code/100 == 4:
			return &tempReply{stage: stage, reply: se, refused: res.refused}
		}
		return &unreachable{err: fmt.Errorf("%s: %w", stage, err), recipients: rcpts, refused: res.refused}
	}
	if err := c.Hello(hello); err != nil {
		return nil, fail("EHLO", err, env.Recipients)
	}
	opts := &smtp.MailOptions{UTF8: env.SMTPUTF8, Size: int64(len(data))}
	if env.EightBitMIME {
		opts.Body = smtp.Body8BitMIME
	}
	if err := c.Mail(env.Sender, opts); err != nil {
		return nil, fail("MAIL FROM:<"+env.Sender+">", err, env.Recipients)
	}
	var accepted []string
	for _, r := range env.Recipients {
		err := c.Rcpt(r, nil)
		var se *smtp.SMTPError
		switch {
		case err == nil:
			accepted = append(accepted, r)
		case errors.As(err, &se) && se.Code/100 == 5:
			res.refused = append(res.refused, refusal{rcpt: r, err: se})
		default:
			// A 4xx (451 rate limit, 452 too many recipients) or a broken
			// connection: never split the message; RSET gives the daemon
			// back what the accepted recipients spent.
			c.Reset()
			return nil, fail("RCPT TO:<"+r+">", err, notRefused(env.Recipients, res.refused))
		}
	}
	if len(accepted) == 0 {
		c.Quit()
		return res, nil
	}
	w, err := c.Data()
	if err != nil {
		return nil, fail("DATA", err, accepted)
	}
	if _, err := w.Write(data); err != nil {
		return nil, fail("DATA", err, accepted)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return nil, fail("end of DATA", err, accepted)
	}
	res.reply = resp.StatusText
	c.Quit()
	return res, nil
}

func notRefused(all []string, refused []refusal) []string {
	var out []string
next:
	for _, a := range all {
		for _, r := range refused {
			if r.rcpt == a {
				continue next
			}
		}
		out = append(out, a)
	}
	return out
}

// formatReply writes a reply as it was on the wire: "550 5.1.1 text".
func formatReply(se *smtp.SMTPError) string {
	if se.EnhancedCode == (smtp.EnhancedCode{}) || se.EnhancedCode == smtp.NoEnhancedCode {
		return fmt.Sprintf("%d %s", se.Code, se.Message)
	}
	e := se.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s", se.Code, e[0], e[1], e[2], se.Message)
}

// replyExit maps a permanent reply to a sysexits code: a refused mailbox
// (550 5.1.1, which is how the daemon refuses a suppressed recipient) is
// EX_NOUSER; what the caller got wrong in the message or addresses is
// EX_DATAERR; a policy refusal or anything else is EX_UNAVAILABLE.
func replyExit(se *smtp.SMTPError) int {
	e := se.EnhancedCode
	switch {
	case e == smtp.EnhancedCode{5, 1, 1}, e == smtp.EnhancedCode{5, 1, 2}, e == smtp.EnhancedCode{5, 1, 6}, e == smtp.EnhancedCode{5, 1, 10}:
		return exNoUser
	case e[1] == 1, e[1] == 6, e == smtp.EnhancedCode{5, 3, 4}, se.Code == 501, se.Code == 552, se.Code == 553:
		return exDataErr
	}
	return exUnavailable
}

// mailq prints the queue listing the daemon serves on its showq socket
// (data_dir/public/showq.sock, Postfix's showq): the same text as `facteur
// queue list`, for any user, with no credential. The shim's group
// (facteur-drop) lets it enter public/; it never reads admin_token and never
// talks to the TCP admin listener, so a process squatting that port learns
// nothing from mailq.
func (s *shim) mailq() error {
	path := s.cfg.ShowqSocketPath()
	conn, err := net.DialTimeout("unix", path, dialTimeout)
	if err != nil {
		s.verbosef("showq socket %s: %v", path, err)
		if errors.Is(err, syscall.EACCES) {
			return failf(exNoPerm, "showq socket %s: permission denied (is this program installed setgid facteur-drop?)", path)
		}
		return s.mailqDirect()
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(adminTimeout))
	// A listing starts with the queue's first line, a refusal (this
	// account's listing slot taken, or all of them) with admin.ShowqBusy:
	// the daemon is there, so try again later (EX_TEMPFAIL), and keep the
	// refusal off stdout, where a script would take it for the listing.
	br := bufio.NewReader(conn)
	if head, _ := br.Peek(len(admin.ShowqBusy)); string(head) == admin.ShowqBusy {
		line, _ := br.ReadString('\n')
		return failf(exTempFail, "%s", strings.TrimSpace(strings.TrimPrefix(line, "mailq: ")))
	}
	if _, err := io.Copy(s.stdout, br); err != nil {
		return failf(exUnavailable, "reading the queue listing: %v", err)
	}
	return nil
}

// proxySMTP is -bs: an SMTP session on stdin/stdout, relayed byte for byte
// to the daemon's listener, which does all the protocol work. If the daemon
// is down the client gets a 421 greeting, as RFC 5321 §3.8 says a server
// that cannot serve should answer.
func (s *shim) proxySMTP() error {
	addr, _ := s.daemonAddr()
	conn, err := dialDaemon(filepath.Join(s.cfg.DataDir, "public", "submit.sock"), addr)
	if err != nil {
		fmt.Fprintf(s.stdout, "421 4.3.2 %s facteur: mail system is down\r\n", helloName())
		s.verbosef("daemon at %s: %v", addr, err)
		return failf(exUnavailable, "mail system is down")
	}
	defer conn.Close()
	// The stdin copier ends at EOF on stdin; if the daemon hangs up first,
	// the process exits with it still blocked on a read, which is harmless.
	go func() {
		io.Copy(conn, s.stdin)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	if _, err := io.Copy(s.stdout, conn); err != nil {
		return failf(exUnavailable, "SMTP session with the daemon: %v", err)
	}
	return nil
}

// mailqDirect lists the queue with the daemon down, as Postfix's postqueue
// runs showq itself: the maildrop's waiting envelopes, then the queue
// database opened read-only. Only root and the daemon's own user (the owner
// of data_dir) may: anyone else, setgid facteur-drop or not, gets neither,
// because the maildrop (1730) cannot be listed by the group and the database
// (0600) holds bodies and is the daemon's alone. They are told the mail
// system is down (EX_UNAVAILABLE), never that the queue is empty. What is
// printed is metadata, as showq's: envelopes, states, replies; no body, no
// header, no credential.
func (s *shim) mailqDirect() error {
	if !mayReadQueue(os.Getuid(), s.cfg.DataDir) {
		return failf(exUnavailable, "mail system is down: while the daemon is stopped only root can list the queue (sudo mailq, or facteur queue list)")
	}
	fmt.Fprintf(s.stderr, "%s: warning: mail system is down -- reading the queue directly\n", s.prog)
	waiting, err := admin.WriteMaildrop(s.stdout, filepath.Join(s.cfg.DataDir, "maildrop"), true)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return failf(exUnavailable, "mail system is down, and the maildrop cannot be read: %v", err)
	}
	db := filepath.Join(s.cfg.DataDir, "queue.db")
	if _, err := os.Stat(db); errors.Is(err, fs.ErrNotExist) {
		// No daemon ever ran on this data_dir: the maildrop is all there is.
		if waiting == 0 {
			fmt.Fprintln(s.stdout, "Mail queue is empty")
		}
		return nil
	}
	store, err := queue.Open(db, queue.Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		if errors.Is(err, queue.ErrLocked) {
			return failf(exUnavailable, "the showq socket %s does not answer and the daemon holds the queue: %v", s.cfg.ShowqSocketPath(), err)
		}
		return failf(exUnavailable, "mail system is down, and the queue cannot be read: %v", err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if err := admin.WriteListing(ctx, store, nil, s.stdout, waiting); err != nil {
		return failf(exUnavailable, "reading the queue: %v", err)
	}
	return nil
}

// mayReadQueue: root, or the user who owns data_dir (the daemon's), may
// read the queue directly. The check is on the real uid: the shim's
// set-group-ID grants the group, never this.
func mayReadQueue(uid int, dataDir string) bool {
	if uid == 0 {
		return true
	}
	fi, err := os.Stat(dataDir)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == uid
}

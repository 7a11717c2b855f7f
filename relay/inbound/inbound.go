// Package inbound is the optional listener for asynchronous bounces (issue
// 7 §2): an SMTP server that accepts mail only for the configured bounce
// domain, where facteur's VERP return paths (bounces+TOKEN@domain) point,
// and hands each message to a handler that parses and applies it. It is
// not a relay and has no mailboxes: every other recipient gets 550, and a
// message is never forwarded.
package inbound

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/relay/address"
	"facteur/relay/bdat"
	"facteur/relay/maillog"
)

// Handler applies one received bounce; client is the sender's address,
// rcpts are the envelope recipients (they carry the VERP tokens). An error
// is answered 451: the remote retries.
type Handler func(ctx context.Context, client string, rcpts []string, raw []byte) error

// Server accepts mail for one domain.
type Server struct {
	Domain         string
	Hostname       string
	MaxMessageSize int64
	Handle         Handler
	Log            *slog.Logger

	// mu guards srv, ln and closed: Serve runs in a goroutine of its own
	// and Shutdown may come first (a SIGTERM during the daemon's start);
	// closed makes a late Serve return at once, and Shutdown closes ln
	// itself, which go-smtp registers only once its Serve runs.
	mu     sync.Mutex
	srv    *smtp.Server
	ln     net.Listener
	closed bool
}

// Serve runs until Shutdown or until ln is closed; called after Shutdown,
// it closes ln and returns nil.
func (s *Server) Serve(ln net.Listener) error {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, client: c.Conn().RemoteAddr().String()}, nil
	}))
	srv.Domain = s.Hostname
	srv.MaxMessageBytes = s.MaxMessageSize
	srv.MaxRecipients = 50
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = 5 * time.Minute
	srv.EnableSMTPUTF8 = true
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.srv, s.ln = srv, ln
	s.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server, before or after Serve: it closes the
// listener and waits for sessions until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	srv, ln := s.srv, s.ln
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	ln.Close()
	// go-smtp closes the listener again: already closed is fine.
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

type session struct {
	s      *Server
	client string
	rcpts  []string
	bdat   bdat.Tracker // go-smtp may run Data in a goroutine of its own
}

func (ss *session) Mail(string, *smtp.MailOptions) error { ss.rcpts = nil; return nil }

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	// No local-part length check: VERP addresses that carry the recipient
	// exceed RFC 5321's 64 octets, and MTAs deliver them anyway.
	if strings.ContainsAny(to, " \t\r\n") || !strings.EqualFold(address.Domain(to), ss.s.Domain) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: "<" + to + ">: this server accepts bounces for " + ss.s.Domain + " only"}
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	call := ss.bdat.Start(r)
	defer call.End()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		if errors.Is(err, smtp.ErrDataReset) {
			call.Aborted() // package bdat
			return err
		}
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return smtp.ErrDataTooLarge
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Error reading message"}
	}
	if err := ss.s.Handle(context.Background(), ss.client, ss.rcpts, buf.Bytes()); err != nil {
		ss.s.Log.Error(maillog.BounceHandlingFailed, "client", ss.client, "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	}
	return nil
}

// Reset and Logout wait for a BDAT transaction's Data (package bdat).
func (ss *session) Reset()        { ss.bdat.Wait(); ss.rcpts = nil }
func (ss *session) Logout() error { ss.bdat.Wait(); return nil }

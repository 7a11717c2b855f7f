package delivery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Phase names the step of the SMTP conversation where something failed. The
// strings are the log contract (Postfix says "while sending end of data").
type Phase string

const (
	PhaseConnect  Phase = "connect"
	PhaseGreeting Phase = "greeting"
	PhaseEHLO     Phase = "ehlo"
	PhaseSTARTTLS Phase = "starttls"
	PhaseTLS      Phase = "tls" // the handshake or the certificate check
	PhaseAuth     Phase = "auth"
	PhaseMail     Phase = "mail"
	PhaseRcpt     Phase = "rcpt"
	PhaseData     Phase = "data"     // the DATA command and its 354
	PhaseBody     Phase = "body"     // sending the message bytes
	PhaseDataEnd  Phase = "data_end" // the final "." and its reply
	PhaseReset    Phase = "rset"
	PhaseQuit     Phase = "quit"
)

// Error is what Dial, Send, Reset and Close return: the phase, the remote,
// and the cause. The cause may be an *smtp.SMTPError (a 554 banner, a 421
// greeting, a 535 to AUTH), a timeout (errors.Is ErrTimeout), ctx's error,
// or one of the sentinels below; use errors.As/Is on the Error itself.
type Error struct {
	Phase Phase
	Host  string
	IP    netip.Addr
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("delivery %s[%s]: %s: %v", e.Host, e.IP, e.Phase, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

var (
	// ErrTimeout: a deadline of Timeouts passed while waiting for the
	// remote; the message says which phase and which limit.
	ErrTimeout = errors.New("timeout")
	// ErrTLSFailed: the STARTTLS exchange or the TLS handshake failed (not
	// a certificate that does not verify: that is recorded, not fatal).
	// Dial already retried in plaintext unless RequireTLS was set; a caller
	// remembers the host+ip (Conn.TLSFallback) to skip TLS for a while.
	ErrTLSFailed = errors.New("TLS negotiation failed")
	// ErrTLSRequired: RequireTLS is set and the server does not offer
	// STARTTLS, or refused it.
	ErrTLSRequired = errors.New("TLS required but not available")
	// ErrCertificate: VerifyTLS is set and the certificate does not verify
	// against the host name.
	ErrCertificate = errors.New("certificate does not verify")
	// ErrAuthUnavailable: credentials are configured but the session is
	// not encrypted or the server does not offer AUTH PLAIN. Credentials
	// are never sent in plaintext.
	ErrAuthUnavailable = errors.New("AUTH PLAIN not available")
	// ErrUnusable: the Conn was closed, broke, or got a 421 earlier.
	ErrUnusable = errors.New("connection not usable")
)

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

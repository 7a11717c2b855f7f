package delivery

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// Protection names what protected a session against an active attacker:
// the tls= value of the log, the queue's and the metrics' (issue 15 §4).
const (
	ProtNone          = "none"          // plaintext
	ProtOpportunistic = "opportunistic" // TLS, not required (RFC 7435)
	ProtEncrypt       = "encrypt"       // TLS required, not authenticated (routes tls: encrypt; unusable TLSA)
	ProtVerify        = "verify"        // TLS required, certificate valid for the host (routes tls: verify)
	ProtMTASTS        = "mta-sts"       // an enforced MTA-STS policy (RFC 8461)
	ProtDANE          = "dane"          // DANE TLSA authentication (RFC 7672)
)

// Security is the TLS an MX connection must reach, decided per host by
// relay/tlspolicy from MTA-STS, DANE and the routes' tls pins. A nil
// Security in Options leaves the legacy flags (NoTLS, RequireTLS,
// VerifyTLS) in charge, as the relayhost path uses them.
type Security struct {
	// Mode is one of the Prot constants: ProtNone never tries STARTTLS;
	// ProtOpportunistic (or "") tries it; ProtEncrypt requires it;
	// ProtVerify and ProtMTASTS also require a certificate valid for the
	// host name under RootCAs; ProtDANE requires VerifyPeer to accept it.
	Mode string
	// VerifyPeer authenticates the server's chain (leaf first) instead of
	// the PKIX check: DANE TLSA matching. Required with ProtDANE.
	VerifyPeer func(chain []*x509.Certificate) error
	// Testing is set under an MTA-STS policy in testing mode (with Mode
	// opportunistic): the session goes on as usual, and Conn.Report says
	// what enforce would have refused. TestingNote is a refusal known
	// before connecting (the host matches no mx pattern).
	Testing     bool
	TestingNote string
}

// apply sets the legacy flags from s; it is called by normalize.
func (s *Security) apply(o *Options) error {
	// The policy is authoritative for the MX path: flags inherited from
	// the base options do not mix with it.
	o.NoTLS, o.RequireTLS, o.VerifyTLS = false, false, false
	switch s.Mode {
	case ProtNone:
		o.NoTLS = true
	case "", ProtOpportunistic:
	case ProtEncrypt:
		o.RequireTLS = true
	case ProtVerify, ProtMTASTS:
		o.RequireTLS, o.VerifyTLS = true, true
	case ProtDANE:
		if s.VerifyPeer == nil {
			return errors.New("delivery: Security mode dane needs VerifyPeer")
		}
		o.RequireTLS, o.VerifyTLS = true, true
	default:
		return fmt.Errorf("delivery: Security mode %q unknown", s.Mode)
	}
	if s.Testing && s.Mode != "" && s.Mode != ProtOpportunistic {
		return errors.New("delivery: Security.Testing goes with the opportunistic mode only")
	}
	return nil
}

// Protection says what protected this session: ProtNone in plaintext, the
// required mode when Options.Security required one (else ProtVerify or
// ProtEncrypt from the RequireTLS, VerifyTLS and ImplicitTLS flags),
// ProtOpportunistic for TLS that was merely tried.
func (c *Conn) Protection() string {
	if c.tls == nil {
		return ProtNone
	}
	if s := c.opts.Security; s != nil && s.Mode != "" && s.Mode != ProtNone {
		return s.Mode
	}
	// Without a Security (the relayhost path) the flags say it.
	switch {
	case c.opts.RequireTLS && c.opts.VerifyTLS:
		return ProtVerify
	case c.opts.RequireTLS || c.opts.ImplicitTLS:
		return ProtEncrypt
	}
	return ProtOpportunistic
}

// Report is what an MTA-STS policy in testing mode would have refused about
// this session ("" when nothing, or when not testing): the note known
// before connecting, no TLS, or a certificate that does not verify.
func (c *Conn) Report() string {
	s := c.opts.Security
	if s == nil || !s.Testing {
		return ""
	}
	var why []string
	if s.TestingNote != "" {
		why = append(why, s.TestingNote)
	}
	switch {
	case c.tls == nil && c.tlsFallback != nil:
		why = append(why, "no TLS: "+c.tlsFallback.Error())
	case c.tls == nil:
		why = append(why, "STARTTLS not offered")
	case !c.tls.Verified:
		why = append(why, "certificate not valid for "+c.host+": "+c.tls.VerifyError)
	}
	if len(why) == 0 {
		return ""
	}
	return "mta-sts testing: enforce would refuse: " + strings.Join(why, "; ")
}

// PolicyFailure reports whether err, from Dial with a required Security
// mode, is the TLS policy refusing the session (no STARTTLS, a failed
// handshake, a certificate that does not verify or match): the caller
// defers with 4.7.5 rather than as a connection failure, and never retries
// in plaintext.
func PolicyFailure(err error) bool {
	return errors.Is(err, ErrTLSRequired) || errors.Is(err, ErrCertificate) || errors.Is(err, ErrTLSFailed)
}

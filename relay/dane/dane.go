package dane

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Certificate usages and their names (RFC 7218).
const (
	UsageDANETA = 2 // trust anchor: the chain must lead to the matching certificate
	UsageDANEEE = 3 // end entity: the server's own certificate or key
)

// ErrNoMatch: no usable TLSA record matches the certificate chain.
var ErrNoMatch = errors.New("no TLSA record matches the server's certificate")

// Usable returns the records RFC 7672 §3.1 lets an SMTP client use:
// usages DANE-TA(2) and DANE-EE(3), selectors 0 and 1, matching types 0, 1
// and 2. PKIX-TA(0) and PKIX-EE(1) records are unusable for SMTP (§3.1.3).
func Usable(rrs []*dns.TLSA) []*dns.TLSA {
	var out []*dns.TLSA
	for _, r := range rrs {
		if r == nil || (r.Usage != UsageDANETA && r.Usage != UsageDANEEE) || r.Selector > 1 || r.MatchingType > 2 {
			continue
		}
		if _, err := hex.DecodeString(r.Certificate); err != nil || r.Certificate == "" {
			continue // malformed association data can match nothing
		}
		out = append(out, r)
	}
	return out
}

// Verify reports whether chain (the server's certificates, leaf first)
// matches one of records for the server host at time now. It returns nil
// on a match, else an error wrapping ErrNoMatch that says why.
func Verify(records []*dns.TLSA, host string, chain []*x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: no certificate presented", ErrNoMatch)
	}
	usable := Usable(records)
	if len(usable) == 0 {
		return fmt.Errorf("%w: no usable TLSA record", ErrNoMatch)
	}
	leaf := chain[0]
	var taErr error
	for _, r := range usable {
		switch r.Usage {
		case UsageDANEEE:
			// §3.1.1: the name and the dates are not checked, the key is
			// the server's identity.
			if matches(r, leaf) {
				return nil
			}
		case UsageDANETA:
			for _, ta := range chain[1:] {
				if !matches(r, ta) {
					continue
				}
				if err := chainsTo(leaf, chain[1:], ta, host, now); err != nil {
					taErr = err
					continue
				}
				return nil
			}
		}
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	if taErr != nil {
		return fmt.Errorf("%w: trust anchor matched but the chain does not verify: %v (server key SHA-256 %x)", ErrNoMatch, taErr, sum)
	}
	return fmt.Errorf("%w (server key SHA-256 %x, %d usable records)", ErrNoMatch, sum, len(usable))
}

// matches compares one record to one certificate; the association data is
// hex, compared without regard to case.
func matches(r *dns.TLSA, cert *x509.Certificate) bool {
	c := *r
	c.Certificate = strings.ToLower(r.Certificate)
	return c.Verify(cert) == nil
}

// chainsTo checks that leaf chains to the trust anchor ta through the
// presented intermediates, is valid at now, and names host (RFC 7672
// §3.2.2: the reference identifier is the MX host name).
func chainsTo(leaf *x509.Certificate, presented []*x509.Certificate, ta *x509.Certificate, host string, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(ta)
	inter := x509.NewCertPool()
	for _, c := range presented {
		if c != ta {
			inter.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		DNSName:       strings.TrimSuffix(host, "."),
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

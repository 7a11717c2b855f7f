package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"

	"facteur/safeio"
)

// DefaultRSABits is the size Keygen uses when bits is 0 (RFC 8301 §3.2).
const DefaultRSABits = 2048

// Keygen generates a private key and returns it as PKCS#8 PEM, with the
// value of the DNS TXT record that publishes its public half
// ("v=DKIM1; k=rsa; p=..."). algorithm is "rsa" (the default when empty)
// or "ed25519"; bits is the RSA size, 0 meaning DefaultRSABits, and must be
// 0 for ed25519.
func Keygen(algorithm string, bits int) (pemBytes []byte, dnsValue string, err error) {
	var priv crypto.Signer
	switch strings.ToLower(algorithm) {
	case "", AlgorithmRSA:
		if bits == 0 {
			bits = DefaultRSABits
		}
		// New keys get no 1024-bit leniency: that exists only for keys
		// already published.
		if bits < recommendedRSABits || bits > maxRSABits {
			return nil, "", fmt.Errorf("dkim keygen: %d-bit RSA: want %d to %d bits", bits, recommendedRSABits, maxRSABits)
		}
		priv, err = rsa.GenerateKey(rand.Reader, bits)
	case AlgorithmEd25519:
		if bits != 0 {
			return nil, "", fmt.Errorf("dkim keygen: bits (%d) applies to rsa keys only", bits)
		}
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, "", fmt.Errorf("dkim keygen: unknown algorithm %q: want %q or %q", algorithm, AlgorithmRSA, AlgorithmEd25519)
	}
	if err != nil {
		return nil, "", fmt.Errorf("dkim keygen: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, "", fmt.Errorf("dkim keygen: %w", err)
	}
	value, err := publicValue(priv.Public())
	if err != nil {
		return nil, "", fmt.Errorf("dkim keygen: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), value, nil
}

// publicValue is the DKIM key record (RFC 6376 §3.6.1) for pub. RSA keys are
// published as SubjectPublicKeyInfo DER, Ed25519 keys as the bare 32-byte
// key (RFC 8463 §4.2).
func publicValue(pub crypto.PublicKey) (string, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(p)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(p), nil
	default:
		return "", fmt.Errorf("unsupported public key %T", pub)
	}
}

// txtStringMax is the longest character-string a TXT record holds
// (RFC 1035 §3.3); longer values are split, and verifiers concatenate them
// (RFC 6376 §3.6.2.2).
const txtStringMax = 255

// txtEscaper escapes what would end a zone-file character-string.
var txtEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// TXTRecord returns the zone-file line publishing value for selector and
// domain: `selector._domainkey.domain. IN TXT "..." "..."`, the value split
// into strings of at most 255 bytes. An internationalised domain is written
// in A-labels, as DNS serves it.
func TXTRecord(selector, domain, value string) string {
	if d, err := normalizeDomain(domain); err == nil {
		domain = d
	}
	var b strings.Builder
	b.WriteString(selector)
	b.WriteString("._domainkey.")
	b.WriteString(strings.TrimSuffix(domain, "."))
	b.WriteString(". IN TXT")
	if value == "" {
		b.WriteString(` ""`)
	}
	for len(value) > 0 {
		n := min(len(value), txtStringMax)
		b.WriteString(` "`)
		// Key records hold no quote or backslash; escape them anyway so
		// that a line never breaks the zone file (RFC 1035 §5.1).
		b.WriteString(txtEscaper.Replace(value[:n]))
		b.WriteString(`"`)
		value = value[n:]
	}
	return b.String()
}

// WriteKey creates path with mode 0600 and writes pemBytes to it durably
// and whole (facteur/safeio: a temporary file, fsynced, linked to path, the
// directory fsynced). It refuses to overwrite an
// existing file, which may be a key already published in DNS; the error
// then wraps fs.ErrExist.
func WriteKey(path string, pemBytes []byte) error {
	if err := safeio.WriteFile(path, pemBytes, 0o600, safeio.NoReplace); err != nil {
		return fmt.Errorf("dkim write key: %w", err)
	}
	return nil
}

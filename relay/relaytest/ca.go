package relaytest

// A test certificate authority: MX hosts and the MTA-STS policy host get
// certificates from it, and the relay trusts it through a root pool or a PEM
// file given as SSL_CERT_FILE, as production trusts the system's roots.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// CA is a throwaway certificate authority.
type CA struct {
	t    testing.TB
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA valid from an hour ago for a day.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("relaytest: CA key: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "facteur relaytest CA", Organization: []string{"facteur relaytest"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("relaytest: CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("relaytest: CA certificate: %v", err)
	}
	return &CA{t: t, cert: cert, key: key}
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("relaytest: serial: %v", err)
	}
	return n
}

// Cert is the CA's own certificate.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// Pool is a root pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// PEMFile writes the CA certificate under t.TempDir() and returns its path,
// for SSL_CERT_FILE.
func (ca *CA) PEMFile() string {
	ca.t.Helper()
	path := filepath.Join(ca.t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
	if err := os.WriteFile(path, b, 0o644); err != nil {
		ca.t.Fatalf("relaytest: %v", err)
	}
	return path
}

// Issue makes a server certificate for names (host names or IP addresses),
// signed by the CA; the chain includes the CA certificate, as servers
// publishing DANE-TA(2) records must send it (RFC 7671 §5.2.2).
func (ca *CA) Issue(names ...string) tls.Certificate {
	ca.t.Helper()
	return ca.issue(time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), names)
}

// IssueExpired is Issue with a certificate that expired an hour ago.
func (ca *CA) IssueExpired(names ...string) tls.Certificate {
	ca.t.Helper()
	return ca.issue(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour), names)
}

func (ca *CA) issue(notBefore, notAfter time.Time, names []string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatalf("relaytest: key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(ca.t),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatalf("relaytest: certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		ca.t.Fatalf("relaytest: certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

// TLSAFor is the TLSA record of cert with the given parameters (RFC 6698
// §2.1: usage 3 DANE-EE, 2 DANE-TA; selector 0 full certificate, 1 public
// key; matching 0 exact, 1 SHA-256, 2 SHA-512).
func TLSAFor(t testing.TB, usage, selector, matching uint8, cert *x509.Certificate) TLSA {
	t.Helper()
	data, err := dns.CertificateToDANE(selector, matching, cert)
	if err != nil {
		t.Fatalf("relaytest: TLSA: %v", err)
	}
	return TLSA{Usage: usage, Selector: selector, MatchingType: matching, Data: data}
}

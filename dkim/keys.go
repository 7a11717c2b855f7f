package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/net/idna"
)

// KeyConfig is one signing key as written in the `dkim` list of the main
// configuration.
type KeyConfig struct {
	// Domain is the signing domain (d=), matched against the domain of the
	// message's From address.
	Domain string `yaml:"domain"`
	// Selector is the s= tag: the key is published at
	// Selector._domainkey.Domain.
	Selector string `yaml:"selector"`
	// Key is the path of the PEM private key (PKCS#1 "RSA PRIVATE KEY" or
	// PKCS#8 "PRIVATE KEY"), mode 0600 or stricter.
	Key string `yaml:"key"`
	// Algorithm is "rsa" or "ed25519"; empty means whatever the key is. When
	// set, the key must be of that algorithm.
	Algorithm string `yaml:"algorithm"`
	// Headers replaces the default list of signed header fields
	// (DefaultHeaders()). A name ending in "*" matches every field with that
	// prefix. From is always signed, and oversigned, whether listed or not.
	Headers []string `yaml:"headers"`
	// Subdomains makes the key sign for every subdomain of Domain that has
	// no key of its own.
	Subdomains bool `yaml:"subdomains"`
}

// Options tunes every signature of a Signer.
type Options struct {
	// Expiration, when positive, adds an x= tag at least this far after the
	// signature's t=. The relay passes the queue lifetime plus a margin so
	// that the last retry still verifies (issue 6). Zero means no x=.
	Expiration time.Duration
}

// Algorithm names, as written in KeyConfig.Algorithm and in the k= tag of
// the DNS record.
const (
	AlgorithmRSA     = "rsa"
	AlgorithmEd25519 = "ed25519"
)

// RSA sizes. RFC 8301 §3.2: verifiers must accept 1024 to 4096 bits and
// signers should use at least 2048; 1024 is still accepted with a warning
// because some DNS hosting cannot publish longer TXT records.
const (
	minRSABits         = 1024
	recommendedRSABits = 2048
	maxRSABits         = 8192
)

// maxKeyFileSize bounds what New reads from a key path: an 8192-bit RSA PEM
// is under 7 KiB, so anything much larger is not a key.
const maxKeyFileSize = 64 << 10

// Reasons a key is refused. New wraps them in a *KeyError naming the file.
var (
	// ErrInvalidConfig: a KeyConfig field is missing or malformed.
	ErrInvalidConfig = errors.New("invalid DKIM key configuration")
	// ErrUnreadable: the key file cannot be opened or read.
	ErrUnreadable = errors.New("key file unreadable")
	// ErrMalformed: the file is not an unencrypted PEM private key.
	ErrMalformed = errors.New("key file malformed")
	// ErrWeakKey: an RSA key shorter than 1024 bits.
	ErrWeakKey = errors.New("key too weak")
	// ErrPermissions: the file is accessible to its group or to others.
	ErrPermissions = errors.New("key file is group or world accessible")
	// ErrAlgorithm: the key is not of the configured algorithm, or of no
	// algorithm DKIM signs with.
	ErrAlgorithm = errors.New("key algorithm mismatch")
)

// KeyError is why one configured key was refused.
type KeyError struct {
	Path     string // the key file, as configured
	Domain   string
	Selector string
	Err      error // wraps one of the Err* reasons
}

// Error is one line even when the key has several problems, so that each
// line of New's joined error is one key.
func (e *KeyError) Error() string {
	reason := e.Err.Error()
	if j, ok := e.Err.(interface{ Unwrap() []error }); ok {
		var rs []string
		for _, err := range j.Unwrap() {
			rs = append(rs, err.Error())
		}
		reason = strings.Join(rs, "; ")
	}
	return fmt.Sprintf("dkim key %s (domain %q, selector %q): %s", e.Path, e.Domain, e.Selector, reason)
}

func (e *KeyError) Unwrap() error { return e.Err }

// key is one loaded signing key.
type key struct {
	domain     string // A-label, lower case, no trailing dot
	selector   string
	algorithm  string // AlgorithmRSA or AlgorithmEd25519
	signer     crypto.Signer
	headers    []string // signed header names; From handled apart
	subdomains bool
	path       string
}

// loadKey checks one KeyConfig and reads its key. It returns the problems of
// the configuration and of the file together, so that one run of
// `facteur serve` shows everything to fix.
func loadKey(kc KeyConfig) (*key, []string, error) {
	var errs []error
	k := &key{
		selector:   strings.TrimSpace(kc.Selector),
		algorithm:  strings.ToLower(strings.TrimSpace(kc.Algorithm)),
		subdomains: kc.Subdomains,
		path:       kc.Key,
	}
	d, err := normalizeDomain(kc.Domain)
	if err != nil {
		errs = append(errs, fmt.Errorf("%w: domain: %v", ErrInvalidConfig, err))
	}
	k.domain = d
	if err := checkSelector(k.selector); err != nil {
		errs = append(errs, fmt.Errorf("%w: selector: %v", ErrInvalidConfig, err))
	}
	switch k.algorithm {
	case "", AlgorithmRSA, AlgorithmEd25519:
	default:
		errs = append(errs, fmt.Errorf("%w: algorithm %q: want %q or %q", ErrInvalidConfig, kc.Algorithm, AlgorithmRSA, AlgorithmEd25519))
	}
	headers, err := checkHeaders(kc.Headers)
	if err != nil {
		errs = append(errs, err)
	}
	k.headers = headers

	var warnings []string
	if kc.Key == "" {
		errs = append(errs, fmt.Errorf("%w: key: no file given", ErrInvalidConfig))
	} else {
		signer, algo, bits, err := readKey(kc.Key, true)
		switch {
		case err != nil:
			errs = append(errs, err)
		case k.algorithm != "" && k.algorithm != algo:
			errs = append(errs, fmt.Errorf("%w: configured %q, the file holds an %s key", ErrAlgorithm, k.algorithm, algo))
		case algo == AlgorithmRSA && bits < minRSABits:
			errs = append(errs, fmt.Errorf("%w: RSA key of %d bits, at least %d required (RFC 8301)", ErrWeakKey, bits, minRSABits))
		default:
			if algo == AlgorithmRSA && bits < recommendedRSABits {
				warnings = append(warnings, fmt.Sprintf("dkim key %s (domain %q, selector %q): RSA key of %d bits, %d or more recommended (RFC 8301)",
					kc.Key, kc.Domain, kc.Selector, bits, recommendedRSABits))
			}
			k.signer, k.algorithm = signer, algo
		}
	}
	if len(errs) > 0 {
		return nil, nil, &KeyError{Path: kc.Key, Domain: kc.Domain, Selector: kc.Selector, Err: errors.Join(errs...)}
	}
	return k, warnings, nil
}

// PublicKey reads the private key at path as New does (PEM, PKCS#8 or
// PKCS#1, unencrypted, RSA or Ed25519) and returns its public half, its
// algorithm (AlgorithmRSA or AlgorithmEd25519) and the DNS record value
// that publishes it, as Keygen writes it. Unlike New it does not refuse a
// key others can read: `facteur doctor` compares keys, it does not sign.
// The error wraps ErrUnreadable, ErrMalformed or ErrAlgorithm.
func PublicKey(path string) (pub crypto.PublicKey, algorithm, dnsValue string, err error) {
	signer, algorithm, _, err := readKey(path, false)
	if err != nil {
		return nil, "", "", fmt.Errorf("%s: %w", path, err)
	}
	pub = signer.Public()
	if dnsValue, err = publicValue(pub); err != nil {
		return nil, "", "", fmt.Errorf("%s: %w", path, err)
	}
	return pub, algorithm, dnsValue, nil
}

// readKey opens path, checks its mode when checkMode, and parses the
// private key in it. It returns the key's algorithm and, for RSA, its size
// in bits.
func readKey(path string, checkMode bool) (crypto.Signer, string, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", 0, fmt.Errorf("%w: %v", ErrUnreadable, err)
	}
	defer f.Close()
	// Stat the open file, not the path, so that the mode checked is the
	// mode of the bytes read.
	fi, err := f.Stat()
	if err != nil {
		return nil, "", 0, fmt.Errorf("%w: %v", ErrUnreadable, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, "", 0, fmt.Errorf("%w: not a regular file (%s)", ErrUnreadable, fi.Mode().Type())
	}
	// A signing key others can read lets them sign as the domain.
	if perm := fi.Mode().Perm(); checkMode && perm&0o077 != 0 {
		return nil, "", 0, fmt.Errorf("%w: mode %04o, run chmod 600 %s", ErrPermissions, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, "", 0, fmt.Errorf("%w: %v", ErrUnreadable, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, "", 0, fmt.Errorf("%w: larger than %d bytes, not a key", ErrMalformed, maxKeyFileSize)
	}
	return parseKey(data)
}

// parseKey parses the first PEM block of data as a private key.
func parseKey(data []byte) (crypto.Signer, string, int, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, "", 0, fmt.Errorf("%w: no PEM block", ErrMalformed)
	}
	if block.Headers["Proc-Type"] != "" || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, "", 0, fmt.Errorf("%w: the key is encrypted, facteur needs it unencrypted", ErrMalformed)
	}
	var parsed any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, "", 0, fmt.Errorf("%w: PEM block %q is not a private key (want \"PRIVATE KEY\" or \"RSA PRIVATE KEY\")", ErrMalformed, block.Type)
	}
	if err != nil {
		return nil, "", 0, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch pk := parsed.(type) {
	case *rsa.PrivateKey:
		return pk, AlgorithmRSA, pk.N.BitLen(), nil
	case ed25519.PrivateKey:
		return pk, AlgorithmEd25519, 0, nil
	default:
		return nil, "", 0, fmt.Errorf("%w: %T keys cannot sign DKIM (want rsa or ed25519)", ErrAlgorithm, parsed)
	}
}

// normalizeDomain returns d as DNS looks it up: A-labels, lower case, no
// trailing dot.
func normalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(strings.TrimSpace(d), ".")
	if d == "" {
		return "", errors.New("empty")
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("%q: %v", d, err)
	}
	return strings.ToLower(a), nil
}

// checkSelector accepts what RFC 6376 §3.1 allows: dot-separated labels of
// letters, digits and hyphens. Underscores are accepted too, as DNS does.
func checkSelector(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q: empty or over-long label", s)
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q: character %q not allowed", s, c)
			}
		}
	}
	return nil
}

// checkHeaders validates configured header names; nil means the defaults.
func checkHeaders(names []string) ([]string, error) {
	if names == nil {
		return defaultHeaders, nil
	}
	var errs []error
	out := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.TrimSpace(n)
		name := strings.TrimSuffix(n, "*")
		ok := name != ""
		for _, c := range []byte(name) {
			// RFC 5322 §2.2: printable US-ASCII except colon.
			if c < 33 || c > 126 || c == ':' || c == '*' {
				ok = false
			}
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%w: headers: %q is not a header field name", ErrInvalidConfig, n))
			continue
		}
		if strings.EqualFold(name, "DKIM-Signature") {
			errs = append(errs, fmt.Errorf("%w: headers: DKIM-Signature cannot be signed", ErrInvalidConfig))
			continue
		}
		out = append(out, n)
	}
	return out, errors.Join(errs...)
}

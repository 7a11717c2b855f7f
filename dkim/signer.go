package dkim

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// defaultHeaders are the header fields signed when a key has no `headers`:
// those RFC 6376 §5.4.1 recommends that a web application sets, plus the
// MIME fields that decide how the body is read, and the List-* fields
// (RFC 2369, RFC 8058 one-click unsubscribe) that Gmail and Yahoo require
// bulk senders to sign. From is always signed in addition.
var defaultHeaders = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "List-*",
}

// DefaultHeaders returns the header fields signed when a key has no
// `headers` (a copy: the list is shared by every key).
func DefaultHeaders() []string { return slices.Clone(defaultHeaders) }

// expirationSlack is added to Options.Expiration: go-msgauth stamps t= from
// its own clock after Sign computed x=, so x-t would otherwise fall short by
// the time the signing takes and by the rounding to whole seconds.
const expirationSlack = time.Minute

// Signer signs messages with the keys given to New. It is immutable and
// safe for concurrent use. A nil *Signer signs nothing.
type Signer struct {
	byDomain   map[string][]*key // in configuration order
	expiration time.Duration
}

// Result says what Sign did, for the relay's log.
type Result struct {
	// Domain is the d= of the signatures; when the message is unsigned
	// because no key matches, it is the From domain that had none.
	Domain string
	// Selectors are the s= of the signatures, in header order.
	Selectors []string
	// Unsigned is why the message was not signed; empty when it was.
	Unsigned string
}

// New loads and checks every key. It returns all the refused keys at once
// (errors.Join of *KeyError), and warnings for keys that are accepted but
// weak (RSA under 2048 bits).
func New(keys []KeyConfig, opts Options) (*Signer, []string, error) {
	if opts.Expiration < 0 {
		return nil, nil, fmt.Errorf("%w: negative expiration %v", ErrInvalidConfig, opts.Expiration)
	}
	s := &Signer{byDomain: make(map[string][]*key), expiration: opts.Expiration}
	var errs []error
	var warnings []string
	seen := make(map[string]int) // domain/selector → index in keys
	for i, kc := range keys {
		k, w, err := loadKey(kc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		warnings = append(warnings, w...)
		// Two keys under one DNS name cannot both verify.
		id := k.domain + "/" + strings.ToLower(k.selector)
		if j, dup := seen[id]; dup {
			errs = append(errs, &KeyError{Path: kc.Key, Domain: kc.Domain, Selector: kc.Selector,
				Err: fmt.Errorf("%w: same domain and selector as dkim[%d]", ErrInvalidConfig, j)})
			continue
		}
		seen[id] = i
		s.byDomain[k.domain] = append(s.byDomain[k.domain], k)
	}
	if len(errs) > 0 {
		return nil, warnings, errors.Join(errs...)
	}
	return s, warnings, nil
}

// Sign signs msg with every key of the domain of its From address: the
// exact domain, or else the nearest parent domain whose keys have
// Subdomains set. now is the acceptance time, the base of x=.
//
// signed is the message to queue: the DKIM-Signature fields followed by msg,
// whose lines are left as they are (bare LF becomes CRLF, and a message
// without a header/body separator gets one). When res.Unsigned is set,
// signed is msg unchanged. err is set only when a key fails to sign, which
// is not the message's fault.
func (s *Signer) Sign(msg []byte, now time.Time) (signed []byte, res Result, err error) {
	if s == nil || len(s.byDomain) == 0 {
		return msg, Result{Unsigned: "no DKIM keys configured"}, nil
	}
	m := wireForm(msg)
	fields, err := readHeader(m)
	if err != nil {
		return msg, Result{Unsigned: "malformed header: " + err.Error()}, nil
	}
	from, reason := fromDomain(fields)
	if reason != "" {
		return msg, Result{Unsigned: reason}, nil
	}
	domain, keys := s.keysFor(from)
	if len(keys) == 0 {
		return msg, Result{Domain: from, Unsigned: "no key for " + from}, nil
	}

	var expiration time.Time
	if s.expiration > 0 {
		// go-msgauth takes t= from the wall clock; base x= on the later of
		// the two so that an injected now in the past cannot make x-t short.
		base := now
		if wall := time.Now(); wall.After(base) {
			base = wall
		}
		expiration = base.Add(s.expiration + expirationSlack)
	}

	res = Result{Domain: domain}
	var sigs bytes.Buffer
	for _, k := range keys {
		sig, err := k.sign(m, signedHeaders(k.headers, fields), expiration)
		if err != nil {
			return msg, Result{Domain: domain, Unsigned: "signing failed"},
				fmt.Errorf("dkim sign for %s with %s (selector %s): %w", domain, k.path, k.selector, err)
		}
		sigs.WriteString(sig)
		res.Selectors = append(res.Selectors, k.selector)
	}
	out := make([]byte, 0, sigs.Len()+len(m))
	out = append(out, sigs.Bytes()...)
	return append(out, m...), res, nil
}

// keysFor returns the signing domain and its keys for the From domain d.
func (s *Signer) keysFor(d string) (string, []*key) {
	if ks := s.byDomain[d]; len(ks) > 0 {
		return d, ks
	}
	for p := parentDomain(d); p != ""; p = parentDomain(p) {
		var ks []*key
		for _, k := range s.byDomain[p] {
			if k.subdomains {
				ks = append(ks, k)
			}
		}
		if len(ks) > 0 {
			return p, ks
		}
	}
	return "", nil
}

func parentDomain(d string) string {
	_, p, ok := strings.Cut(d, ".")
	if !ok {
		return ""
	}
	return p
}

// sign returns the DKIM-Signature field, with its final CRLF, for m.
func (k *key) sign(m []byte, headerKeys []string, expiration time.Time) (string, error) {
	signer, err := msgauth.NewSigner(&msgauth.SignOptions{
		Domain:   k.domain,
		Selector: k.selector,
		Signer:   k.signer,
		// go-msgauth defaults to simple/simple, which breaks as soon as a
		// relay re-folds a header or strips trailing spaces (issue 6).
		HeaderCanonicalization: msgauth.CanonicalizationRelaxed,
		BodyCanonicalization:   msgauth.CanonicalizationRelaxed,
		HeaderKeys:             headerKeys,
		Expiration:             expiration,
	})
	if err != nil {
		return "", err
	}
	if _, err := signer.Write(m); err != nil {
		signer.Close()
		return "", err
	}
	if err := signer.Close(); err != nil {
		return "", err
	}
	return signer.Signature(), nil
}

// signedHeaders builds the h= list for a message whose header field names
// are fields, in order. A field present n times is listed n times so that
// every instance is signed (go-msgauth picks instances bottom-up, RFC 6376
// §5.4.2); From is listed once more than present, so that a From added
// later, above or below, makes the signature fail (RFC 6376 §8.15).
func signedHeaders(names []string, fields []field) []string {
	count := make(map[string]int, len(fields))
	for _, f := range fields {
		count[strings.ToLower(f.name)]++
	}
	out := make([]string, 0, len(fields)+2)
	for range count["from"] + 1 {
		out = append(out, "From")
	}
	done := map[string]bool{"from": true}
	add := func(name string) {
		l := strings.ToLower(name)
		if done[l] {
			return
		}
		done[l] = true
		for range count[l] {
			out = append(out, name)
		}
	}
	for _, n := range names {
		prefix, wildcard := strings.CutSuffix(n, "*")
		if !wildcard {
			add(n)
			continue
		}
		prefix = strings.ToLower(prefix)
		for _, f := range fields {
			if strings.HasPrefix(strings.ToLower(f.name), prefix) {
				add(f.name)
			}
		}
	}
	return out
}

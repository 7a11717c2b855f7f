package doctor

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"facteur/dkim"
	"facteur/relay/config"
	"facteur/relay/resolver"
)

// checkDKIM compares, for each key that signs the domain's mail, the public
// key published at SELECTOR._domainkey.DOMAIN with the configured private
// key: a rotated key that was never published makes every signature fail.
func checkDKIM(ctx context.Context, dns DNS, o Options) []Finding {
	signing, keys := dkimKeysFor(o.Domain, o.DKIM)
	if len(keys) == 0 {
		return []Finding{{
			Check:  CheckDKIM,
			Status: Warn,
			Detail: fmt.Sprintf("no DKIM key is configured for %s: its mail goes out unsigned. Gmail and Yahoo require DKIM from bulk senders, and DKIM is what keeps DMARC passing when mail is forwarded (forwarding breaks SPF).", o.Domain),
			Fix:    fmt.Sprintf("facteur dkim keygen -domain %s -selector facteur -out /etc/facteur/dkim/%s.key, add the key to the config's dkim list, and publish the record it prints", o.Domain, o.Domain),
		}}
	}
	out := make([]Finding, 0, len(keys))
	for _, k := range keys {
		out = append(out, checkDKIMKey(ctx, dns, signing, k))
	}
	return out
}

// dkimKeysFor picks the keys that sign mail from domain, as dkim.Signer
// does: the domain's own keys, else those of the nearest parent with
// subdomains: true. signing is the d= domain.
func dkimKeysFor(domain string, all []config.DKIMKey) (signing string, keys []config.DKIMKey) {
	norm := func(d string) string { return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), ".")) }
	for d := domain; d != ""; {
		for _, k := range all {
			if norm(k.Domain) == d && (d == domain || k.Subdomains) {
				keys = append(keys, k)
			}
		}
		if len(keys) > 0 {
			return d, keys
		}
		_, d, _ = strings.Cut(d, ".")
	}
	return "", nil
}

func checkDKIMKey(ctx context.Context, dns DNS, domain string, k config.DKIMKey) Finding {
	f := Finding{Check: CheckDKIM}
	owner := k.Selector + "._domainkey." + domain
	pub, algorithm, value, err := dkim.PublicKey(k.Key)
	if err != nil {
		f.Status = Warn
		f.Detail = fmt.Sprintf("cannot compare %s with the configured key: %v", owner, err)
		f.Fix = "run facteur doctor as a user that can read the key (the daemon's user or root)"
		return f
	}
	if k.Algorithm != "" && !strings.EqualFold(k.Algorithm, algorithm) {
		f.Status = Fail
		f.Detail = fmt.Sprintf("%s: the config says algorithm %s, the file holds an %s key; the daemon refuses it.", k.Key, k.Algorithm, algorithm)
		f.Fix = "correct dkim.algorithm in the config"
		return f
	}
	publish := dkim.TXTRecord(k.Selector, domain, value)
	txts, err := dns.LookupTXT(ctx, owner)
	switch {
	case errors.Is(err, resolver.ErrNXDomain), err == nil && len(txts) == 0:
		f.Status = Fail
		f.Detail = fmt.Sprintf("no DKIM key is published at %s: every message signed with selector %q fails verification, as if unsigned.", owner, k.Selector)
		f.Fix = publish
		return f
	case err != nil:
		f.Status = Warn
		f.Detail = fmt.Sprintf("could not read %s: %v", owner, err)
		return f
	}
	if len(txts) > 1 {
		f.Status = Fail
		f.Detail = fmt.Sprintf("%s has %d TXT records; verifiers pick one at random (RFC 6376 §3.6.2.2), so some signatures fail.", owner, len(txts))
		f.Fix = "keep only " + publish
		return f
	}
	tags := dkimTags(txts[0])
	p, hasP := tags["p"]
	switch {
	case tags["v"] != "" && tags["v"] != "DKIM1":
		f.Status, f.Detail = Fail, fmt.Sprintf("%s: v=%s, verifiers want v=DKIM1 or no v= (RFC 6376 §3.6.1).", owner, tags["v"])
	case !hasP:
		f.Status, f.Detail = Fail, fmt.Sprintf("%s is not a DKIM key record (no p= tag): %q", owner, txts[0])
	case p == "":
		f.Status, f.Detail = Fail, fmt.Sprintf("%s has an empty p=: the key is revoked (RFC 6376 §3.6.1), yet the relay still signs with it.", owner)
	case !strings.EqualFold(cmp.Or(tags["k"], "rsa"), algorithm):
		f.Status, f.Detail = Fail, fmt.Sprintf("%s publishes a k=%s key, the configured key is %s.", owner, cmp.Or(tags["k"], "rsa"), algorithm)
	case !samePublicKey(pub, p):
		f.Status, f.Detail = Fail, fmt.Sprintf("the key published at %s is not the public half of %s: every signature fails. The key was probably regenerated without publishing the new record.", owner, k.Key)
	default:
		f.Status = OK
		f.Detail = fmt.Sprintf("%s publishes the public half of %s (%s).", owner, k.Key, algorithm)
		if strings.Contains(tags["t"], "y") {
			f.Status = Warn
			f.Detail += " It carries t=y (testing): some verifiers ignore failures, others ignore the signature."
			f.Fix = publish
		}
		return f
	}
	f.Fix = publish
	return f
}

// dkimTags parses a tag=value list (RFC 6376 §3.2); white space inside
// values (folded base64) is removed.
func dkimTags(s string) map[string]string {
	tags := make(map[string]string)
	for part := range strings.SplitSeq(s, ";") {
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		value = strings.Join(strings.Fields(value), "")
		tags[strings.TrimSpace(name)] = value
	}
	return tags
}

// samePublicKey compares the published p= with pub. An RSA key may be
// published as SubjectPublicKeyInfo (RFC 6376 §3.6.1) or, as some tools
// do and verifiers accept, as a bare PKCS#1 RSAPublicKey.
func samePublicKey(pub crypto.PublicKey, p string) bool {
	raw, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return false
	}
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		return bytes.Equal(raw, pub)
	case *rsa.PublicKey:
		if got, err := x509.ParsePKIXPublicKey(raw); err == nil {
			r, ok := got.(*rsa.PublicKey)
			return ok && r.Equal(pub)
		}
		if got, err := x509.ParsePKCS1PublicKey(raw); err == nil {
			return got.Equal(pub)
		}
	}
	return false
}

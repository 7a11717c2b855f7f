package bounce

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// macLen is the truncated HMAC-SHA256 length in a VERP token: 80 bits, so a
// forger needs about 2^79 tries per address to suppress it, while the token
// stays short enough for a local part.
const macLen = 10

// ErrBadToken is returned (wrapped) for a VERP token that does not decode or
// whose MAC does not verify.
var ErrBadToken = errors.New("bounce: bad VERP token")

// b32 is lower-case-safe base32 without padding: local parts are often
// case-folded on the way back, and "=" is best avoided in them.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// VERPAddress returns the return path local+token@domain.
func VERPAddress(local, domain, token string) string {
	return local + "+" + token + "@" + domain
}

// EncodeToken packs a queue ID and a recipient into a token safe in a local
// part (lower-case base32) and authenticated with a truncated HMAC-SHA256
// under secret, so that a forged bounce cannot name an arbitrary address.
func EncodeToken(id, rcpt string, secret []byte) string {
	payload := make([]byte, 0, len(id)+1+len(rcpt)+macLen)
	payload = append(payload, id...)
	payload = append(payload, 0)
	payload = append(payload, rcpt...)
	payload = append(payload, mac(payload, secret)...)
	return strings.ToLower(b32.EncodeToString(payload))
}

// DecodeToken checks and unpacks a token made by EncodeToken.
func DecodeToken(tok string, secret []byte) (id, rcpt string, err error) {
	raw, err := b32.DecodeString(strings.ToUpper(strings.TrimSpace(tok)))
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if len(raw) < macLen+1 {
		return "", "", fmt.Errorf("%w: too short", ErrBadToken)
	}
	payload, sum := raw[:len(raw)-macLen], raw[len(raw)-macLen:]
	if !hmac.Equal(sum, mac(payload, secret)) {
		return "", "", fmt.Errorf("%w: MAC mismatch", ErrBadToken)
	}
	i := bytes.IndexByte(payload, 0)
	if i < 0 {
		return "", "", fmt.Errorf("%w: no separator", ErrBadToken)
	}
	return string(payload[:i]), string(payload[i+1:]), nil
}

func mac(payload, secret []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(payload)
	return h.Sum(nil)[:macLen]
}

// ApplyVERP looks for a local+TOKEN@domain address among the addresses the
// bounce was delivered to (rep.EnvelopeTo) and, if one carries a token that
// verifies under secret, records the queue ID and recipient it names. When
// the bounce itself named no recipient, the token's recipient becomes one,
// failed with the bounce's reason unknown (status 5.0.0): a VERP bounce
// identifies the recipient even when the bounce text names nobody. It
// reports whether a valid token was found.
func (rep *Report) ApplyVERP(secret []byte) bool {
	for _, a := range rep.EnvelopeTo {
		local, _, ok := strings.Cut(a, "@")
		if !ok {
			continue
		}
		_, tok, ok := strings.Cut(local, "+")
		if !ok {
			continue
		}
		id, rcpt, err := DecodeToken(tok, secret)
		if err != nil {
			continue
		}
		rep.QueueID, rep.VERPRecipient = id, rcpt
		if (rep.Kind == KindDSN || rep.Kind == KindNonstandard) && len(rep.Recipients) == 0 {
			r := Recipient{Address: rcpt, Action: Failed}
			finish(&r)
			rep.Recipients = append(rep.Recipients, r)
		}
		return true
	}
	return false
}

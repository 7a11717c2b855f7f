package resolver

import (
	"fmt"
	"strings"

	"golang.org/x/net/idna"

	"facteur/relay/address"
)

// idnaProfile converts U-labels to A-labels (UTS #46 non-transitional, as
// browsers and mail software do since IDNA2008). It does not apply the STD3
// host-name rules: TXT lookups need underscore labels such as
// "_dmarc.example.org"; canonical checks the characters itself.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.StrictDomainName(false),
	idna.BidiRule(),
)

// canonical returns name in the form queries use: A-labels, lower case,
// fully qualified. A trailing dot is accepted. The error wraps
// ErrInvalidName.
func canonical(name string) (string, error) {
	orig := name
	if address.IsASCII(name) {
		name = strings.ToLower(name)
	} else {
		a, err := idnaProfile.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("%w %q: %v", ErrInvalidName, orig, err)
		}
		name = strings.ToLower(a)
	}
	name = strings.TrimSuffix(name, ".")
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("%w %q: %s", ErrInvalidName, orig, err)
	}
	return name + ".", nil
}

// checkName enforces RFC 1035 §2.3.4 lengths and the letters-digits-hyphen
// alphabet, plus "_" for service labels (RFC 8552). name has no trailing dot.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("empty name")
	}
	if len(name) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return fmt.Errorf("empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label longer than 63 characters")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("character %q not allowed", c)
			}
		}
	}
	return nil
}

// display is a canonical name as the package hands it out: no trailing dot.
func display(fqdn string) string { return strings.TrimSuffix(fqdn, ".") }

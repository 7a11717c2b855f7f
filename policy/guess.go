package policy

import (
	"fmt"
	"regexp"
	"strings"
)

// Which provider `facteur classify` judges a reply as: the one named, the
// one a recipient domain is recognised as, or one a host name in the
// reply's text gives away.

// ProviderFor resolves a provider argument: a provider of the policy by
// name, or a recipient domain recognised as the scheduler would (without
// MX hosts, which are not looked up). "" is the default provider.
func (p *Policy) ProviderFor(arg string) (string, error) {
	arg = strings.ToLower(strings.TrimSpace(arg))
	if arg == "" {
		return DefaultProvider, nil
	}
	if _, ok := p.Lookup(arg); ok {
		return arg, nil
	}
	if strings.Contains(arg, ".") {
		return p.Recognize(strings.TrimPrefix(arg, "@"), nil), nil
	}
	names := make([]string, 0, len(p.Providers))
	for _, pr := range p.Providers {
		names = append(names, pr.Name)
	}
	return "", fmt.Errorf("unknown provider %q (known: %s; or give a domain such as yahoo.fr)", arg, strings.Join(names, ", "))
}

// textHostRE finds host names in a reply's text ("... [PR2FRA01FT009.eop-fra01
// .prod.protection.outlook.com]", "https://support.google.com/mail/...").
var textHostRE = regexp.MustCompile(`(?i)\b[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+\b`)

// ProviderInText guesses which provider sent a reply whose text is text,
// from a host name in it that the policy's MX patterns recognise (Gmail's
// "support.google.com", Microsoft's "...prod.protection.outlook.com"), so
// that classify shows what the scheduler would do there; why says which
// host. Provider rules are not used to guess: generic ones (a 421 4.7.0)
// match at several providers and would pick one at random. "" means no
// guess: the default provider.
func (p *Policy) ProviderInText(text string) (name, why string) {
	for _, h := range textHostRE.FindAllString(text, -1) {
		if n := p.Recognize("", []string{h}); n != DefaultProvider {
			return n, "host " + strings.ToLower(h) + " in the text"
		}
	}
	return "", ""
}

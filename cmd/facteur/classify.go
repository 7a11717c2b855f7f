package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"

	"facteur/policy"
)

// facteur classify (issue 7 §1): what the policy would make of one reply.
// It reads the config and the policy only, never the queue database, so it
// works whether the daemon runs or not and changes nothing.

const classifyUsage = `usage: facteur classify [-provider NAME|DOMAIN] [-stage connect|mail|rcpt|data] [--json] 'CODE [X.Y.Z] TEXT'`

func cmdClassify(args []string) int {
	fs, cfgPath := newFlags("classify")
	provider := fs.String("provider", "", "provider the reply came from (a policy provider name, or a recipient domain to recognise); default: the default provider")
	stage := fs.String("stage", "", "the SMTP command the reply answered: connect (greeting, EHLO), mail (MAIL FROM), rcpt (RCPT TO) or data; default: unknown. A reply to MAIL FROM or to the greeting never makes a recipient unknown; a user unknown in reply to DATA is a soft bounce")
	asJSON := fs.Bool("json", false, "print {class, action, rule, suppress, stage, evidence, ...} as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) == 0 {
		fmt.Fprintln(os.Stderr, classifyUsage)
		return 2
	}
	// An unquoted reply arrives as several arguments: join them back.
	text := strings.Join(pos, " ")
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	p, err := loadPolicy(cfg)
	if err != nil {
		return printPolicyErrors(err)
	}
	name, err := providerName(p, *provider)
	if err != nil {
		fmt.Fprintf(os.Stderr, "facteur: %v\n", err)
		return 2
	}
	st, err := policy.ParseStage(*stage)
	if err != nil {
		fmt.Fprintf(os.Stderr, "facteur: -stage: %v\n", err)
		return 2
	}
	reply, err := policy.ParseReply(text)
	if err != nil {
		return fail("%v (want e.g. '550 5.1.1 user unknown')", err)
	}
	reply.Stage = st
	if *provider == "" {
		if n, why := inferProvider(p, reply); n != "" {
			name = n
			fmt.Fprintf(os.Stderr, "facteur: classify: provider %s inferred (%s); give -provider to choose\n", n, why)
		}
	}
	d := p.Classify(name, reply)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(d.JSON()); err != nil {
			return failErr(err)
		}
		return 0
	}
	fmt.Printf("%s evidence=%q\n", d.String(), d.Evidence)
	return 0
}

// providerName resolves -provider: a provider of the policy by name, or a
// recipient domain recognised as the scheduler would (without MX hosts,
// which classify does not look up). "" is the default provider.
func providerName(p *policy.Policy, arg string) (string, error) {
	arg = strings.ToLower(strings.TrimSpace(arg))
	if arg == "" {
		return policy.DefaultProvider, nil
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
	return "", fmt.Errorf("-provider: unknown provider %q (known: %s; or give a domain such as yahoo.fr)", arg, strings.Join(names, ", "))
}

// hostRE finds host names in a reply's text ("... [PR2FRA01FT009.eop-fra01
// .prod.protection.outlook.com]", "https://support.google.com/mail/...").
var hostRE = regexp.MustCompile(`(?i)\b[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+\b`)

// inferProvider guesses, without -provider, which provider sent r from a
// host name in its text that the policy's MX patterns recognise (Gmail's
// "support.google.com", Microsoft's "...prod.protection.outlook.com"), so
// that classify shows what the scheduler would do there. Provider rules are
// not used to guess: generic ones (a 421 4.7.0) match at several providers
// and would pick one at random. "" means no guess: the default provider.
func inferProvider(p *policy.Policy, r policy.Reply) (name, why string) {
	for _, h := range hostRE.FindAllString(r.Text, -1) {
		if n := p.Recognize("", []string{h}); n != policy.DefaultProvider {
			return n, "host " + strings.ToLower(h) + " in the text"
		}
	}
	return "", ""
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"facteur/policy"
	"facteur/relay/daemon"
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
	p, err := daemon.LoadPolicy(cfg)
	if err != nil {
		return printPolicyErrors(err)
	}
	name, err := p.ProviderFor(*provider)
	if err != nil {
		fmt.Fprintf(os.Stderr, "facteur: -provider: %v\n", err)
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
		if n, why := p.ProviderInText(reply.Text); n != "" {
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

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"facteur/policy"
	"facteur/policy/bounce"
	"facteur/relay/admin/client"
	"facteur/relay/bounces"
	"facteur/relay/config"
	"facteur/relay/daemon"
)

// facteur bounce parse / ingest (issue 7 §2); the logic, and the daemon's
// POST /bounces, are relay/bounces'.
// parse reads only the config and the policy and changes nothing; ingest
// applies the decision: every recipient the bounce shows unknown (or that
// complained) is suppressed and its queued mail cancelled. ingest is made to
// be an MTA's pipe alias (`|facteur bounce ingest`): no tty, the config
// from FACTEUR_CONFIG or the default path, and exit statuses an MTA reads.

const bounceUsage = `usage: facteur bounce parse [--json] < MESSAGE    what the bounce says and what would be decided
       facteur bounce ingest [--json] [--trust-untokened] < MESSAGE
                                    the same, then suppress (daemon or database) what a valid
                                    VERP token proves (all of it with --trust-untokened or
                                    bounces.trust_untokened)`

// exTempFail is sysexits' EX_TEMPFAIL: an MTA delivering to a pipe keeps
// the message and retries later. ingest uses it when the bounce was read
// but could not be applied (database locked, daemon error), so that no
// bounce is lost; unreadable input is 1, a permanent failure.
const exTempFail = 75

func cmdBounce(args []string) int {
	if len(args) == 0 || (args[0] != "parse" && args[0] != "ingest") {
		fmt.Fprintln(os.Stderr, bounceUsage)
		return 2
	}
	sub := args[0]
	fs, cfgPath := newFlags("bounce " + sub)
	asJSON := fs.Bool("json", false, "print JSON: {kind, recipients: [{address, status, class, rule, stage, evidence, diagnostic, suppress, soft, ...}], ...}")
	trust := new(bool)
	if sub == "ingest" {
		trust = fs.Bool("trust-untokened", false, "suppress what the report says even without a valid VERP token: for an operator\nwho read the report, never in an MTA's pipe alias (as bounces.trust_untokened)")
	}
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	if len(pos) != 0 {
		fmt.Fprintln(os.Stderr, bounceUsage)
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	raw, err := io.ReadAll(io.LimitReader(os.Stdin, bounce.MaxSize+1))
	if err != nil {
		return fail("bounce %s: read stdin: %v", sub, err)
	}
	p, err := daemon.LoadPolicy(cfg)
	if err != nil {
		if sub == "ingest" {
			printPolicyErrors(err)
			return exTempFail
		}
		return printPolicyErrors(err)
	}
	// Parse locally in both cases: unreadable input fails the same way
	// whether the daemon runs or not.
	secret, err := bounces.Secret(cfg)
	if err != nil {
		// Without the secret the bounce is still read, by its text only.
		fmt.Fprintf(os.Stderr, "facteur: bounce %s: VERP tokens not checked: %v\n", sub, err)
	}
	// Postfix's local(8) and Exim's pipe transport give a pipe command the
	// envelope recipient, where the VERP token is.
	var envTo []string
	for _, v := range []string{"ORIGINAL_RECIPIENT", "RECIPIENT", "LOCAL_PART_SUFFIX_ADDRESS"} {
		if a := os.Getenv(v); strings.Contains(a, "@") {
			envTo = append(envTo, a)
		}
	}
	rep, err := bounces.Decide(raw, p, secret, envTo...)
	if err != nil {
		return fail("bounce %s: %v", sub, err)
	}
	if sub == "parse" {
		return printBounce(rep, nil, *asJSON)
	}
	res, err := ingest(context.Background(), cfg, p, raw, rep, envTo, *trust)
	if err != nil {
		fmt.Fprintf(os.Stderr, "facteur: bounce ingest: %v\n", err)
		return exTempFail
	}
	return printBounce(res.Report, &res, *asJSON)
}

// ingest hands the raw message to the daemon, which parses and applies it
// with the policy it runs; with the daemon down, rep is applied to the
// database directly (bounces.Offline). Either way the inbound listener's
// rule holds (issue 11 §5): the pipe from another MTA takes mail from
// anyone on the Internet just as the listener does, so only the recipient
// a valid VERP token names is suppressed, unless bounces.trust_untokened
// or trust (the operator's --trust-untokened).
//
// envTo (the envelope recipient the MTA gave the pipe) goes to the daemon
// with the message: it is where the VERP token is, and the token's HMAC is
// what proves it, not who passes it.
func ingest(ctx context.Context, cfg *config.Config, p *policy.Policy, raw []byte, rep *bounce.Report, envTo []string, trust bool) (bounces.Result, error) {
	var res bounces.Result
	q := url.Values{}
	if trust {
		q.Set("trust_untokened", "1")
	}
	for _, a := range envTo {
		q.Add("envelope_to", a)
	}
	err := client.New(cfg).Send("POST", "/bounces", q, "message/rfc822", bytes.NewReader(raw), &res)
	if !errors.Is(err, client.ErrDaemonDown) {
		return res, err
	}
	return bounces.Offline(ctx, localSuppressions(cfg), p, rep, trust)
}

// printBounce writes the report (and what ingest applied): JSON, or one
// line for the kind and one per recipient (bounces.WriteText).
func printBounce(rep *bounce.Report, res *bounces.Result, asJSON bool) int {
	if !asJSON {
		bounces.WriteText(os.Stdout, rep, res)
		return 0
	}
	var v any = rep
	if res != nil {
		v = res
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return failErr(err)
	}
	return 0
}

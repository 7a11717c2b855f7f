package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"facteur/policy"
	"facteur/policy/bounce"
	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/config"
	"facteur/relay/maillog"
)

// facteur bounce parse / ingest (issue 7 §2) and the daemon's POST /bounces.
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

// bounceResult answers POST /bounces: the report and what was applied.
type bounceResult struct {
	Report *bounce.Report `json:"report"`
	suppressResult
	// Unverified: the addresses the report would have suppressed but
	// proves nothing about (no valid VERP token names them): logged
	// (`bounce unverified`) and sent as unverified_report, never suppressed.
	Unverified []string `json:"unverified,omitempty"`
}

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
	p, err := loadPolicy(cfg)
	if err != nil {
		if sub == "ingest" {
			printPolicyErrors(err)
			return exTempFail
		}
		return printPolicyErrors(err)
	}
	// Parse locally in both cases: unreadable input fails the same way
	// whether the daemon runs or not.
	secret, err := verpSecret(cfg)
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
	rep, err := decideBounce(raw, p, secret, envTo...)
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

// decideBounce parses raw and decides each recipient with p. envelopeTo
// adds the addresses the bounce was delivered to (the inbound listener's
// RCPTs), and secret, when set, verifies their VERP tokens (issue 7 §2).
func decideBounce(raw []byte, p *policy.Policy, secret []byte, envelopeTo ...string) (*bounce.Report, error) {
	rep, err := bounce.Parse(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	rep.EnvelopeTo = append(rep.EnvelopeTo, envelopeTo...)
	if len(secret) > 0 {
		rep.ApplyVERP(secret)
	}
	bounce.Decide(rep, p)
	return rep, nil
}

// verpSecret reads bounces.secret_file; nil when VERP is off.
func verpSecret(cfg *config.Config) ([]byte, error) {
	if cfg.Bounces.SecretFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(cfg.Bounces.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("bounces.secret_file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < 16 {
		return nil, fmt.Errorf("bounces.secret_file %s: want at least 16 bytes of secret", cfg.Bounces.SecretFile)
	}
	return b, nil
}

// ingest hands the raw message to the daemon, which parses and applies it
// with the policy it runs; with the daemon down, rep is applied to the
// database directly. Either way the inbound listener's rule holds (issue
// 11 §5): the pipe from another MTA takes mail from anyone on the
// Internet just as the listener does, so only the recipient a valid VERP
// token names is suppressed, unless bounces.trust_untokened or trust (the
// operator's --trust-untokened).
//
// envTo (the envelope recipient the MTA gave the pipe) goes to the daemon
// with the message: it is where the VERP token is, and the token's HMAC is
// what proves it, not who passes it.
func ingest(ctx context.Context, cfg *config.Config, p *policy.Policy, raw []byte, rep *bounce.Report, envTo []string, trust bool) (bounceResult, error) {
	var res bounceResult
	q := url.Values{}
	if trust {
		q.Set("trust_untokened", "1")
	}
	for _, a := range envTo {
		q.Add("envelope_to", a)
	}
	err := newAdminClient(cfg).send("POST", "/bounces", q, "message/rfc822", bytes.NewReader(raw), &res)
	if !errors.Is(err, errDaemonDown) {
		return res, err
	}
	res.Report = rep
	now := time.Now()
	trusted, untrusted := trustedRecipients(rep, cfg.Bounces.TrustUntokened || trust)
	res.Unverified = unverified(untrusted) // printed: the daemon's log is not there
	applied := *rep
	applied.Recipients = trusted
	rep = &applied
	sups := bounceSuppressions(rep, time.Duration(cfg.Suppression.HostUnknownTTL), now)
	if len(sups) == 0 && !hasSoft(rep) {
		res.Suppressed = []queue.Suppression{}
		return res, nil
	}
	store, err := openStore(cfg, true)
	if err != nil {
		return res, err
	}
	defer store.Close()
	soft, err := softSuppressions(ctx, store, p, rep, now)
	if err != nil {
		return res, err
	}
	sups = dropOwn(cfg, append(sups, soft...))
	res.suppressResult, err = applySuppressions(ctx, store, sups, false, now, nil, func(addr, why string, now time.Time) (int, error) {
		return offlineCancel(ctx, cfg, store, addr, why, now)
	})
	return res, err
}

// unverified lists the addresses of rs the report would have suppressed
// (or counted as a soft bounce).
func unverified(rs []bounce.Recipient) []string {
	var out []string
	for _, r := range rs {
		if r.Suppress || r.Soft {
			out = append(out, strings.ToLower(strings.TrimSpace(r.Address)))
		}
	}
	return out
}

// bounceSuppressions lists the entries a decided report adds: source fbl
// for a feedback report, dsn otherwise; the reason is the class and the
// response the bounce's diagnostic. A host_unknown entry expires after ttl,
// since domains come back (issue 7 §3).
func bounceSuppressions(rep *bounce.Report, ttl time.Duration, now time.Time) []queue.Suppression {
	src := queue.SourceDSN
	if rep.Kind == bounce.KindARF {
		src = queue.SourceFBL
	}
	seen := map[string]bool{}
	var out []queue.Suppression
	for _, r := range rep.Recipients {
		addr := strings.ToLower(strings.TrimSpace(r.Address))
		if !r.Suppress || seen[addr] || checkImported(queue.Suppression{Address: addr}) != nil {
			continue
		}
		seen[addr] = true
		resp := r.Diagnostic
		if resp == "" && rep.Kind == bounce.KindARF {
			resp = "feedback report: " + rep.FeedbackType
		}
		s := queue.Suppression{Address: addr, Reason: string(r.Class), Response: resp, Source: src, FirstSeen: now, LastSeen: now}
		if r.Class == policy.HostUnknown && ttl > 0 {
			s.Expires = now.Add(ttl)
		}
		out = append(out, s)
	}
	return out
}

// hasSoft reports a recipient whose bounce counts towards the
// repeated-bounce rule.
func hasSoft(rep *bounce.Report) bool {
	for _, r := range rep.Recipients {
		if r.Soft && !r.Suppress {
			return true
		}
	}
	return false
}

// softSuppressions records each soft bounce of rep (a full mailbox, or an
// unknown user on evidence that is not conclusive: issue 12) in the
// recipient's history, and returns the suppressions of those that have now
// bounced so often, over so many days, that the policy's repeated-bounce
// rule (suppression.mailbox_full) holds. The history is the one the
// delivery engine keeps for live replies (state key CLASS/address), so
// that synchronous and asynchronous bounces count together.
func softSuppressions(ctx context.Context, store *queue.Store, p *policy.Policy, rep *bounce.Report, now time.Time) ([]queue.Suppression, error) {
	var out []queue.Suppression
	seen := map[string]bool{}
	for _, r := range rep.Recipients {
		addr := strings.ToLower(strings.TrimSpace(r.Address))
		if !r.Soft || r.Suppress || seen[addr] || checkImported(queue.Suppression{Address: addr}) != nil {
			continue
		}
		seen[addr] = true
		key := string(r.Class) + "/" + addr
		var times []time.Time
		b, err := store.State(ctx, key)
		switch {
		case err == nil:
			_ = json.Unmarshal(b, &times) // a damaged history starts again
		case !errors.Is(err, queue.ErrNotFound):
			return nil, fmt.Errorf("soft bounce history of %s: %w", addr, err)
		}
		if len(times) >= 20 {
			times = times[len(times)-19:] // the rule looks at weeks, not years
		}
		times = append(times, now)
		if b, err = json.Marshal(times); err == nil {
			err = store.PutState(ctx, key, b)
		}
		if err != nil {
			return nil, fmt.Errorf("soft bounce history of %s: %w", addr, err)
		}
		if p.MailboxFullSuppress(times, now) {
			out = append(out, queue.Suppression{Address: addr, Reason: string(r.Class), Response: r.Diagnostic,
				Source: queue.SourceDSN, FirstSeen: now, LastSeen: now})
		}
	}
	return out, nil
}

// printBounce writes the report (and what ingest applied): JSON, or one
// line for the kind and one per recipient.
func printBounce(rep *bounce.Report, res *bounceResult, asJSON bool) int {
	var applied *suppressResult
	if res != nil {
		applied = &res.suppressResult
	}
	if asJSON {
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
	head := string(rep.Kind)
	if rep.FeedbackType != "" {
		head += " feedback_type=" + rep.FeedbackType
	}
	if rep.ReportingMTA != "" {
		head += " reporting_mta=" + rep.ReportingMTA
	}
	if rep.QueueID != "" {
		head += " qid=" + rep.QueueID
	}
	fmt.Printf("%s, %d recipient%s\n", head, len(rep.Recipients), plural(len(rep.Recipients)))
	for _, r := range rep.Recipients {
		soft := ""
		if r.Soft {
			soft = " soft=true"
		}
		fmt.Printf("%s status=%s class=%s suppress=%t%s diagnostic=%q stage=%s evidence=%q\n", r.Address, r.Status, r.Class, r.Suppress, soft, r.Diagnostic, r.Stage, r.Evidence)
	}
	if applied != nil {
		for _, s := range applied.Suppressed {
			fmt.Printf("suppressed %s (%s, source %s)\n", s.Address, s.Reason, s.Source)
		}
		if applied.Cancelled > 0 {
			fmt.Printf("%d queued recipient%s cancelled\n", applied.Cancelled, plural(applied.Cancelled))
		}
		for _, a := range res.Unverified {
			fmt.Printf("unverified %s: not suppressed, no valid VERP token names it\n", a)
		}
	}
	return 0
}

// ingestBounce is POST /bounces: the raw message in the body; the daemon
// parses it with the policy in force and applies the decision.
func (d *endpoints) ingestBounce(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, bounce.MaxSize))
	if err != nil {
		admin.WriteError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	rep, err := decideBounce(raw, d.engine.Policy(), d.verpSecret, r.URL.Query()["envelope_to"]...)
	if err != nil {
		admin.WriteError(w, http.StatusBadRequest, err)
		return
	}
	now := time.Now()
	d.countComplaints(r.Context(), rep, now)
	res := bounceResult{Report: rep}
	// The inbound listener's rule (issue 11 §5): the pipe takes mail from
	// anyone; trust_untokened=1 is the operator's --trust-untokened, and
	// only root, the daemon's user and admin_group reach this route.
	trusted, untrusted := trustedRecipients(rep, d.cfg.Bounces.TrustUntokened || r.URL.Query().Get("trust_untokened") == "1")
	d.reportUntrusted(r.Context(), rep, "bounce-ingest", untrusted)
	res.Unverified = unverified(untrusted)
	applied := *rep
	applied.Recipients = trusted
	sups := bounceSuppressions(&applied, time.Duration(d.cfg.Suppression.HostUnknownTTL), now)
	soft, err := softSuppressions(r.Context(), d.store, d.engine.Policy(), &applied, now)
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	res.suppressResult, err = d.suppress(r.Context(), dropOwn(d.cfg, append(sups, soft...)), false, now)
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	admin.WriteJSON(w, http.StatusOK, res)
}

// handleInbound applies a bounce received by the inbound listener: the
// RCPT addresses carry the VERP tokens.
func (d *endpoints) handleInbound(ctx context.Context, client string, rcpts []string, raw []byte) error {
	rep, err := decideBounce(raw, d.engine.Policy(), d.verpSecret, rcpts...)
	if err != nil {
		// Unparseable junk sent to the bounce domain: accept and log it,
		// a retry would not make it readable.
		d.log.Info(maillog.BounceUnreadable, "rcpt", strings.Join(rcpts, ","), "err", err.Error())
		return nil
	}
	now := time.Now()
	// Only what a valid VERP token proves is applied (issue 11 §5).
	trusted, untrusted := trustedRecipients(rep, d.cfg.Bounces.TrustUntokened)
	d.reportUntrusted(ctx, rep, client, untrusted)
	applied := *rep
	applied.Recipients = trusted
	d.countComplaints(ctx, &applied, now)
	sups := bounceSuppressions(&applied, time.Duration(d.cfg.Suppression.HostUnknownTTL), now)
	soft, err := softSuppressions(ctx, d.store, d.engine.Policy(), &applied, now)
	if err != nil {
		return err
	}
	sups = dropOwn(d.cfg, append(sups, soft...))
	d.log.Info(maillog.BounceReceived, "qid", rep.QueueID, "kind", string(rep.Kind), "rcpt", strings.Join(rcpts, ","), "client", client,
		"verified", rep.VERPRecipient != "", "suppress", len(sups))
	_, err = d.suppress(ctx, sups, false, now)
	return err
}

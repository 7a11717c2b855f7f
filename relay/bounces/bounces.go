// Package bounces turns a received bounce or feedback report into
// suppressions (issue 7 §2, issues 11 and 12): it parses and decides the
// report with the policy, keeps only what a valid VERP token proves
// (issue 11 §5), counts soft bounces towards the repeated-bounce rule, and
// applies the result to the suppression list. Its callers are
// `facteur bounce`, the daemon's POST /bounces and the inbound listener.
package bounces

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"facteur/policy"
	"facteur/policy/bounce"
	"facteur/queue"
	"facteur/relay/clock"
	"facteur/relay/config"
	"facteur/relay/suppress"
)

// Result answers POST /bounces: the report and what was applied.
type Result struct {
	Report *bounce.Report `json:"report"`
	suppress.Result
	// Unverified: the addresses the report would have suppressed but
	// proves nothing about (no valid VERP token names them): logged
	// (`bounce unverified`) and sent as unverified_report, never suppressed.
	Unverified []string `json:"unverified,omitempty"`
}

// Decide parses raw and decides each recipient with p. envelopeTo adds
// the addresses the bounce was delivered to (the inbound listener's RCPTs,
// the pipe's envelope recipient), and secret, when set, verifies their
// VERP tokens (issue 7 §2).
func Decide(raw []byte, p *policy.Policy, secret []byte, envelopeTo ...string) (*bounce.Report, error) {
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

// Secret reads bounces.secret_file, the key of the VERP tokens; nil when
// VERP is off.
func Secret(cfg *config.Config) ([]byte, error) {
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

// Offline applies rep, the daemon being down, to the database of l
// (created if need be): the same rule as the daemon's (only what a valid
// VERP token proves, unless bounces.trust_untokened or trust). The
// addresses left unverified come back in the result: the daemon's log is
// not there.
func Offline(ctx context.Context, l suppress.Local, p *policy.Policy, rep *bounce.Report, trust bool) (Result, error) {
	cfg := l.Config
	res := Result{Report: rep}
	now := clock.Real{}.Now() // the command line's clock: the daemon is down
	trusted, untrusted := Trusted(rep, cfg.Bounces.TrustUntokened || trust)
	res.Unverified = Unverified(untrusted)
	applied := *rep
	applied.Recipients = trusted
	rep = &applied
	sups := Suppressions(rep, time.Duration(cfg.Suppression.HostUnknownTTL), now)
	if len(sups) == 0 && !HasSoft(rep) {
		res.Suppressed = []queue.Suppression{}
		return res, nil
	}
	store, err := l.Open(true)
	if err != nil {
		return res, err
	}
	defer store.Close()
	soft, err := SoftSuppressions(ctx, store, p, rep, now)
	if err != nil {
		return res, err
	}
	sups = suppress.DropOwn(cfg, append(sups, soft...))
	res.Result, err = l.Apply(ctx, store, sups, false, now)
	return res, err
}

// Unverified lists the addresses of rs the report would have suppressed
// (or counted as a soft bounce).
func Unverified(rs []bounce.Recipient) []string {
	var out []string
	for _, r := range rs {
		if r.Suppress || r.Soft {
			out = append(out, strings.ToLower(strings.TrimSpace(r.Address)))
		}
	}
	return out
}

// Suppressions lists the entries a decided report adds: source fbl for a
// feedback report, dsn otherwise; the reason is the class and the response
// the bounce's diagnostic. A host_unknown entry expires after ttl, since
// domains come back (issue 7 §3).
func Suppressions(rep *bounce.Report, ttl time.Duration, now time.Time) []queue.Suppression {
	src := queue.SourceDSN
	if rep.Kind == bounce.KindARF {
		src = queue.SourceFBL
	}
	seen := map[string]bool{}
	var out []queue.Suppression
	for _, r := range rep.Recipients {
		addr := strings.ToLower(strings.TrimSpace(r.Address))
		if !r.Suppress || seen[addr] || suppress.Check(queue.Suppression{Address: addr}) != nil {
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

// HasSoft reports a recipient whose bounce counts towards the
// repeated-bounce rule.
func HasSoft(rep *bounce.Report) bool {
	for _, r := range rep.Recipients {
		if r.Soft && !r.Suppress {
			return true
		}
	}
	return false
}

// SoftSuppressions records each soft bounce of rep (a full mailbox, or an
// unknown user on evidence that is not conclusive: issue 12) in the
// recipient's history, and returns the suppressions of those that have now
// bounced so often, over so many days, that the policy's repeated-bounce
// rule (suppression.mailbox_full) holds. The history is the one the
// delivery engine keeps for live replies (state key CLASS/address), so
// that synchronous and asynchronous bounces count together.
func SoftSuppressions(ctx context.Context, store *queue.Store, p *policy.Policy, rep *bounce.Report, now time.Time) ([]queue.Suppression, error) {
	var out []queue.Suppression
	seen := map[string]bool{}
	for _, r := range rep.Recipients {
		addr := strings.ToLower(strings.TrimSpace(r.Address))
		if !r.Soft || r.Suppress || seen[addr] || suppress.Check(queue.Suppression{Address: addr}) != nil {
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

// Trusted returns the recipients of rep whose verdict may be applied, and
// those it names but may not be trusted about (issue 11 §5: the inbound
// listener and the pipe take mail from anyone, so a report is evidence
// only about the recipient its VERP token names; the token is an HMAC of
// (queue ID, recipient) that only facteur can make). With a valid token,
// only the token's recipient is trusted: the report's verdict on it, or,
// when the report names only other addresses (a forwarded mailbox), the
// first suppressing verdict, since the report came back to that
// recipient's return path. Without one, nothing is trusted unless
// trustUntokened.
func Trusted(rep *bounce.Report, trustUntokened bool) (trusted, untrusted []bounce.Recipient) {
	if rep.VERPRecipient == "" {
		if trustUntokened {
			return rep.Recipients, nil
		}
		return nil, rep.Recipients
	}
	var mapped *bounce.Recipient
	for _, r := range rep.Recipients {
		switch {
		case strings.EqualFold(strings.TrimSpace(r.Address), rep.VERPRecipient):
			trusted = append(trusted, r)
		case r.Suppress && mapped == nil:
			m := r
			m.Address = rep.VERPRecipient
			mapped = &m
			untrusted = append(untrusted, r)
		default:
			untrusted = append(untrusted, r)
		}
	}
	if len(trusted) == 0 && mapped != nil {
		trusted = append(trusted, *mapped)
	}
	return trusted, untrusted
}

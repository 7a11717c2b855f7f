package main

import (
	"context"
	"strings"
	"time"

	"facteur/policy/bounce"
	"facteur/relay/maillog"
	"facteur/relay/webhook"
)

// Issue 11 §5: the inbound bounce listener takes mail from anyone, so a
// report is evidence only about the recipient its VERP token names: the
// token is an HMAC of (queue ID, recipient) that only facteur can make.

// trustedRecipients returns the recipients of rep whose verdict may be
// applied, and those it names but may not be trusted about. With a valid
// token, only the token's recipient is trusted: the report's verdict on
// it, or, when the report names only other addresses (a forwarded
// mailbox), the first suppressing verdict, since the report came back to
// that recipient's return path. Without one, nothing is trusted unless
// trustUntokened.
func trustedRecipients(rep *bounce.Report, trustUntokened bool) (trusted, untrusted []bounce.Recipient) {
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

// reportUntrusted logs the addresses a report names without proof and
// hands them to the webhooks (event unverified_report), so that an app can
// look into them; nothing is suppressed.
func (d *endpoints) reportUntrusted(ctx context.Context, rep *bounce.Report, client string, rs []bounce.Recipient) {
	now := time.Now()
	for _, r := range rs {
		d.log.Info(maillog.BounceUnverified, "qid", rep.QueueID, "kind", string(rep.Kind), "rcpt", "<"+r.Address+">", "client", client,
			"class", string(r.Class), "resp", r.Diagnostic)
		ev := webhook.Event{Event: webhook.UnverifiedReport, ID: rep.QueueID, Recipient: r.Address, Class: string(r.Class),
			Response: r.Diagnostic, Timestamp: now}
		for _, h := range d.hooks {
			if err := h.Add(context.WithoutCancel(ctx), ev); err != nil {
				d.log.Error(maillog.WebhookOutbox, "qid", rep.QueueID, "err", err.Error())
			}
		}
	}
}

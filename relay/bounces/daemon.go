package bounces

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"facteur/policy"
	"facteur/policy/bounce"
	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/clock"
	"facteur/relay/config"
	"facteur/relay/maillog"
	"facteur/relay/suppress"
	"facteur/relay/webhook"
)

// Ingester is the daemon's side: POST /bounces (Ingest) and the inbound
// listener's callback (Inbound). The daemon fills it in with what it runs;
// Ingester holds no state of its own.
type Ingester struct {
	// Config gives bounces.trust_untokened, suppression.host_unknown_ttl
	// and this host's own addresses, never suppressed.
	Config *config.Config
	Store  *queue.Store
	// Policy is the policy in force (it changes on reload).
	Policy func() *policy.Policy
	// Secret keys the VERP tokens; nil: none is checked.
	Secret []byte
	Log    *slog.Logger
	// Hooks get an unverified_report event for each address a report
	// names without proof.
	Hooks []*webhook.Webhook
	// Complaints, when set, counts a feedback report's complaints.
	Complaints func(ctx context.Context, rep *bounce.Report, now time.Time)
	// Clock dates what is applied and sent (clock.Real when nil).
	Clock clock.Clock
	// Suppress applies the suppressions (suppress.Service.Suppress).
	Suppress func(ctx context.Context, list []queue.Suppression, replace bool, now time.Time) (suppress.Result, error)
}

// Ingest is POST /bounces: the raw message in the body; the daemon parses
// it with the policy in force and applies the decision.
// ?envelope_to=ADDR (repeated) is the envelope recipient the pipe got, and
// trust_untokened=1 the operator's --trust-untokened.
func (in *Ingester) Ingest(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, bounce.MaxSize))
	if err != nil {
		admin.WriteError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	rep, err := Decide(raw, in.Policy(), in.Secret, r.URL.Query()["envelope_to"]...)
	if err != nil {
		admin.WriteError(w, http.StatusBadRequest, err)
		return
	}
	now := in.now()
	in.complaints(r.Context(), rep, now)
	res := Result{Report: rep}
	// The inbound listener's rule (issue 11 §5): the pipe takes mail from
	// anyone; trust_untokened=1 is the operator's --trust-untokened, and
	// only root, the daemon's user and admin_group reach this route.
	trusted, untrusted := Trusted(rep, in.Config.Bounces.TrustUntokened || r.URL.Query().Get("trust_untokened") == "1")
	in.reportUntrusted(r.Context(), rep, "bounce-ingest", untrusted)
	res.Unverified = Unverified(untrusted)
	applied := *rep
	applied.Recipients = trusted
	sups := Suppressions(&applied, time.Duration(in.Config.Suppression.HostUnknownTTL), now)
	soft, err := SoftSuppressions(r.Context(), in.Store, in.Policy(), &applied, now)
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	res.Result, err = in.Suppress(r.Context(), suppress.DropOwn(in.Config, append(sups, soft...)), false, now)
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	admin.WriteJSON(w, http.StatusOK, res)
}

// Inbound applies a bounce received by the inbound listener from client:
// the RCPT addresses carry the VERP tokens.
func (in *Ingester) Inbound(ctx context.Context, client string, rcpts []string, raw []byte) error {
	rep, err := Decide(raw, in.Policy(), in.Secret, rcpts...)
	if err != nil {
		// Unparseable junk sent to the bounce domain: accept and log it,
		// a retry would not make it readable.
		in.Log.Info(maillog.BounceUnreadable, "rcpt", strings.Join(rcpts, ","), "err", err.Error())
		return nil
	}
	now := in.now()
	// Only what a valid VERP token proves is applied (issue 11 §5).
	trusted, untrusted := Trusted(rep, in.Config.Bounces.TrustUntokened)
	in.reportUntrusted(ctx, rep, client, untrusted)
	applied := *rep
	applied.Recipients = trusted
	in.complaints(ctx, &applied, now)
	sups := Suppressions(&applied, time.Duration(in.Config.Suppression.HostUnknownTTL), now)
	soft, err := SoftSuppressions(ctx, in.Store, in.Policy(), &applied, now)
	if err != nil {
		return err
	}
	sups = suppress.DropOwn(in.Config, append(sups, soft...))
	in.Log.Info(maillog.BounceReceived, "qid", rep.QueueID, "kind", string(rep.Kind), "rcpt", strings.Join(rcpts, ","), "client", client,
		"verified", rep.VERPRecipient != "", "suppress", len(sups))
	_, err = in.Suppress(ctx, sups, false, now)
	return err
}

func (in *Ingester) now() time.Time {
	if in.Clock == nil {
		return clock.Real{}.Now()
	}
	return in.Clock.Now()
}

func (in *Ingester) complaints(ctx context.Context, rep *bounce.Report, now time.Time) {
	if in.Complaints != nil {
		in.Complaints(ctx, rep, now)
	}
}

// reportUntrusted logs the addresses a report names without proof and
// hands them to the webhooks (event unverified_report), so that an app can
// look into them; nothing is suppressed.
func (in *Ingester) reportUntrusted(ctx context.Context, rep *bounce.Report, client string, rs []bounce.Recipient) {
	now := in.now()
	for _, r := range rs {
		in.Log.Info(maillog.BounceUnverified, "qid", rep.QueueID, "kind", string(rep.Kind), "rcpt", "<"+r.Address+">", "client", client,
			"class", string(r.Class), "resp", r.Diagnostic)
		ev := webhook.Event{Event: webhook.UnverifiedReport, ID: rep.QueueID, Recipient: r.Address, Class: string(r.Class),
			Response: r.Diagnostic, Timestamp: now}
		for _, h := range in.Hooks {
			if err := h.Add(context.WithoutCancel(ctx), ev); err != nil {
				in.Log.Error(maillog.WebhookOutbox, "qid", rep.QueueID, "err", err.Error())
			}
		}
	}
}

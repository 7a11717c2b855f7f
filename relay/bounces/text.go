package bounces

import (
	"fmt"
	"io"

	"facteur/policy/bounce"
	"facteur/relay/admin"
)

// WriteText writes a decided report as `facteur bounce` shows it without
// --json: one line for the kind, one per recipient, then, when res is not
// nil (ingest), what was suppressed, cancelled and left unverified.
func WriteText(w io.Writer, rep *bounce.Report, res *Result) {
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
	fmt.Fprintf(w, "%s, %d recipient%s\n", head, len(rep.Recipients), admin.Plural(len(rep.Recipients)))
	for _, r := range rep.Recipients {
		soft := ""
		if r.Soft {
			soft = " soft=true"
		}
		fmt.Fprintf(w, "%s status=%s class=%s suppress=%t%s diagnostic=%q stage=%s evidence=%q\n", r.Address, r.Status, r.Class, r.Suppress, soft, r.Diagnostic, r.Stage, r.Evidence)
	}
	if res == nil {
		return
	}
	for _, s := range res.Suppressed {
		fmt.Fprintf(w, "suppressed %s (%s, source %s)\n", s.Address, s.Reason, s.Source)
	}
	if res.Cancelled > 0 {
		fmt.Fprintf(w, "%d queued recipient%s cancelled\n", res.Cancelled, admin.Plural(res.Cancelled))
	}
	for _, a := range res.Unverified {
		fmt.Fprintf(w, "unverified %s: not suppressed, no valid VERP token names it\n", a)
	}
}

package bounce

import "facteur/policy"

// Kind says what sort of message Parse was given. Its strings are the
// contract of `facteur bounce parse --json`.
type Kind string

const (
	// KindDSN is an RFC 3464 delivery status notification.
	KindDSN Kind = "dsn"
	// KindARF is an RFC 5965 feedback report (a complaint loop).
	KindARF Kind = "arf"
	// KindNonstandard is a human-readable bounce without a
	// message/delivery-status part (qmail, Exim, old Exchange, ...).
	KindNonstandard Kind = "nonstandard"
	// KindNotBounce is anything else: auto-replies, successful delivery
	// reports, ordinary mail.
	KindNotBounce Kind = "not_a_bounce"
)

// Action is the RFC 3464 §2.3.3 Action field of one recipient.
type Action string

// The RFC 3464 §2.3.3 actions.
const (
	Failed    Action = "failed"
	Delayed   Action = "delayed"
	Delivered Action = "delivered"
	Relayed   Action = "relayed"
	Expanded  Action = "expanded"
	// Deliverable is the answer of an address verification request
	// (Postfix's sendmail -bv, RFC 3464 §2.3.3 extension): not a failure.
	Deliverable Action = "deliverable"
)

// Recipient is what a bounce says about one recipient. Parse fills the
// fields up to RemoteMTA; Decide fills Class, Rule and Suppress.
type Recipient struct {
	// Address is the recipient the report is about: the Final-Recipient of
	// a DSN, the Original-Rcpt-To of a feedback report, or the address
	// found in the text of a non-standard bounce.
	Address string `json:"address"`
	// OriginalRecipient is the DSN's Original-Recipient when it differs.
	OriginalRecipient string `json:"original_recipient,omitempty"`
	Action            Action `json:"action,omitempty"`
	// Status is the RFC 3463 enhanced status code ("5.1.1"); when the
	// bounce has none, it is derived from the reply code or the action
	// ("5.0.0", "4.0.0").
	Status string `json:"status"`
	// Diagnostic is the reason as the bounce gives it, unfolded: the
	// Diagnostic-Code field ("smtp; 550 5.1.1 <x>: user unknown") or the
	// text of a non-standard bounce.
	Diagnostic string `json:"diagnostic"`
	// RemoteCode is the remote server's SMTP reply code, 0 if none.
	RemoteCode int `json:"remote_code,omitempty"`
	// RemoteMTA is the host that gave the reply, when the bounce says.
	RemoteMTA string `json:"remote_mta,omitempty"`

	// Stage is the SMTP command the remote reply answered (connect, mail,
	// rcpt, data), as the bounce shows it: Postfix's "(in reply to RCPT TO
	// command)", Exim's "after RCPT TO:", a Sendmail transcript's ">>> RCPT
	// To:", qmail's "does not like recipient". Empty when the bounce does
	// not say.
	Stage policy.Stage `json:"stage"`

	Class policy.Class `json:"class"`
	Rule  string       `json:"rule,omitempty"`
	// Evidence is what decided the class: the words of the bounce, and
	// where they were found (a per-recipient DSN field, the recipient's
	// own lines, the stage).
	Evidence string `json:"evidence"`
	Suppress bool   `json:"suppress"`
	// Soft marks a failure that suppresses only after repeated bounces
	// over several days (suppression.mailbox_full of the policy): a full
	// mailbox, or an unknown user whose evidence is not conclusive (no
	// stage, a reply to DATA, a reason not tied to this recipient).
	Soft bool `json:"soft,omitempty"`

	// context is the text of the bounce around this recipient (its block
	// in the human part), read for the stage and for the reason when the
	// DSN fields are terse.
	context string
	// attributed: the reason was found in a place that belongs to this
	// recipient alone (a DSN per-recipient group, the recipient's own
	// block of a human-readable bounce, a JSON notification's entry).
	attributed bool
	// where says, for the evidence, where the reason was found.
	where string
}

// attribute marks the recipient's reason as its own, found where.
func (r *Recipient) attribute(where string) {
	if !r.attributed {
		r.attributed, r.where = true, where
	}
}

// Report is everything Parse found in one message.
type Report struct {
	Kind       Kind        `json:"kind"`
	Recipients []Recipient `json:"recipients"`

	// ReportingMTA is the DSN's Reporting-MTA (without the "dns;" type).
	ReportingMTA string `json:"reporting_mta,omitempty"`
	// FeedbackType is the ARF Feedback-Type (abuse, fraud, not-spam, ...).
	FeedbackType string `json:"feedback_type,omitempty"`
	// MessageID is the Message-ID of the returned original message, when
	// the bounce carries its headers.
	MessageID string `json:"message_id,omitempty"`
	// QueueID is facteur's queue ID of the original message: from its
	// X-Facteur-ID header, a Received line facteur added, or the VERP token.
	QueueID string `json:"queue_id,omitempty"`
	// EnvelopeTo lists the addresses the bounce itself was delivered to, as
	// the receiving MTA recorded them (Delivered-To, X-Original-To,
	// Envelope-To, then To): with VERP one of them carries the token.
	EnvelopeTo []string `json:"envelope_to,omitempty"`
	// VERPRecipient is the recipient named by an authenticated VERP token
	// (set by ApplyVERP).
	VERPRecipient string `json:"verp_recipient,omitempty"`
}

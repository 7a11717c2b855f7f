package bounce

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"facteur/policy"
)

// Decide classifies every recipient of rep with p and decides suppression,
// filling Class, Rule, Evidence, Suppress and Soft. The SMTP reply found in
// the diagnostic goes, with the stage Parse read, through p.Classify (for
// the provider p recognises from the recipient's domain and the
// Remote-MTA), which already puts the text above the code and never makes
// a recipient unknown on a reply to MAIL FROM or the greeting; what only a
// bounce says is then applied on top:
//   - the DSN Status counts: a failed 5.1.1 / 5.1.10 / 5.1.0 is user_unknown
//     and 5.1.2 host_unknown even when the text is vague (RFC 3463 §3.2);
//   - reasons that only bounces word (Exim's "Unrouteable address", Domino's
//     "not listed in Domino Directory", Exchange's "recipient name is not
//     recognized") are read when the rules found nothing;
//   - a text naming a block list, an IP, a policy, the sender (or a 5.1.7 /
//     5.1.8 status), or a disabled account is never user_unknown or
//     host_unknown, whatever the code says; nor is a transient DNS failure
//     host_unknown (issue 12);
//   - suppression at once needs positive evidence: Action failed and a 5xx
//     reply (or a 5.x.x status without one), a reason that belongs to this
//     recipient, and a stage that is RCPT or not said. A user unknown on a
//     reply to DATA, or on a reason the bounce shares among several
//     recipients, is a soft bounce, like a full mailbox. A delayed report
//     never suppresses; a 4xx only when it is a user unknown at RCPT that
//     the reporting MTA retried until it gave up.
//
// When ApplyVERP found a valid token, only its recipient may be suppressed.
//
// Feedback reports of type abuse, fraud, virus or other are complaints and
// suppress; not-spam and auth-failure reports do not.
func Decide(rep *Report, p *policy.Policy) {
	for i := range rep.Recipients {
		r := &rep.Recipients[i]
		switch {
		case rep.Kind == KindARF:
			decideARF(r, rep.FeedbackType)
		case r.Action == Delivered || r.Action == Relayed || r.Action == Expanded || r.Action == Deliverable:
			r.Class, r.Rule, r.Suppress = "", "bounce:delivered", false
			r.Evidence = "action " + string(r.Action) + ": not a failure"
		default:
			decideFailure(r, p)
		}
		if rep.VERPRecipient != "" && !strings.EqualFold(r.Address, rep.VERPRecipient) && (r.Suppress || r.Soft) {
			// The authenticated return path names whom the bounce is
			// about; an address only the (forgeable) text names is not
			// suppressed, nor counted towards a later suppression.
			r.Suppress, r.Soft, r.Rule = false, false, r.Rule+";verp-mismatch"
		}
	}
}

func decideARF(r *Recipient, typ string) {
	switch typ {
	case "not-spam":
		r.Class, r.Rule, r.Suppress = policy.OtherTemporary, "arf:not-spam", false
	case "auth-failure":
		// RFC 6591 authentication failure report: about our signature,
		// not about the recipient.
		r.Class, r.Rule, r.Suppress = policy.AuthFailure, "arf:auth-failure", false
	default:
		r.Class, r.Rule, r.Suppress = policy.Complaint, "arf:"+typ, true
		if typ == "" {
			r.Rule = "arf:abuse"
		}
	}
	r.Evidence = "feedback report (" + strings.TrimPrefix(r.Rule, "arf:") + ")"
}

// replyFor builds the policy's view of the remote reply from a recipient.
func replyFor(r *Recipient) policy.Reply {
	out, _ := replyOf(r.Diagnostic)
	// The DSN Status stands for the reply's enhanced code when the reply
	// has none of its own, if both agree on temporary or permanent.
	if out.Enhanced == "" && r.Status != "" && (out.Code == 0 || r.Status[0] == byte('0'+out.Code/100)) {
		out.Enhanced = r.Status
	}
	return out
}

func decideFailure(r *Recipient, p *policy.Policy) {
	reply := replyFor(r)
	reply.Stage = r.Stage
	provider := policy.DefaultProvider
	if _, dom, ok := strings.Cut(r.Address, "@"); ok {
		var mx []string
		if h := mtaHost(r.RemoteMTA); h != "" {
			mx = []string{h}
		}
		provider = p.Recognize(strings.ToLower(dom), mx)
	}
	d := p.Classify(provider, reply)
	// Softness is decided here, from what the bounce shows: drop the
	// policy's note about it.
	d.Evidence, _, _ = strings.Cut(d.Evidence, "; soft bounce:")
	class, rule, evidence := refine(d, reply, r)
	r.Class, r.Rule = class, rule
	failed := r.Action == Failed
	permanent := failed && reply.Permanent() && !strings.HasPrefix(r.Status, "4.")
	unknown := class == policy.UserUnknown || class == policy.HostUnknown
	where := r.where
	switch {
	case !r.attributed:
		where = "a reason not tied to this recipient (the bounce lists several)"
	case r.Stage == policy.StageData:
		where = "reply to DATA, which concerns every recipient of the transaction"
	case r.Stage != "":
		where = "reply to " + r.Stage.Command() + ", " + where
	}
	switch {
	case unknown && permanent && r.attributed && r.Stage != policy.StageData:
		r.Suppress = true
		evidence += " (" + where + ")"
	case unknown && failed && r.attributed && r.Stage == policy.StageRcpt && heldUnknown(reply, r):
		// The reporting MTA retried a temporary "user unknown" at RCPT
		// until its queue lifetime ran out (a failed action on a 4xx):
		// the address was refused, for this recipient, for days.
		r.Suppress = true
		evidence += " (a temporary reply to RCPT TO repeated until the sender's MTA gave up)"
	case unknown && permanent:
		r.Soft = true
		evidence += " (" + where + "): not conclusive, soft bounce, " + p.Suppression.MailboxFull.String()
	case class == policy.MailboxFull && permanent:
		r.Soft = true
		evidence += " (soft bounce, " + p.Suppression.MailboxFull.String() + ")"
	}
	r.Evidence = evidence
}

// heldUnknown: a 4xx reply whose words (not only its code) say the user is
// unknown, with nothing saying the failure was passing.
func heldUnknown(reply policy.Reply, r *Recipient) bool {
	text := reply.Text + " " + r.Diagnostic
	return reply.Temporary() && userUnknownText.MatchString(text) &&
		!policy.ContraryWords.MatchString(text) && !policy.TransientDNSWords.MatchString(text) && !guard.MatchString(text)
}

// mtaHost takes the host name out of a Remote-MTA value such as
// "mx.example.com (192.0.2.1)" or "[192.0.2.1]".
func mtaHost(s string) string {
	h, _, _ := strings.Cut(strings.TrimSpace(s), " ")
	h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
	if !strings.Contains(h, ".") {
		return ""
	}
	return strings.ToLower(h)
}

var (
	urls = regexp.MustCompile(`(?i)\b(https?|ftp)://\S+`)

	// guard names what is about us, our IP, our content or the sender, or
	// an account that exists but is closed: never grounds to suppress.
	guard = regexp.MustCompile(`(?i)\bblock(ed|list|ing)?\b|black ?list|spamhaus|spamcop|\brbl\b|dnsbl|\bcbl\b|banned|reputation|client host|\bip\b|ip address|\bspam|\bpolic(y|ies)\b|\bdmarc\b|\bspf\b|\bdkim\b|relay(ing)? (access )?denied|not (permitted|allowed|authori[sz]ed) to relay|relay(ing)? not (allowed|permitted)|not an open relay|we do ?n.?t handle mail for|unable to relay|\bsenders?\b|authenticat|\bdisabled\b|\binactive\b|suspended|\blocked\b|discontinued|deactivated|\bptr\b|reverse dns|helo|virus|content rejected|suppress(ed|ion)|(server|host|route) (could not|cannot|can.t|couldn.t) be (found|reached)`)

	hostUnknownText = regexp.MustCompile(`(?i)unrou?teable address|null ?mx|(could not|couldn.t) find a mail exchanger|unknown domain|non-?existent domain|all relevant mx records point to non-existent hosts|couldn't find any host named|domain( name)?( \S+)? (does not|doesn't) exist|no such domain|host or domain name not found|domain name not found|\bhost not found|\bdomain not found|host unknown|unknown host|nxdomain|illegal host/domain|domain is not reachable|no mx (record|host)|mx (record )?not found|domaine inexistant|domaine inconnu|invalid (recipient |destination )?domain\b`)

	userUnknownText = regexp.MustCompile(`(?i)user unknown|unknown user|unknown local[- ]part|no such (local )?(user|recipient|mailbox|account|address)|(benutzer|empf(ä|ae)nger) (ist )?unbekannt|usuario desconocido|utente sconosciuto|no mailbox|mailbox not found|mailbox (does not|doesn't) exist|recipient not found|unknown recipient|recipient unknown|invalid recipient|invalid mailbox|not a valid (mailbox|recipient|user)|(address|account|user|recipient|mailbox)( address)? (does not|doesn't) exist|doesn't have an? \S+ account|user not found|not listed in (the )?(domino directory|public name & address book)|recipient name is not recognized|unknown or illegal (user|alias)|addressee unknown|recipnotfound|recipientnotfound|address (wasn.t|was not) found|no valid recipients? for this (mm|message)|destinataire inconnu|utilisateur inconnu|adresse (invalide|inconnue)|destinataire invalide|n'existe pas|(is )?not a known user|no (account|mailbox) (here )?by that name|no such (person|mail ?drop)|there is no one at this address|unknown virtual user|(user|recipient) not known|(address|recipient|user|mailbox) (is )?not present in (the )?directory|this address no longer accepts mail|\bbadrcptto\b|badrecipientto|validrcptto|bad destination (mailbox )?address|5\.4\.1 [^;]{0,80}recipient address rejected: access denied` +
		// IMail's "Invalid final delivery userid"; Gmail's "the address
		// couldn't be found." (its "** Address not found **" notice), but
		// not its "couldn't be found, or is unable to receive mail", which
		// Gmail also writes over a refused sender or a disabled account.
		`|invalid final delivery userid|\baddress (couldn.t|could not) be found\.`)

	// dmaNoHost is the DragonFly Mail Agent's text for a domain whose MX
	// and address lookups failed (net.c, deliver_remote).
	dmaNoHost = regexp.MustCompile(`(?i)\bDNS lookup failure: host (\S+) not found`)

	mailboxFullText = regexp.MustCompile(`(?i)mail ?(box|folder) (is )?full|over ?quota|over (the |its |their )?(allowed |storage |mailbox |disk )?quota|quota exceeded|exceeds? (allowed|its|the) (size|storage|quota)|mailbox size|out of storage|storage quota|insufficient (storage|space) in mailbox|bo[iî]te (aux lettres )?pleine` +
		// Biglobe: "The number of messages in recipient's mailbox
		// exceeded the local limit."
		`|mailbox exceeded the (local )?limit`)
)

// refine applies the bounce's own evidence to the policy's verdict d and
// returns the class, the rule and the evidence.
func refine(d policy.Decision, reply policy.Reply, r *Recipient) (policy.Class, string, string) {
	class, rule := d.Class, d.Rule
	text := policy.NeutralWords.ReplaceAllString(urls.ReplaceAllString(reply.Text+" "+r.Diagnostic, " "), "mail exchanger")
	enh := reply.Enhanced
	if r.Stage == policy.StageMail || r.Stage == policy.StageConnect {
		// A reply to MAIL FROM or to the greeting is about the sender or
		// the connection: no word in it makes the recipient unknown.
		if class == policy.UserUnknown || class == policy.HostUnknown {
			return othersFor(reply), "stage:" + string(r.Stage), "reply to " + r.Stage.Command() + ": not about the recipient"
		}
		return class, rule, d.Evidence
	}
	unknownish := class == policy.UserUnknown || class == policy.HostUnknown
	defaulted := strings.HasPrefix(rule, "default")
	contrary := guard.FindString(text)
	if contrary == "" {
		contrary = policy.ContraryWords.FindString(text)
	}

	if m := dmaNoHost.FindStringSubmatch(text); m != nil && contrary == "" && r.Action == Failed && !reply.Temporary() &&
		(class == policy.OtherPermanent || class == policy.HostUnknown) {
		// The DragonFly Mail Agent bounces "DNS lookup failure: host H
		// not found" at once only when the lookup failed for good; a
		// failure for now is retried, and bounced at the end with "Could
		// not deliver for the last N seconds" instead. H must be the
		// recipient's domain (with a smarthost, H is the smarthost).
		if _, dom, _ := strings.Cut(r.Address, "@"); dom != "" && strings.EqualFold(strings.TrimSuffix(m[1], "."), dom) {
			return policy.HostUnknown, "bounce:dma-no-host", quote(m[0]) + " names the recipient's domain, in a bounce sent without retrying"
		}
	}
	var local policy.Class
	var words string
	if w := mailboxFullText.FindString(text); w != "" {
		local, words = policy.MailboxFull, w
	} else if w := hostUnknownText.FindString(text); w != "" && contrary == "" {
		if t := policy.TransientDNSWords.FindString(text); t != "" {
			// "Host not found, try again": the resolver's TRY_AGAIN.
			return othersFor(reply), "bounce:transient-dns", fmt.Sprintf("%q with %q: a lookup failure for now, not a dead domain", w, t)
		}
		local, words = policy.HostUnknown, w
	} else if w := userUnknownText.FindString(text); w != "" && contrary == "" {
		local, words = policy.UserUnknown, w
	}
	senderStatus := isSenderStatus(enh) || isSenderStatus(r.Status)
	other := otherAddress(reply.Text, r)
	if other != "" && (unknownish || local == policy.UserUnknown || local == policy.HostUnknown) {
		// "550 5.1.0 <app@example.com>: address rejected": the reply is
		// about another address (most often our sender's), not this
		// recipient.
		return othersFor(reply), "bounce:other-address", fmt.Sprintf("the reply names %s, not this recipient", other)
	}

	switch {
	case unknownish && (contrary != "" || senderStatus):
		// A block, a policy or the sender: whatever the rule said, the
		// recipient is not shown to be unknown.
		if local == policy.MailboxFull {
			return local, "bounce:mailbox-full-text", quote(words)
		}
		if senderStatus {
			return othersFor(reply), "bounce:guard", "status " + enh + r.Status + " is about the sender"
		}
		return othersFor(reply), "bounce:guard", fmt.Sprintf("%q in the text: not about the recipient's existence", contrary)
	case unknownish && class == policy.HostUnknown && policy.TransientDNSWords.MatchString(text):
		return othersFor(reply), "bounce:transient-dns", fmt.Sprintf("%q: a lookup failure for now, not a dead domain", policy.TransientDNSWords.FindString(text))
	case local == policy.MailboxFull && class == policy.UserUnknown:
		// "552 mailbox ... over quota (#5.1.1)": the words win.
		return local, "bounce:mailbox-full-text", quote(words)
	case class == policy.UserUnknown && strings.HasPrefix(enh, "5.7.") && local != policy.UserUnknown:
		// "550 5.7.1 mailbox unavailable" is a block more often than not.
		return othersFor(reply), "bounce:5.7-not-unknown", "status " + enh + " (security or policy) without words of an unknown user"
	case defaulted && local != "":
		return local, "bounce:text", quote(words)
	case defaulted && contrary == "" && !senderStatus && other == "" && r.Action == Failed:
		// RFC 3463 §3.2: X.1.1 bad destination mailbox, X.1.10 null MX
		// / recipient not found, X.1.0 other address status, X.1.2 bad
		// destination system.
		for _, st := range []string{enh, r.Status} {
			switch st {
			case "5.1.1", "5.1.10", "5.1.0":
				return policy.UserUnknown, "bounce:status-" + st, "status " + st + " in a per-recipient field"
			case "5.1.2":
				return policy.HostUnknown, "bounce:status-" + st, "status " + st + " in a per-recipient field"
			}
		}
	}
	return class, rule, d.Evidence
}

// otherAddress returns an address the remote reply names when it names
// addresses and none of them is the recipient (its final or original
// address); "" otherwise. An encoded local part ("=?utf-8?...") cannot be
// compared, and is taken as a match.
func otherAddress(text string, r *Recipient) string {
	addrs := findAddrs(text)
	if len(addrs) == 0 || strings.Contains(r.Address, "=?") {
		return ""
	}
	for _, a := range addrs {
		a = strings.Trim(a, ".")
		if strings.EqualFold(a, r.Address) || r.OriginalRecipient != "" && strings.EqualFold(a, r.OriginalRecipient) {
			return ""
		}
	}
	return strings.Trim(addrs[0], ".")
}

func quote(w string) string { return strconv.Quote(strings.TrimSpace(w)) }

// isSenderStatus: RFC 3463 X.1.7 bad sender's mailbox address syntax, X.1.8
// bad sender's system address.
func isSenderStatus(st string) bool {
	return st == "5.1.7" || st == "5.1.8" || st == "4.1.7" || st == "4.1.8"
}

func othersFor(r policy.Reply) policy.Class {
	if r.Temporary() {
		return policy.OtherTemporary
	}
	return policy.OtherPermanent
}

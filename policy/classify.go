package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Class is what a reply says about the recipient or about us (issue 7 §1). The strings are
// the contract of `facteur classify --json`, of the log (`class=`) and of the suppression list.
type Class string

// The classes. Only UserUnknown and HostUnknown (permanent) and Complaint ever suppress.
const (
	UserUnknown    Class = "user_unknown"
	MailboxFull    Class = "mailbox_full"
	RateLimited    Class = "rate_limited"
	Greylisted     Class = "greylisted"
	IPBlocked      Class = "ip_blocked"
	PolicySpam     Class = "policy_spam"
	AuthFailure    Class = "auth_failure"
	MessageTooBig  Class = "message_too_big"
	HostUnknown    Class = "host_unknown"
	TLSRequired    Class = "tls_required"
	Complaint      Class = "complaint"
	OtherTemporary Class = "other_temporary"
	OtherPermanent Class = "other_permanent"
)

// Classes lists every class, in the order of issue 7.
var Classes = []Class{UserUnknown, MailboxFull, RateLimited, Greylisted, IPBlocked, PolicySpam,
	AuthFailure, MessageTooBig, HostUnknown, TLSRequired, Complaint, OtherTemporary, OtherPermanent}

// Valid reports whether c is one of Classes.
func (c Class) Valid() bool { return slices.Contains(Classes, c) }

// Action is what the sender does about a reply (issue 5 §4).
type Action string

// The actions. Defer and Bounce concern the recipient only; Suspend, Throttle and Backoff act
// on the whole provider (and its group) and leave the recipient deferred: nothing bounces
// because of a block.
const (
	// Defer retries this recipient per the provider's retry schedule.
	Defer Action = "defer"
	// Bounce fails this recipient now (a DSN goes to the sender); Decision.Suppress says
	// whether the address is also suppressed.
	Bounce Action = "bounce"
	// Suspend opens no new connection to the provider (and its group) for the rule's duration.
	Suspend Action = "suspend"
	// Throttle divides the provider's rate (default by 2), recovering step by step.
	Throttle Action = "throttle"
	// Backoff suspends the provider for a window that doubles on each failure, from
	// backoff.initial to backoff.max; only a delivery resets it.
	Backoff Action = "backoff"
)

// Actions lists every action.
var Actions = []Action{Defer, Bounce, Suspend, Throttle, Backoff}

// Valid reports whether a is one of Actions.
func (a Action) Valid() bool { return slices.Contains(Actions, a) }

// ProviderWide reports whether the action changes the provider's state.
func (a Action) ProviderWide() bool { return a == Suspend || a == Throttle || a == Backoff }

// Decision is the policy's verdict on one reply (issue 7 §1, `facteur classify --json`).
type Decision struct {
	Class  Class  `json:"class"`
	Action Action `json:"action"`
	// Rule names the rule that matched, or "default:<why>" when none did.
	Rule string `json:"rule"`
	// Suppress: the address must not be sent to again (issue 7 §3).
	Suppress bool `json:"suppress"`
	// Duration of a suspension (Suspend) or the first backoff window (Backoff).
	Duration time.Duration `json:"-"`
	// Scope is the matched rule's scope: "" per source IP, "provider" for every IP.
	Scope string `json:"scope,omitempty"`
	// Provider the reply came from, as resolved by the policy ("default" for an unknown name),
	// and its reputation group; a provider-wide action applies to the whole group.
	Provider string `json:"provider"`
	Group    string `json:"group,omitempty"`
	// Auth lists the authentication mechanisms an auth_failure reply names (spf, dkim, dmarc),
	// so that the log line says what is missing (issue 5 §4, Microsoft 5.7.515).
	Auth []string `json:"auth,omitempty"`
	// Stage is the command the reply answered, as the caller gave it ("" unknown).
	Stage Stage `json:"stage"`
	// Evidence is what decided the class: the words of the reply the rule matched, the code,
	// or why the class was overruled (a reply to MAIL FROM, contrary words).
	Evidence string `json:"evidence"`
	// Soft marks a failure that does not suppress at once but only after repeated bounces
	// over several days (suppression.mailbox_full): a full mailbox, or an unknown user whose
	// evidence is not conclusive (a reply to DATA, about every recipient at once).
	Soft bool `json:"soft,omitempty"`
}

// String renders the decision as `facteur classify` prints it.
func (d Decision) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "class=%s action=%s", d.Class, d.Action)
	if d.Duration > 0 {
		fmt.Fprintf(&b, " duration=%s", FormatDuration(d.Duration))
	}
	fmt.Fprintf(&b, " suppress=%t rule=%s provider=%s", d.Suppress, d.Rule, d.Provider)
	if d.Group != "" {
		fmt.Fprintf(&b, " group=%s", d.Group)
	}
	if len(d.Auth) > 0 {
		fmt.Fprintf(&b, " auth=%s", strings.Join(d.Auth, ","))
	}
	if d.Stage != "" {
		fmt.Fprintf(&b, " stage=%s", d.Stage)
	}
	if d.Soft {
		b.WriteString(" soft=true")
	}
	return b.String()
}

// decisionJSON adds the duration in the policy notation.
type decisionJSON struct {
	Class    Class    `json:"class"`
	Action   Action   `json:"action"`
	Rule     string   `json:"rule"`
	Suppress bool     `json:"suppress"`
	Duration *string  `json:"duration"`
	Provider string   `json:"provider"`
	Group    string   `json:"group,omitempty"`
	Auth     []string `json:"auth,omitempty"`
	Stage    Stage    `json:"stage"`
	Evidence string   `json:"evidence"`
	Soft     bool     `json:"soft,omitempty"`
}

// JSON returns the value `facteur classify --json` encodes: {class, action, rule, suppress,
// duration (null when none), provider, group, auth, stage, evidence, soft}.
func (d Decision) JSON() any {
	j := decisionJSON{Class: d.Class, Action: d.Action, Rule: d.Rule, Suppress: d.Suppress,
		Provider: d.Provider, Group: d.Group, Auth: d.Auth, Stage: d.Stage, Evidence: d.Evidence, Soft: d.Soft}
	if d.Duration > 0 {
		s := FormatDuration(d.Duration)
		j.Duration = &s
	}
	return j
}

var authMechRE = regexp.MustCompile(`(?i)\b(spf|dkim|dmarc)\b`)

// Classify judges one reply from provider (a name returned by Recognize; unknown names and ""
// use the default rules only). The provider's rules are tried first, in order, then the
// top-level rules; the first match wins. With no match, a 4xx is other_temporary/defer and a
// 5xx other_permanent/bounce. Then what the rules cannot see overrules them:
//   - the text beats the code: a reply that names a rate, a policy, a preference, a block, an
//     IP or a reputation is not user_unknown or host_unknown, whatever its code (5.1.1 on a
//     filter or a rate limit); a transient DNS failure ("Host not found, try again") is not
//     host_unknown;
//   - the stage, when r.Stage gives it: a reply to the greeting, EHLO or MAIL FROM is about
//     the connection or the sender and never makes a recipient unknown; a reply to DATA
//     concerns every recipient at once, so an unknown user there is a soft bounce.
//
// Classify changes nothing and is safe for concurrent use.
func (p *Policy) Classify(provider string, r Reply) Decision {
	prov := p.Provider(provider)
	d := Decision{Provider: prov.Name, Group: prov.Group, Stage: r.Stage}
	matched := false
	for _, rules := range [][]Rule{prov.Rules, p.Rules} {
		for i := range rules {
			if rules[i].matches(r) {
				d.Class, d.Action, d.Rule, d.Duration, d.Scope = rules[i].Class, rules[i].Action, rules[i].Name, rules[i].Duration, rules[i].Scope
				d.Evidence = rules[i].evidence(r)
				matched = true
				break
			}
		}
		if matched {
			break
		}
	}
	switch {
	case matched:
	case r.Permanent():
		d.Class, d.Rule = OtherPermanent, "default:5xx"
	case r.Temporary():
		d.Class, d.Rule = OtherTemporary, "default:4xx"
	default:
		// A 2xx/3xx passed here by mistake, or a code-less reply: never fail or suppress on it.
		d.Class, d.Rule = OtherTemporary, "default:not a 4xx or 5xx"
	}
	if !matched {
		d.Evidence = "no rule matched: " + codeEvidence(r)
	}
	if d.Class == UserUnknown || d.Class == HostUnknown {
		p.overrule(&d, r)
	}
	if r.Stage == StageConnect && (d.Class == OtherPermanent || d.Class == OtherTemporary) && (r.Permanent() || r.Temporary()) {
		// Refused before any envelope was sent: the server refuses us (our IP, our name),
		// not a recipient or a message.
		d.Evidence = "refused at the greeting or EHLO, before any envelope: the connection is refused (" + d.Evidence + ")"
		d.Class, d.Rule = IPBlocked, "stage:connect"
	}
	if d.Action == "" {
		d.Action = Defer
		if r.Permanent() {
			d.Action = Bounce
		}
	}
	if d.Action == Bounce && !r.Permanent() {
		// The receiver said "try again": a temporary reply never fails a recipient; its
		// lifetime does (issue 7 §3, "a 4xx of any class defers").
		d.Action = Defer
	}
	if d.Action == Backoff && d.Duration == 0 {
		d.Duration = prov.Knobs.Backoff.Initial
	}
	if d.Class == MailboxFull && r.Permanent() {
		d.Soft = true
	}
	d.Suppress = !d.Soft && Suppresses(d.Class, d.Action, r)
	if d.Soft && d.Action == Bounce {
		d.Evidence += "; soft bounce: " + p.Suppression.MailboxFull.String()
	}
	if d.Class == AuthFailure {
		for _, m := range authMechRE.FindAllString(r.Text, -1) {
			if m = strings.ToLower(m); !slices.Contains(d.Auth, m) {
				d.Auth = append(d.Auth, m)
			}
		}
		if len(d.Auth) == 0 {
			// 5.7.515 and friends name no mechanism: all three are what the receiver wants.
			d.Auth = []string{"spf", "dkim", "dmarc"}
		}
	}
	return d
}

var (
	// ContraryWords are the words that make a reply about something other than the
	// recipient's existence, whatever its code: a rate, a policy or preference (a filter), a
	// block, an IP, a reputation, spam, the sender (shared/testdata/README.md: "the text
	// decides"). Exported for the bounce package, which applies the same judgement.
	ContraryWords = regexp.MustCompile(`(?i)\brate\b|rate[- ]?limit|\bpolic(y|ies)\b|\bpreference|\bblock|\b(black|deny|block) ?list|blacklisted|reputation|\bip\b|\bip address|\bspam|too many|\b(this|per|an|each|every) (hour|minute|day)\b|\bhourly\b|\bsenders?\b|authenticat|\bhelo\b|\behlo\b|envelope[- ]from|\bmail from\b|\bbanned\b|relay(ing)? (access )?(denied|not (permitted|allowed))|unable to relay|not (permitted|allowed|authori[sz]ed) to relay|not an open relay|we do ?n.?t handle mail for`)
	// TransientDNSWords say a lookup failed for now, which is not a dead domain (Postfix's
	// "Host not found, try again" is the resolver's TRY_AGAIN; host_unknown needs NXDOMAIN,
	// a null MX, or the MTA's words for them).
	TransientDNSWords = regexp.MustCompile(`(?i)(not found|lookup|resolution|name service error)[^.;]{0,40}\btry again\b|temporar(y|ily)[^.;]{0,30}\b(dns|lookup|resolution|name ?server|name service|failure in name)|\b(dns|lookup|resolution|name ?server|query)\b[^.;]{0,30}(timed? ?out|time-?out|temporar|servfail|fail(ed|ure)?\b)|servfail|server failure`)
	// NeutralWords are an MTA's fixed phrases that contain a contrary word without its
	// meaning: qmail-remote's "couldn't find a mail exchanger or IP address" is a domain with
	// no mail host, not a block of our IP. Removed before ContraryWords is tried.
	NeutralWords = regexp.MustCompile(`(?i)\bmail exchanger or ip address\b`)
	// urlRE finds URLs, whose query strings ("?ip=192.0.2.1") say nothing about the reply.
	urlRE = regexp.MustCompile(`(?i)\b(https?|ftp)://\S+`)
	// ipLiteral is an IPv4 address: when only the code says "unknown user", an IP in the text
	// (a block naming our address) says otherwise.
	ipLiteral = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)
)

// overrule applies the text and the stage to a user_unknown or host_unknown verdict.
func (p *Policy) overrule(d *Decision, r Reply) {
	other := OtherPermanent
	if !r.Permanent() {
		other = OtherTemporary
	}
	switch r.Stage {
	case StageMail, StageConnect:
		what := "the sender"
		if r.Stage == StageConnect {
			what = "the connection"
		}
		d.Evidence = fmt.Sprintf("reply to %s: about %s, not the recipient (%s)", r.Stage.Command(), what, d.Evidence)
		d.Class, d.Rule = other, "stage:"+string(r.Stage)
		return
	}
	text := NeutralWords.ReplaceAllString(urlRE.ReplaceAllString(r.Text, " "), "mail exchanger")
	if w := ContraryWords.FindString(text); w != "" {
		d.Evidence = fmt.Sprintf("%q in the text: not about the recipient's existence (%s)", w, d.Evidence)
		d.Class, d.Rule = other, d.Rule+";text-not-"+string(d.Class)
		return
	}
	if d.Class == HostUnknown {
		if w := TransientDNSWords.FindString(text); w != "" {
			d.Evidence = fmt.Sprintf("%q: a lookup failure for now, not a dead domain (%s)", w, d.Evidence)
			d.Class, d.Rule = other, d.Rule+";transient-dns"
			return
		}
	}
	if strings.HasPrefix(d.Evidence, "code ") && ipLiteral.MatchString(text) {
		// Only the code said unknown, and the text names an IP: a block.
		d.Evidence = "an IP in the text, only the code says unknown (" + d.Evidence + ")"
		d.Class, d.Rule = other, d.Rule+";text-not-"+string(d.Class)
		return
	}
	if r.Stage == StageData && r.Permanent() {
		d.Soft = true
		d.Evidence = "reply to DATA, about every recipient at once: " + d.Evidence
	}
}

// codeEvidence is the reply's codes, as evidence: "code 550 5.1.1".
func codeEvidence(r Reply) string {
	var parts []string
	if r.Code != 0 {
		parts = append(parts, strconv.Itoa(r.Code))
	}
	if r.Enhanced != "" {
		parts = append(parts, r.Enhanced)
	}
	if len(parts) == 0 {
		return "no code"
	}
	return "code " + strings.Join(parts, " ")
}

// evidence is what made rule r match: the words its pattern found (words rather than codes
// when both matched: the text decides), else the codes.
func (ru *Rule) evidence(r Reply) string {
	if ru.Match != nil {
		line := r.String()
		for _, re := range ru.Match.parts {
			if w := re.FindString(line); w != "" && !codeOnly.MatchString(w) {
				return strings.TrimSpace(w)
			}
		}
	}
	return codeEvidence(r)
}

var codeOnly = regexp.MustCompile(`^[\d.x\s#-]*$|^\^?\d{3} [\d.]+$`)

// String says the repeated-bounce rule in words, for a soft bounce's evidence.
func (k MailboxFullKnobs) String() string {
	if k.Count <= 0 {
		return "never suppressed (suppression.mailbox_full.count is 0)"
	}
	return fmt.Sprintf("suppressed after %d bounces over at least %s within %s", k.Count, FormatDuration(k.Span), FormatDuration(k.Window))
}

// Suppresses is issue 7 §3's rule for a reply: only a permanent (5xx) reply of class
// user_unknown or host_unknown that bounces suppresses at once; a complaint suppresses; a
// 4xx never does; no other class ever does (a block, a rate limit, a spam verdict says nothing
// about the recipient). mailbox_full suppresses only after repeated bounces, which the caller
// decides with MailboxFullSuppress from stored history.
func Suppresses(c Class, a Action, r Reply) bool {
	switch c {
	case Complaint:
		// A feedback report or a permanent reply; a 4xx never suppresses.
		return !r.Temporary()
	case UserUnknown, HostUnknown:
		return r.Permanent() && a == Bounce
	}
	return false
}

// MailboxFullSuppress applies the repeated-bounce rule of issue 7 §3 to the times of a
// recipient's permanent mailbox_full bounces: suppress when, among the bounces of the last
// suppression.mailbox_full.window, there are at least count of them spread over at least
// span (first to last). A full mailbox is usually a passing state; one that stays full for days
// is abandoned.
func (p *Policy) MailboxFullSuppress(bounces []time.Time, now time.Time) bool {
	mf := p.Suppression.MailboxFull
	if mf.Count <= 0 {
		return false
	}
	var recent []time.Time
	for _, t := range bounces {
		if !t.After(now) && now.Sub(t) <= mf.Window {
			recent = append(recent, t)
		}
	}
	if len(recent) < mf.Count {
		return false
	}
	first, last := slices.MinFunc(recent, time.Time.Compare), slices.MaxFunc(recent, time.Time.Compare)
	return last.Sub(first) >= mf.Span
}

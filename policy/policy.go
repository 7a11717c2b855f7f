package policy

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
	"golang.org/x/net/publicsuffix"
)

//go:embed default.yaml
var builtinYAML []byte

// BuiltinName is the file name given to the built-in policy in error messages.
const BuiltinName = "policy/default.yaml (built-in)"

// DefaultProvider is the provider of every domain no other provider recognises. Its limits and
// suspensions apply per destination domain (issue 5 §2).
const DefaultProvider = "default"

// Policy is a resolved, validated policy: every provider's knobs have the defaults merged in.
// A Policy is immutable once returned; share it freely and replace it with Engine.Swap.
type Policy struct {
	// Name says where the policy came from (BuiltinName, or the file overlaid on it).
	Name        string
	Defaults    Knobs
	Suppression Suppression
	// Rules are the top-level rules, tried after the provider's own.
	Rules []Rule
	// Providers is sorted by name and includes DefaultProvider.
	Providers []*Provider

	byName map[string]*Provider
	exact  map[string]*Provider
	wild   []domainPattern
	mx     []domainPattern
}

// Provider is one mailbox provider (or DefaultProvider).
type Provider struct {
	Name string
	// Group names a reputation group shared with other providers (orange, sfr and laposte
	// share Vade's filter): a suspension or throttle of one applies to all.
	Group   string
	Domains []string
	MX      []string
	Knobs   Knobs
	Rules   []Rule
}

// Knobs are the shaping settings of a provider (issue 5 §3).
type Knobs struct {
	// Connections is the maximum of simultaneous connections per source IP.
	Connections int
	// MessagesPerConnection: QUIT and reconnect after this many (0: no limit).
	MessagesPerConnection int
	// RecipientsPerMessage: split a message's recipients into transactions of this size.
	RecipientsPerMessage int
	// Rate is messages per period per source IP; zero is unlimited.
	Rate Rate
	// Retry is the schedule of a deferred recipient.
	Retry Schedule
	// MaxLifetime: a recipient still undelivered this long after queueing expires.
	MaxLifetime time.Duration
	Backoff     BackoffKnobs
	Throttle    ThrottleKnobs
}

// Schedule is a retry schedule: Intervals (the last repeats) or Every for For.
type Schedule struct {
	Intervals []time.Duration
	Every     time.Duration
	// For bounds the lifetime under this schedule (0: MaxLifetime alone).
	For time.Duration
}

// String writes the schedule as in the policy file.
func (s Schedule) String() string {
	if len(s.Intervals) > 0 {
		parts := make([]string, len(s.Intervals))
		for i, d := range s.Intervals {
			parts[i] = FormatDuration(d)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprintf("{every: %s, for: %s}", FormatDuration(s.Every), FormatDuration(s.For))
}

// BackoffKnobs drive the Backoff action: the first window is Initial, each further failure
// doubles it, up to Max.
type BackoffKnobs struct {
	Initial time.Duration
	Max     time.Duration
}

// ThrottleKnobs drive the Throttle action.
type ThrottleKnobs struct {
	// Factor divides the rate at each throttle step.
	Factor int
	// RecoverAfter: after this long without a new throttle reply, a delivery steps the rate
	// back up by one level.
	RecoverAfter time.Duration
	// Cooldown: throttle replies within this time of the last step do not divide again
	// (parallel connections report the same event).
	Cooldown time.Duration
	// Min is the floor of a throttled rate.
	Min Rate
	// FromUnlimited is the rate a provider with no rate limit is throttled from.
	FromUnlimited Rate
}

// Suppression holds the policy side of issue 7 §3.
type Suppression struct {
	MailboxFull MailboxFullKnobs
}

// MailboxFullKnobs: suppress a full mailbox after Count bounces spread over at least Span,
// counting bounces of the last Window.
type MailboxFullKnobs struct {
	Count  int
	Span   time.Duration
	Window time.Duration
}

// Rule is one reaction to replies. All the fields set must match; Match and Unless are
// case-insensitive regular expressions over the whole reply line (`421 4.7.0 [TSS04] ...`).
type Rule struct {
	Name string
	// Code is a 3-character pattern, digits or x (`421`, `4xx`, `55x`); empty matches any.
	Code string
	// Enhanced is an RFC 3463 code, each part a number or x (`5.7.1`, `x.7.26`, `5.1.x`).
	Enhanced string
	Match    *Pattern
	// Unless: the rule does not apply when this matches (a "mailbox unavailable" that names a
	// block list is not an unknown user).
	Unless *Pattern
	Class  Class
	// Action is empty when the rule leaves it to the code: 4xx defer, 5xx bounce.
	Action   Action
	Duration time.Duration
}

func (r *Rule) matches(rep Reply) bool {
	if r.Code != "" && !codeMatches(r.Code, rep.Code) {
		return false
	}
	if r.Enhanced != "" && !enhancedMatches(r.Enhanced, rep.Enhanced) {
		return false
	}
	if r.Match == nil && r.Unless == nil {
		return true
	}
	line := rep.String()
	if r.Match != nil && !r.Match.MatchString(line) {
		return false
	}
	return r.Unless == nil || !r.Unless.MatchString(line)
}

// Pattern is a rule's regular expression, case-insensitive. It is compiled as one regexp per
// top-level alternative: `a|b|c` matches when any part does, which is the same language, and
// small programs run on Go's backtracker instead of its much slower NFA (a reply runs
// through every rule, so this is the classifier's hot path).
type Pattern struct {
	src   string
	parts []*regexp.Regexp
}

// CompilePattern compiles src (Go RE2 syntax) case-insensitively.
func CompilePattern(src string) (*Pattern, error) {
	if _, err := regexp.Compile(src); err != nil {
		return nil, fmt.Errorf("pattern does not compile: %w", err)
	}
	p := &Pattern{src: src}
	for _, alt := range splitAlternatives(src) {
		re, err := regexp.Compile("(?i)" + alt)
		if err != nil {
			// The whole compiled, so the split was wrong (an unusual syntax): keep the whole.
			return &Pattern{src: src, parts: []*regexp.Regexp{regexp.MustCompile("(?i)" + src)}}, nil
		}
		p.parts = append(p.parts, re)
	}
	return p, nil
}

// String returns the source as written ("" for a nil Pattern).
func (p *Pattern) String() string {
	if p == nil {
		return ""
	}
	return p.src
}

// MatchString reports whether s contains a match.
func (p *Pattern) MatchString(s string) bool {
	for _, re := range p.parts {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

// splitAlternatives splits src at the | that are outside groups and character classes.
// Flags set at the top level (`(?i)`, `(?s)`) would be lost by the split, so a pattern using
// them is not split.
func splitAlternatives(src string) []string {
	if strings.Contains(src, "(?") && !strings.Contains(src, "(?:") {
		return []string{src}
	}
	var parts []string
	depth, start, inClass := 0, 0, false
	for i := 0; i < len(src); i++ {
		switch c := src[i]; {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			// A ] right after [ or [^ is a literal.
			if i+1 < len(src) && src[i+1] == '^' {
				i++
			}
			if i+1 < len(src) && src[i+1] == ']' {
				i++
			}
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '|' && depth == 0:
			parts = append(parts, src[start:i])
			start = i + 1
		}
	}
	return append(parts, src[start:])
}

func codeMatches(pat string, code int) bool {
	if code < 100 || code > 999 {
		return false
	}
	s := strconv.Itoa(code)
	for i := 0; i < 3; i++ {
		if pat[i] != 'x' && pat[i] != s[i] {
			return false
		}
	}
	return true
}

func enhancedMatches(pat, enh string) bool {
	pp, ep := strings.Split(pat, "."), strings.Split(enh, ".")
	if len(ep) != 3 {
		return false
	}
	for i := range pp {
		if pp[i] != "x" && pp[i] != ep[i] {
			return false
		}
	}
	return true
}

var (
	codePatternRE     = regexp.MustCompile(`^[245x][0-9x][0-9x]$`)
	enhancedPatternRE = regexp.MustCompile(`^([245x])\.(\d{1,3}|x)\.(\d{1,3}|x)$`)
	nameRE            = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	hostRE            = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
)

// Builtin returns the built-in policy (policy/default.yaml).
func Builtin() (*Policy, error) { return build(BuiltinName, nil) }

// Load reads the policy file at path and overlays it on the built-in policy, key by key.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	return Parse(path, data)
}

// Parse overlays data (YAML or JSON, named name in errors) on the built-in policy: a provider
// named in data changes only the keys it sets, a new name adds a provider, a rule with the
// name of an existing rule of the same scope replaces it (`disabled: true` removes it) and new
// rules go before the existing ones. A document with `standalone: true` (what Show prints) is
// a complete policy and is not overlaid. Errors are an Errors listing every problem.
func Parse(name string, data []byte) (*Policy, error) {
	src, err := decode(name, data)
	if err != nil {
		return nil, err
	}
	return build(name, src)
}

// build resolves the built-in document overlaid by user (nil: the built-in alone).
func build(name string, user *source) (*Policy, error) {
	var srcs []*source
	if user == nil || user.doc.Standalone == nil || !*user.doc.Standalone {
		b, err := decode(BuiltinName, builtinYAML)
		if err != nil {
			return nil, fmt.Errorf("built-in policy: %w", err)
		}
		srcs = append(srcs, b)
	}
	if user != nil {
		srcs = append(srcs, user)
	}
	var errs Errors
	for _, s := range srcs {
		errs = append(errs, s.validate()...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	merged := fileDoc{}
	for _, s := range srcs {
		overlay(&merged, &s.doc)
	}
	p, errs := resolve(name, &merged, srcs)
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// last returns the last source that mentions path (or a parent of it), for positions.
func last(srcs []*source, path string) *source {
	for i := len(srcs) - 1; i >= 0; i-- {
		p := path
		for p != "" {
			if _, ok := srcs[i].lines[p]; ok {
				return srcs[i]
			}
			j := strings.LastIndexAny(p, ".[")
			if j < 0 {
				break
			}
			p = p[:j]
		}
	}
	return srcs[len(srcs)-1]
}

// validate checks what one document can say on its own: values, patterns, names.
func (s *source) validate() Errors {
	var errs Errors
	add := func(e *Error) { errs = append(errs, e) }
	if s.doc.Defaults != nil {
		s.validateKnobs("defaults", s.doc.Defaults, add)
	}
	if mf := s.doc.Suppression; mf != nil && mf.MailboxFull != nil {
		if c := mf.MailboxFull.Count; c != nil && *c < 0 {
			add(s.errorf("suppression.mailbox_full.count", "must be 0 (never) or more, not %d", *c))
		}
		if w := mf.MailboxFull.Window; w != nil && *w <= 0 {
			add(s.errorf("suppression.mailbox_full.window", "must be positive"))
		}
	}
	s.validateRules("rules", s.doc.Rules, add)
	for _, name := range sortedKeys(s.doc.Providers) {
		pp := "providers." + name
		p := s.doc.Providers[name]
		if !nameRE.MatchString(name) {
			add(s.errorf(pp, "bad provider name %q: use lower-case letters, digits, - and _", name))
		}
		if p == nil {
			continue
		}
		if p.Group != nil && !nameRE.MatchString(*p.Group) {
			add(s.errorf(pp+".group", "bad group name %q: use lower-case letters, digits, - and _", *p.Group))
		}
		if name == DefaultProvider && ((p.Domains != nil && len(*p.Domains) > 0) || (p.MX != nil && len(*p.MX) > 0)) {
			add(s.errorf(pp, "the default provider takes every domain no other provider recognises: it has no domains or mx"))
		}
		if p.Domains != nil {
			for i, d := range *p.Domains {
				if _, err := parseDomainPattern(d, false); err != nil {
					add(s.errorf(fmt.Sprintf("%s.domains[%d]", pp, i), "%v", err))
				}
			}
		}
		if p.MX != nil {
			for i, d := range *p.MX {
				if _, err := parseDomainPattern(d, true); err != nil {
					add(s.errorf(fmt.Sprintf("%s.mx[%d]", pp, i), "%v", err))
				}
			}
		}
		s.validateKnobs(pp, &p.fileKnobs, add)
		s.validateRules(pp+".rules", p.Rules, add)
	}
	return errs
}

func (s *source) validateKnobs(path string, k *fileKnobs, add func(*Error)) {
	if k.Connections != nil && *k.Connections < 1 {
		add(s.errorf(path+".connections", "must be at least 1, not %d", *k.Connections))
	}
	if k.MessagesPerConnection != nil && *k.MessagesPerConnection < 0 {
		add(s.errorf(path+".messages_per_connection", "must be 0 (no limit) or more, not %d", *k.MessagesPerConnection))
	}
	if k.RecipientsPerMessage != nil && *k.RecipientsPerMessage < 1 {
		add(s.errorf(path+".recipients_per_message", "must be at least 1, not %d", *k.RecipientsPerMessage))
	}
	if k.Retry != nil {
		for i, d := range k.Retry.Intervals {
			if d <= 0 {
				add(s.errorf(fmt.Sprintf("%s.retry[%d]", path, i), "a retry interval must be positive"))
			}
		}
	}
	if k.MaxLifetime != nil && *k.MaxLifetime <= 0 {
		add(s.errorf(path+".max_lifetime", "must be positive"))
	}
	if b := k.Backoff; b != nil {
		if b.Initial != nil && *b.Initial <= 0 {
			add(s.errorf(path+".backoff.initial", "must be positive"))
		}
		if b.Max != nil && *b.Max <= 0 {
			add(s.errorf(path+".backoff.max", "must be positive"))
		}
	}
	if t := k.Throttle; t != nil {
		if t.Factor != nil && *t.Factor < 2 {
			add(s.errorf(path+".throttle.factor", "must be at least 2, not %d", *t.Factor))
		}
		if t.RecoverAfter != nil && *t.RecoverAfter <= 0 {
			add(s.errorf(path+".throttle.recover_after", "must be positive"))
		}
		if t.Cooldown != nil && *t.Cooldown < 0 {
			add(s.errorf(path+".throttle.cooldown", "must not be negative"))
		}
		if t.Min != nil && Rate(*t.Min).Unlimited() {
			add(s.errorf(path+".throttle.min", "must be a rate, not unlimited"))
		}
		if t.FromUnlimited != nil && Rate(*t.FromUnlimited).Unlimited() {
			add(s.errorf(path+".throttle.from_unlimited", "must be a rate, not unlimited"))
		}
	}
}

func (s *source) validateRules(path string, rules []fileRule, add func(*Error)) {
	seen := map[string]bool{}
	for i, r := range rules {
		rp := fmt.Sprintf("%s[%d]", path, i)
		if r.Name == "" {
			add(s.errorf(rp+".name", "every rule needs a name (it is logged and lets a file replace it)"))
		} else if seen[r.Name] {
			add(s.errorf(rp+".name", "duplicate rule name %q", r.Name))
		}
		seen[r.Name] = true
		if r.Disabled {
			continue
		}
		if _, err := compileRule(r); err != nil {
			add(s.errorf(rp+"."+err.key, "%v", err.err))
		}
	}
}

type ruleError struct {
	key string
	err error
}

func (e *ruleError) Error() string { return e.key + ": " + e.err.Error() }

func compileRule(r fileRule) (Rule, *ruleError) {
	out := Rule{Name: r.Name, Code: strings.ToLower(r.Code), Enhanced: strings.ToLower(r.Enhanced),
		Class: Class(r.Class), Action: Action(r.Action)}
	if r.Code != "" && !codePatternRE.MatchString(out.Code) {
		return out, &ruleError{"code", fmt.Errorf("bad code %q: want 3 characters, digits or x, such as 421 or 4xx", r.Code)}
	}
	if r.Enhanced != "" && !enhancedPatternRE.MatchString(out.Enhanced) {
		return out, &ruleError{"enhanced", fmt.Errorf("bad enhanced code %q: want such as 5.7.1 or 5.1.x", r.Enhanced)}
	}
	for _, m := range []struct {
		key string
		src string
		dst **Pattern
	}{{"match", r.Match, &out.Match}, {"unless", r.Unless, &out.Unless}} {
		if m.src == "" {
			continue
		}
		pat, err := CompilePattern(m.src)
		if err != nil {
			return out, &ruleError{m.key, err}
		}
		*m.dst = pat
	}
	if out.Code == "" && out.Enhanced == "" && out.Match == nil {
		return out, &ruleError{"match", fmt.Errorf("rule %q matches every reply: set code, enhanced or match", r.Name)}
	}
	if !out.Class.Valid() {
		return out, &ruleError{"class", fmt.Errorf("unknown class %q (want one of %s)", r.Class, joinClasses())}
	}
	if out.Action != "" && !out.Action.Valid() {
		return out, &ruleError{"action", fmt.Errorf("unknown action %q (want defer, bounce, suspend, throttle or backoff)", r.Action)}
	}
	if r.Duration != nil {
		out.Duration = time.Duration(*r.Duration)
	}
	switch {
	case out.Action == Suspend && out.Duration <= 0:
		return out, &ruleError{"duration", fmt.Errorf("a suspend rule needs a positive duration")}
	case out.Action != Suspend && out.Action != Backoff && r.Duration != nil:
		return out, &ruleError{"duration", fmt.Errorf("duration is for suspend (and backoff) rules only")}
	}
	return out, nil
}

func joinClasses() string {
	s := make([]string, len(Classes))
	for i, c := range Classes {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// overlay sets in dst every key src sets.
func overlay(dst, src *fileDoc) {
	if src.Defaults != nil {
		if dst.Defaults == nil {
			dst.Defaults = &fileKnobs{}
		}
		overlayKnobs(dst.Defaults, src.Defaults)
	}
	if s := src.Suppression; s != nil && s.MailboxFull != nil {
		if dst.Suppression == nil {
			dst.Suppression = &fileSuppression{}
		}
		if dst.Suppression.MailboxFull == nil {
			dst.Suppression.MailboxFull = &fileMailboxFull{}
		}
		d, m := dst.Suppression.MailboxFull, s.MailboxFull
		set(&d.Count, m.Count)
		set(&d.Span, m.Span)
		set(&d.Window, m.Window)
	}
	dst.Rules = overlayRules(dst.Rules, src.Rules)
	for name, p := range src.Providers {
		if dst.Providers == nil {
			dst.Providers = map[string]*fileProvider{}
		}
		d := dst.Providers[name]
		if d == nil {
			d = &fileProvider{}
			dst.Providers[name] = d
		}
		if p == nil {
			continue
		}
		set(&d.Domains, p.Domains)
		set(&d.MX, p.MX)
		set(&d.Group, p.Group)
		overlayKnobs(&d.fileKnobs, &p.fileKnobs)
		d.Rules = overlayRules(d.Rules, p.Rules)
	}
}

func set[T any](dst **T, src *T) {
	if src != nil {
		*dst = src
	}
}

func overlayKnobs(dst, src *fileKnobs) {
	set(&dst.Connections, src.Connections)
	set(&dst.MessagesPerConnection, src.MessagesPerConnection)
	set(&dst.RecipientsPerMessage, src.RecipientsPerMessage)
	set(&dst.Rate, src.Rate)
	set(&dst.Retry, src.Retry)
	set(&dst.MaxLifetime, src.MaxLifetime)
	if b := src.Backoff; b != nil {
		if dst.Backoff == nil {
			dst.Backoff = &fileBackoff{}
		} else {
			c := *dst.Backoff
			dst.Backoff = &c
		}
		set(&dst.Backoff.Initial, b.Initial)
		set(&dst.Backoff.Max, b.Max)
	}
	if t := src.Throttle; t != nil {
		if dst.Throttle == nil {
			dst.Throttle = &fileThrottle{}
		} else {
			c := *dst.Throttle
			dst.Throttle = &c
		}
		set(&dst.Throttle.Factor, t.Factor)
		set(&dst.Throttle.RecoverAfter, t.RecoverAfter)
		set(&dst.Throttle.Cooldown, t.Cooldown)
		set(&dst.Throttle.Min, t.Min)
		set(&dst.Throttle.FromUnlimited, t.FromUnlimited)
	}
}

// overlayRules replaces rules of the same name in place, removes disabled ones, and puts new
// rules first: an ops rule is more specific than the shipped ones.
func overlayRules(dst, src []fileRule) []fileRule {
	out := slices.Clone(dst)
	var fresh []fileRule
	for _, r := range src {
		i := slices.IndexFunc(out, func(o fileRule) bool { return o.Name == r.Name })
		switch {
		case i >= 0 && r.Disabled:
			out = slices.Delete(out, i, i+1)
		case i >= 0:
			out[i] = r
		case !r.Disabled:
			fresh = append(fresh, r)
		}
	}
	return append(fresh, out...)
}

// resolve turns the merged document into a Policy and checks what needs the whole of it.
func resolve(name string, doc *fileDoc, srcs []*source) (*Policy, Errors) {
	var errs Errors
	errorf := func(path, format string, args ...any) {
		errs = append(errs, last(srcs, path).errorf(path, format, args...))
	}
	p := &Policy{Name: name, byName: map[string]*Provider{}, exact: map[string]*Provider{}}
	if doc.Defaults == nil {
		doc.Defaults = &fileKnobs{}
	}
	p.Defaults = resolveKnobs("defaults", *doc.Defaults, Knobs{}, true, errorf)
	mf := fileMailboxFull{}
	if doc.Suppression != nil && doc.Suppression.MailboxFull != nil {
		mf = *doc.Suppression.MailboxFull
	}
	if mf.Count == nil || mf.Span == nil || mf.Window == nil {
		errorf("suppression.mailbox_full", "count, span and window must be set")
	} else {
		p.Suppression.MailboxFull = MailboxFullKnobs{Count: *mf.Count, Span: time.Duration(*mf.Span), Window: time.Duration(*mf.Window)}
	}
	p.Rules = resolveRules(doc.Rules)
	if doc.Providers == nil {
		doc.Providers = map[string]*fileProvider{}
	}
	if doc.Providers[DefaultProvider] == nil {
		doc.Providers[DefaultProvider] = &fileProvider{}
	}
	for _, pname := range sortedKeys(doc.Providers) {
		fp := doc.Providers[pname]
		pp := "providers." + pname
		pr := &Provider{Name: pname, Knobs: resolveKnobs(pp, fp.fileKnobs, p.Defaults, false, errorf), Rules: resolveRules(fp.Rules)}
		if fp.Group != nil {
			pr.Group = *fp.Group
		}
		if fp.Domains != nil && len(*fp.Domains) > 0 {
			pr.Domains = slices.Clone(*fp.Domains)
		}
		if fp.MX != nil && len(*fp.MX) > 0 {
			pr.MX = slices.Clone(*fp.MX)
		}
		if pname != DefaultProvider && len(pr.Domains) == 0 && len(pr.MX) == 0 {
			errorf(pp, "provider %q matches nothing: give it domains or mx", pname)
		}
		for i, d := range pr.Domains {
			dp, _ := parseDomainPattern(d, false)
			dp.provider = pr
			if dp.wild {
				p.wild = append(p.wild, dp)
				continue
			}
			if other := p.exact[dp.name]; other != nil && other != pr {
				errorf(fmt.Sprintf("%s.domains[%d]", pp, i), "domain %s is already a domain of provider %s", dp.name, other.Name)
			}
			p.exact[dp.name] = pr
		}
		for _, m := range pr.MX {
			dp, _ := parseDomainPattern(m, true)
			dp.provider = pr
			p.mx = append(p.mx, dp)
		}
		p.Providers = append(p.Providers, pr)
		p.byName[pname] = pr
	}
	for _, pr := range p.Providers {
		if pr.Group != "" && p.byName[pr.Group] != nil {
			errorf("providers."+pr.Name+".group", "group %q has the name of a provider: `provider resume %s` would be ambiguous", pr.Group, pr.Group)
		}
	}
	return p, errs
}

// resolveKnobs overlays k on base; complete demands every key (the defaults block).
func resolveKnobs(path string, k fileKnobs, base Knobs, complete bool, errorf func(string, string, ...any)) Knobs {
	out := base
	missing := func(key string) {
		if complete {
			errorf(path, "%s must be set in the defaults", key)
		}
	}
	if k.Connections != nil {
		out.Connections = *k.Connections
	} else {
		missing("connections")
	}
	if k.MessagesPerConnection != nil {
		out.MessagesPerConnection = *k.MessagesPerConnection
	} else {
		missing("messages_per_connection")
	}
	if k.RecipientsPerMessage != nil {
		out.RecipientsPerMessage = *k.RecipientsPerMessage
	} else {
		missing("recipients_per_message")
	}
	if k.Rate != nil {
		out.Rate = Rate(*k.Rate)
	}
	if k.Retry != nil {
		out.Retry = Schedule(*k.Retry)
		out.Retry.Intervals = slices.Clone(out.Retry.Intervals)
	} else {
		missing("retry")
	}
	if k.MaxLifetime != nil {
		out.MaxLifetime = time.Duration(*k.MaxLifetime)
	} else {
		missing("max_lifetime")
	}
	b := fileBackoff{}
	if k.Backoff != nil {
		b = *k.Backoff
	}
	out.Backoff.Initial = durationOr(b.Initial, out.Backoff.Initial)
	out.Backoff.Max = durationOr(b.Max, out.Backoff.Max)
	if complete && (b.Initial == nil || b.Max == nil) {
		missing("backoff.initial and backoff.max")
	}
	if out.Backoff.Max < out.Backoff.Initial {
		errorf(path+".backoff", "max %s is below initial %s", FormatDuration(out.Backoff.Max), FormatDuration(out.Backoff.Initial))
	}
	t := fileThrottle{}
	if k.Throttle != nil {
		t = *k.Throttle
	}
	if t.Factor != nil {
		out.Throttle.Factor = *t.Factor
	}
	out.Throttle.RecoverAfter = durationOr(t.RecoverAfter, out.Throttle.RecoverAfter)
	out.Throttle.Cooldown = durationOr(t.Cooldown, out.Throttle.Cooldown)
	if t.Min != nil {
		out.Throttle.Min = Rate(*t.Min)
	}
	if t.FromUnlimited != nil {
		out.Throttle.FromUnlimited = Rate(*t.FromUnlimited)
	}
	if complete && (t.Factor == nil || t.RecoverAfter == nil || t.Cooldown == nil || t.Min == nil || t.FromUnlimited == nil) {
		missing("throttle.factor, recover_after, cooldown, min and from_unlimited")
	}
	return out
}

func resolveRules(rules []fileRule) []Rule {
	var out []Rule
	for _, r := range rules {
		if r.Disabled {
			continue
		}
		cr, err := compileRule(r)
		if err == nil { // errors were reported by validate
			out = append(out, cr)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// domainPattern is a recipient domain (`gmail.com`, or `yahoo.*` for every country variant)
// or an MX host pattern (`.mail.protection.outlook.com`: a suffix; without the leading dot,
// the host itself or any host under it).
type domainPattern struct {
	name     string
	wild     bool
	suffix   bool
	provider *Provider
}

func parseDomainPattern(s string, mx bool) (domainPattern, error) {
	n := normalizeHost(s)
	dp := domainPattern{name: n}
	switch {
	case !mx && strings.HasSuffix(n, ".*"):
		dp.wild, dp.name = true, strings.TrimSuffix(n, ".*")
	case mx && strings.HasPrefix(n, "."):
		dp.suffix, dp.name = true, strings.TrimPrefix(n, ".")
	}
	if !hostRE.MatchString(dp.name) {
		if mx {
			return dp, fmt.Errorf("bad mx pattern %q: want a host name or a suffix such as .mail.protection.outlook.com", s)
		}
		return dp, fmt.Errorf("bad domain %q: want a domain such as gmail.com or a pattern such as yahoo.*", s)
	}
	return dp, nil
}

func normalizeHost(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// publicSuffix: the part a `name.*` pattern stands for is a public suffix of the ICANN section
// of the public suffix list (`fr`, `com`, `co.uk`, `com.br`), so that `yahoo.fr` and
// `hotmail.co.uk` are the providers' while `yahoo.example.org` and `yahoo.abc.de` are not, nor
// a privately registered suffix such as `yahoo.blogspot.com`.
func publicSuffix(s string) bool {
	ps, icann := publicsuffix.PublicSuffix(s)
	return icann && ps == s
}

// Provider returns the provider named name, or DefaultProvider's for an unknown name.
func (p *Policy) Provider(name string) *Provider {
	if pr := p.byName[name]; pr != nil {
		return pr
	}
	return p.byName[DefaultProvider]
}

// Lookup returns the provider named name, and whether there is one.
func (p *Policy) Lookup(name string) (*Provider, bool) {
	pr, ok := p.byName[name]
	return pr, ok
}

// Group returns the names of the providers in group g, sorted (nil for an unknown group).
func (p *Policy) Group(g string) []string {
	var out []string
	for _, pr := range p.Providers {
		if g != "" && pr.Group == g {
			out = append(out, pr.Name)
		}
	}
	return out
}

// Recognize returns the provider of a recipient domain whose MX hosts are mxHosts (in
// preference order): by domain first (exact, then `name.*`), else by the first MX host that a
// provider's mx pattern matches (the longest pattern wins), else DefaultProvider. Names are
// compared case-insensitively and trailing dots are ignored. A custom domain hosted by
// Microsoft 365 or Google Workspace is recognised by its MX (issue 5 §2).
func (p *Policy) Recognize(domain string, mxHosts []string) string {
	d := normalizeHost(domain)
	if pr := p.exact[d]; pr != nil {
		return pr.Name
	}
	for _, w := range p.wild {
		if rest, ok := strings.CutPrefix(d, w.name+"."); ok && publicSuffix(rest) {
			return w.provider.Name
		}
	}
	for _, h := range mxHosts {
		h = normalizeHost(h)
		var best *domainPattern
		for i := range p.mx {
			m := &p.mx[i]
			ok := h == m.name && !m.suffix || strings.HasSuffix(h, "."+m.name)
			if ok && (best == nil || len(m.name) > len(best.name)) {
				best = m
			}
		}
		if best != nil {
			return best.provider.Name
		}
	}
	return DefaultProvider
}

// Show renders the effective policy (defaults merged into every provider) as YAML, or JSON
// when asJSON. The output is a standalone policy: Parse accepts it and yields the same policy.
func (p *Policy) Show(asJSON bool) ([]byte, error) {
	doc := exportDoc(p)
	if asJSON {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return nil, fmt.Errorf("show policy: %w", err)
		}
		return buf.Bytes(), nil
	}
	out, err := yaml.Dump(doc, yaml.WithLineWidth(-1))
	if err != nil {
		return nil, fmt.Errorf("show policy: %w", err)
	}
	header := fmt.Sprintf("# Effective facteur policy: %s.\n# Every provider shows its knobs with the defaults merged in.\n", p.Name)
	return append([]byte(header), out...), nil
}

// Limits are the static limits of a provider, JSON-ready for `facteur providers --json`.
type Limits struct {
	Connections           int    `json:"connections"`
	MessagesPerConnection int    `json:"messages_per_connection"`
	RecipientsPerMessage  int    `json:"recipients_per_message"`
	Rate                  string `json:"rate"`
	Retry                 string `json:"retry"`
	MaxLifetime           string `json:"max_lifetime"`
}

// Limits returns the limits of provider (DefaultProvider's for an unknown name).
func (p *Policy) Limits(provider string) Limits {
	k := p.Provider(provider).Knobs
	return Limits{
		Connections: k.Connections, MessagesPerConnection: k.MessagesPerConnection,
		RecipientsPerMessage: k.RecipientsPerMessage, Rate: FormatRate(k.Rate),
		Retry: k.Retry.String(), MaxLifetime: FormatDuration(k.MaxLifetime),
	}
}

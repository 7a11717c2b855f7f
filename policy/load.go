package policy

import (
	_ "embed"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"time"
)

// Loading a policy: the built-in YAML, a file overlaid on it (overlay.go) after each
// document is validated (validate.go), and resolution of the defaults into each provider.

//go:embed default.yaml
var builtinYAML []byte

// BuiltinName is the file name given to the built-in policy in error messages.
const BuiltinName = "policy/default.yaml (built-in)"

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
		if srcs[i].Line(path) > 0 {
			return srcs[i]
		}
	}
	return srcs[len(srcs)-1]
}

// resolve turns the merged document into a Policy and checks what needs the whole of it.
func resolve(name string, doc *fileDoc, srcs []*source) (*Policy, Errors) {
	var errs Errors
	errorf := func(path, format string, args ...any) {
		errs = append(errs, last(srcs, path).Errorf(path, format, args...))
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
	for _, pname := range slices.Sorted(maps.Keys(doc.Providers)) {
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

package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Rules: what a reply must look like for a rule to apply, and how a rule is compiled.

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
	// Scope is what a suspend, throttle or backoff holds: "" (the sending IP and provider, as
	// every limit) or "provider" (the provider whatever the IP: a reply about the domain).
	Scope string
}

// RuleScopeProvider is a rule's `scope: provider`: its action holds every source IP.
const RuleScopeProvider = "provider"

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

type ruleError struct {
	key string
	err error
}

func (e *ruleError) Error() string { return e.key + ": " + e.err.Error() }

func compileRule(r fileRule) (Rule, *ruleError) {
	out := Rule{Name: r.Name, Code: strings.ToLower(r.Code), Enhanced: strings.ToLower(r.Enhanced),
		Class: Class(r.Class), Action: Action(r.Action), Scope: r.Scope}
	if r.Scope != "" && r.Scope != RuleScopeProvider && r.Scope != "ip" {
		return out, &ruleError{"scope", fmt.Errorf("unknown scope %q (want ip or provider)", r.Scope)}
	}
	if out.Scope == "ip" {
		out.Scope = ""
	}
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
